"""The portable serving artifact: the fitted pipeline as an ONNX graph, proven equal to it.

Caller: the export stage (training/export.py). :func:`to_onnx` writes the graph for the model
families params.yaml can choose (training/train.py): a chain of ``StandardScaler`` steps, then a
``LogisticRegression``, a ``RandomForestClassifier`` (or ``ExtraTreesClassifier``) or a
``HistGradientBoostingClassifier``, binary or multiclass. Anything else raises
:class:`ConversionError` naming the step: nothing is served by a path nobody chose.

The graphs reproduce scikit-learn's arithmetic, not just its intent, so that the proof
(:func:`prove`: labels identical, probabilities within 1e-6, on the test split and on at least
10,000 generated rows) holds with room to spare:

- a forest's trees compare ``float32(x) <= threshold`` with a float64 threshold, as scikit-learn's
  trees do (they cast their input to float32): the graph casts the row to float32 and back, then
  compares in float64 (ONNX ``ai.onnx.ml.TreeEnsemble``, opset 5, double thresholds). The
  converters of skl2onnx 1.20 round thresholds to float32 instead, and send a row lying exactly on
  a split point (any training value) down the other branch: measured on the wine data, one
  probability off by 0.01 in the training rows; and they fail on a HistGradientBoosting model
  fitted with scikit-learn 1.9 ("Expected an int, got a boolean");
- histogram gradient boosting compares float64 rows with float64 thresholds (it never casts),
  sends NaN where the model learnt to, adds the baseline and applies the same link (sigmoid or
  softmax);
- a forest's probability is the sum of each tree's leaf fractions divided by the number of trees,
  so an even vote stays an exact tie, which both sides give to the first class; with two classes
  the trees are walked once, for the second class, and the first gets ``1 - p``.

The graph has one float64 input ``input`` (rows in feature order) and one float64 output
``probabilities`` (columns in ``model.classes_`` order): :mod:`modelcard.runtime`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper
from sklearn.ensemble import (
    ExtraTreesClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from modelcard.runtime import INPUT, OUTPUT, Matrix, disagreement, labels, onnx_session, run

#: Operator sets the graphs use; ONNX Runtime has run both since 1.20.
OPSET = 21
ML_OPSET = 5
IR_VERSION = 10
#: At least this many generated rows go through the proof (the issue's floor), plus the test split.
GENERATED_ROWS = 10_000
#: The generated rows are the same on every run (and so is the verification sample).
GENERATED_SEED = 20_240_601
#: Rows of the proof written into the artifact for the server to repeat at load.
SAMPLE_ROWS = 64

BRANCH_LEQ = 0


class ConversionError(Exception):
    """The model cannot be written as an ONNX graph, or the graph does not answer as it does."""


def to_onnx(model: Any, n_features: int) -> bytes:
    """The serialised ONNX graph of a fitted model (the same bytes for the same model)."""
    steps = model.steps if isinstance(model, Pipeline) else [("model", model)]
    nodes: list[onnx.NodeProto] = []
    initializers: list[onnx.TensorProto] = []
    names = _Names()
    current = INPUT
    for step, estimator in steps[:-1]:
        if type(estimator) is not StandardScaler:
            raise ConversionError(
                f"cannot convert pipeline step {step!r} ({type(estimator).__name__}): "
                "only StandardScaler may come before the classifier"
            )
        current = _scaler(estimator, current, nodes, initializers, names)
    step, classifier = steps[-1]
    n_classes = len(getattr(classifier, "classes_", ()))
    if type(classifier) is LogisticRegression:
        _logistic(classifier, current, nodes, initializers, names)
    elif type(classifier) in (RandomForestClassifier, ExtraTreesClassifier):
        _forest(classifier, current, nodes, initializers, names)
    elif type(classifier) is HistGradientBoostingClassifier:
        _boosting(classifier, current, nodes, initializers, names)
    else:
        raise ConversionError(
            f"cannot convert {type(classifier).__name__} (step {step!r}): the ONNX export "
            "handles LogisticRegression, RandomForestClassifier, ExtraTreesClassifier and "
            "HistGradientBoostingClassifier"
        )
    graph = helper.make_graph(
        nodes,
        "model",
        [helper.make_tensor_value_info(INPUT, TensorProto.DOUBLE, [None, n_features])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.DOUBLE, [None, n_classes])],
        initializer=initializers,
    )
    proto = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("ai.onnx.ml", ML_OPSET)],
        ir_version=IR_VERSION,
        producer_name="modelops training.portable",
    )
    onnx.checker.check_model(proto, full_check=True)
    serialised: bytes = proto.SerializeToString(deterministic=True)
    return serialised


class _Names:
    """Fresh tensor names: t0, t1, ... (the output is always OUTPUT)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> str:
        self.count += 1
        return f"t{self.count}"


def _constant(initializers: list[onnx.TensorProto], names: _Names, value: Any) -> str:
    name = names()
    initializers.append(numpy_helper.from_array(np.asarray(value, dtype=np.float64), name))
    return name


def _scaler(
    scaler: StandardScaler,
    current: str,
    nodes: list[onnx.NodeProto],
    initializers: list[onnx.TensorProto],
    names: _Names,
) -> str:
    """``(x - mean_) / scale_``, each only where the scaler uses it (as its transform does)."""
    if scaler.with_mean and scaler.mean_ is not None:
        out = names()
        nodes.append(
            helper.make_node("Sub", [current, _constant(initializers, names, scaler.mean_)], [out])
        )
        current = out
    if scaler.with_std and scaler.scale_ is not None:
        out = names()
        nodes.append(
            helper.make_node("Div", [current, _constant(initializers, names, scaler.scale_)], [out])
        )
        current = out
    return current


def _two_columns(
    positive: str, nodes: list[onnx.NodeProto], initializers: list[onnx.TensorProto], names: _Names
) -> None:
    """``[1 - p, p]`` from the positive class's probability, as scikit-learn stacks them."""
    negative = names()
    nodes.append(
        helper.make_node("Sub", [_constant(initializers, names, [1.0]), positive], [negative])
    )
    nodes.append(helper.make_node("Concat", [negative, positive], [OUTPUT], axis=1))


def _logistic(
    model: LogisticRegression,
    current: str,
    nodes: list[onnx.NodeProto],
    initializers: list[onnx.TensorProto],
    names: _Names,
) -> None:
    """``expit(x @ coef_.T + intercept_)`` for two classes, ``softmax`` of it for more."""
    scores, biased = names(), names()
    coef = np.asarray(model.coef_, dtype=np.float64)
    nodes.append(
        helper.make_node("MatMul", [current, _constant(initializers, names, coef.T)], [scores])
    )
    intercept = np.asarray(model.intercept_, dtype=np.float64)
    nodes.append(
        helper.make_node("Add", [scores, _constant(initializers, names, intercept)], [biased])
    )
    if coef.shape[0] == 1:
        positive = names()
        nodes.append(helper.make_node("Sigmoid", [biased], [positive]))
        _two_columns(positive, nodes, initializers, names)
    else:
        nodes.append(helper.make_node("Softmax", [biased], [OUTPUT], axis=1))


@dataclass
class _Tree:
    """One tree in the arrays both scikit-learn tree formats reduce to; node 0 is the root."""

    left: npt.NDArray[np.int64]
    right: npt.NDArray[np.int64]
    feature: npt.NDArray[np.int64]
    threshold: npt.NDArray[np.float64]
    missing_left: npt.NDArray[np.bool_]
    is_leaf: npt.NDArray[np.bool_]
    leaf_value: npt.NDArray[np.float64]
    target: int


class _Ensemble:
    """The attributes of one ``ai.onnx.ml.TreeEnsemble`` node, tree by tree.

    Each leaf adds one weight to one target, so a forest of C-class trees becomes C trees per
    tree, one per class. Internal nodes are numbered in the ``nodes_*`` lists, leaves in the
    ``leaf_*`` lists; a branch names either, flagged by ``nodes_*leafs``.
    """

    def __init__(self) -> None:
        self.roots: list[int] = []
        self.feature: list[int] = []
        self.split: list[float] = []
        self.missing_true: list[int] = []
        self.true_id: list[int] = []
        self.true_leaf: list[int] = []
        self.false_id: list[int] = []
        self.false_leaf: list[int] = []
        self.leaf_target: list[int] = []
        self.leaf_weight: list[float] = []

    def add(self, tree: _Tree) -> None:
        count = len(tree.left)
        internal = [i for i in range(count) if not tree.is_leaf[i]]
        leaves = [i for i in range(count) if tree.is_leaf[i]]
        node_at = {node: len(self.feature) + k for k, node in enumerate(internal)}
        leaf_at = {node: len(self.leaf_target) + k for k, node in enumerate(leaves)}
        for node in leaves:
            self.leaf_target.append(tree.target)
            self.leaf_weight.append(float(tree.leaf_value[node]))
        if not internal:  # a tree that is one leaf: a node whose branches both name it
            self.roots.append(len(self.feature))
            self._node(0, 0.0, False, (leaf_at[0], 1), (leaf_at[0], 1))
            return
        self.roots.append(node_at[0])
        for node in internal:
            branches = []
            for child in (int(tree.left[node]), int(tree.right[node])):
                branches.append((leaf_at[child], 1) if tree.is_leaf[child] else (node_at[child], 0))
            self._node(
                int(tree.feature[node]),
                float(tree.threshold[node]),
                bool(tree.missing_left[node]),
                branches[0],
                branches[1],
            )

    def _node(
        self,
        feature: int,
        split: float,
        missing_true: bool,
        true: tuple[int, int],
        false: tuple[int, int],
    ) -> None:
        self.feature.append(feature)
        self.split.append(split)
        self.missing_true.append(int(missing_true))
        self.true_id.append(true[0])
        self.true_leaf.append(true[1])
        self.false_id.append(false[0])
        self.false_leaf.append(false[1])

    def node(self, current: str, out: str, n_targets: int) -> onnx.NodeProto:
        return helper.make_node(
            "TreeEnsemble",
            [current],
            [out],
            domain="ai.onnx.ml",
            aggregate_function=1,  # SUM
            post_transform=0,  # NONE
            n_targets=n_targets,
            tree_roots=self.roots,
            nodes_featureids=self.feature,
            nodes_modes=numpy_helper.from_array(
                np.full(len(self.feature), BRANCH_LEQ, dtype=np.uint8)
            ),
            nodes_splits=numpy_helper.from_array(np.asarray(self.split, dtype=np.float64)),
            nodes_missing_value_tracks_true=self.missing_true,
            nodes_truenodeids=self.true_id,
            nodes_trueleafs=self.true_leaf,
            nodes_falsenodeids=self.false_id,
            nodes_falseleafs=self.false_leaf,
            leaf_targetids=self.leaf_target,
            leaf_weights=numpy_helper.from_array(np.asarray(self.leaf_weight, dtype=np.float64)),
        )


def _forest_trees(
    model: RandomForestClassifier | ExtraTreesClassifier, classes: list[int]
) -> Iterator[_Tree]:
    """Each tree once per class in ``classes`` (its leaf fractions of that class), numbered as
    targets 0, 1, ... in that order."""
    if model.n_outputs_ != 1:
        raise ConversionError(f"cannot convert a {type(model).__name__} with several outputs")
    for estimator in model.estimators_:
        tree = estimator.tree_
        values = np.asarray(tree.value[:, 0, :], dtype=np.float64)
        totals = values.sum(axis=1, keepdims=True)
        fractions = values / np.where(totals == 0.0, 1.0, totals)  # as DecisionTree's predict_proba
        is_leaf = np.asarray(tree.children_left == -1)
        missing = getattr(tree, "missing_go_to_left", np.zeros(len(is_leaf), dtype=np.uint8))
        for target, column in enumerate(classes):
            yield _Tree(
                left=tree.children_left,
                right=tree.children_right,
                feature=tree.feature,
                threshold=tree.threshold,
                missing_left=np.asarray(missing, dtype=bool),
                is_leaf=is_leaf,
                leaf_value=fractions[:, column],
                target=target,
            )


def _forest(
    model: RandomForestClassifier | ExtraTreesClassifier,
    current: str,
    nodes: list[onnx.NodeProto],
    initializers: list[onnx.TensorProto],
    names: _Names,
) -> None:
    """Cast to float32 and back, sum the trees' leaf fractions per class, divide by the count.

    Two classes walk the trees once, for the second class, and answer ``1 - p`` for the first
    (as a two-class logistic regression does): half the nodes of one tree set per class."""
    n_classes = len(model.classes_)
    binary = n_classes == 2
    ensemble = _Ensemble()
    for tree in _forest_trees(model, [1] if binary else list(range(n_classes))):
        ensemble.add(tree)
    narrow, widened, summed = names(), names(), names()
    nodes.append(helper.make_node("Cast", [current], [narrow], to=TensorProto.FLOAT))
    nodes.append(helper.make_node("Cast", [narrow], [widened], to=TensorProto.DOUBLE))
    nodes.append(ensemble.node(widened, summed, 1 if binary else n_classes))
    count = _constant(initializers, names, [float(len(model.estimators_))])
    if binary:
        positive = names()
        nodes.append(helper.make_node("Div", [summed, count], [positive]))
        _two_columns(positive, nodes, initializers, names)
    else:
        nodes.append(helper.make_node("Div", [summed, count], [OUTPUT]))


def _boosting(
    model: HistGradientBoostingClassifier,
    current: str,
    nodes: list[onnx.NodeProto],
    initializers: list[onnx.TensorProto],
    names: _Names,
) -> None:
    """Baseline plus every iteration's trees, then the loss's link: sigmoid or softmax."""
    categorical = getattr(model, "is_categorical_", None)
    if categorical is not None and bool(np.any(categorical)):
        raise ConversionError(
            "cannot convert a HistGradientBoostingClassifier with categorical features"
        )
    ensemble = _Ensemble()
    per_iteration = int(model.n_trees_per_iteration_)
    for iteration in model._predictors:
        for target, predictor in enumerate(iteration):
            tree = predictor.nodes
            ensemble.add(
                _Tree(
                    left=tree["left"],
                    right=tree["right"],
                    feature=tree["feature_idx"],
                    threshold=tree["num_threshold"],
                    missing_left=np.asarray(tree["missing_go_to_left"], dtype=bool),
                    is_leaf=np.asarray(tree["is_leaf"], dtype=bool),
                    leaf_value=tree["value"],
                    target=target,
                )
            )
    summed, raw = names(), names()
    nodes.append(ensemble.node(current, summed, per_iteration))
    baseline = np.asarray(model._baseline_prediction, dtype=np.float64).reshape(1, per_iteration)
    nodes.append(helper.make_node("Add", [summed, _constant(initializers, names, baseline)], [raw]))
    if per_iteration == 1:
        positive = names()
        nodes.append(helper.make_node("Sigmoid", [raw], [positive]))
        _two_columns(positive, nodes, initializers, names)
    else:
        nodes.append(helper.make_node("Softmax", [raw], [OUTPUT], axis=1))


def generated_rows(train: Matrix, count: int = GENERATED_ROWS) -> Matrix:
    """Rows the proof checks beyond the test split, the same on every run.

    Half are drawn feature by feature from the training values themselves: the split points of
    every tree lie between them, so this is where a threshold rounded the wrong way shows. The
    other half scatter around the training distribution (1.5 standard deviations of each feature,
    so some fall outside the range the model saw).
    """
    rng = np.random.default_rng(GENERATED_SEED)
    half = count // 2
    columns = [rng.choice(train[:, j], size=half) for j in range(train.shape[1])]
    resampled = np.stack(columns, axis=1)
    spread = np.where(train.std(axis=0) > 0, train.std(axis=0), 1.0)
    scattered = train.mean(axis=0) + spread * rng.normal(
        0.0, 1.5, size=(count - half, train.shape[1])
    )
    rows: Matrix = np.ascontiguousarray(np.vstack([resampled, scattered]), dtype=np.float64)
    return rows


@dataclass(frozen=True)
class Proof:
    """What :func:`prove` checked, for the model card."""

    test_rows: int
    generated_rows: int
    largest_difference: float
    tolerance: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "test_rows": self.test_rows,
            "generated_rows": self.generated_rows,
            "largest_difference": float(f"{self.largest_difference:.3g}"),
            "tolerance": self.tolerance,
        }


def prove(
    model: Any,
    graph: bytes,
    classes: list[str],
    test: Matrix,
    generated: Matrix,
    tolerance: float,
) -> Proof:
    """Run the graph and the model on the test split and the generated rows; raise
    ConversionError unless labels are identical and probabilities within ``tolerance``.

    ``classes`` names the model's classes in ``predict_proba`` column order (the card's list).
    """
    session = onnx_session(graph)
    largest = 0.0
    for name, rows in (("the test split", test), ("the generated rows", generated)):
        expected = sklearn_proba(model, rows)
        actual = run(session, rows)
        problem = disagreement(
            actual, expected, sklearn_labels(model, rows, classes), classes, tolerance
        )
        if problem:
            raise ConversionError(f"the ONNX graph differs from scikit-learn on {name}: {problem}")
        largest = max(largest, float(np.abs(actual - expected).max()))
    return Proof(len(test), len(generated), largest, tolerance)


def sample(test: Matrix, generated: Matrix, rows: int = SAMPLE_ROWS) -> Matrix:
    """The verification sample's rows: the first of the test split, then of the generated rows."""
    head = test[: rows // 2]
    result: Matrix = np.vstack([head, generated[: rows - len(head)]])
    return result


def sklearn_proba(model: Any, rows: Matrix) -> Matrix:
    """scikit-learn's probabilities for numpy rows (quiet about a model fitted on a DataFrame)."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        result: Matrix = np.asarray(model.predict_proba(rows), dtype=np.float64)
    return result


def sklearn_labels(model: Any, rows: Matrix, classes: list[str]) -> list[str]:
    """scikit-learn's own predictions (``predict``), named as the card names the classes.

    A model without ``predict`` (only a scikit-learn-format artifact can be one) is labelled by
    the server's rule instead: the most probable class.
    """
    import warnings

    if not hasattr(model, "predict"):
        return labels(sklearn_proba(model, rows), classes)
    names = dict(zip(list(model.classes_), classes, strict=True))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        return [names[label] for label in model.predict(rows)]
