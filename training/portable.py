"""The portable serving artifact: the fitted pipeline as an ONNX graph, proven equal to it.

Caller: the export stage (training/export.py). :func:`to_onnx` writes the graph of a fitted
pipeline: a chain of ``StandardScaler`` steps (training/graph.py), then the estimator, whose
nodes its family writes (training/families/: the registered family whose ``estimators`` list the
estimator's class). Anything else raises :class:`ConversionError` naming the step: nothing is
served by a path nobody chose.

The graphs reproduce scikit-learn's arithmetic, not just its intent, so that the proof
(:func:`prove`: labels identical, probabilities within 1e-6, on the test split and on at least
10,000 generated rows) holds with room to spare. The built-in families' modules say how each
does it; in short:

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

The graph has one float64 input ``input`` (rows in feature order; a category as its code and a
missing value as NaN, modelcard.runtime.encode_column) and one float64 output ``probabilities``
(columns in ``model.classes_`` order): :mod:`modelcard.runtime`. A regressor's graph has the
output ``prediction`` instead (one column, the value), and its proof compares values (within
1e-6, absolute) where a classifier's compares labels and probabilities. A pipeline with a column
step (training/columns.py) is proven on the values a user sends: scikit-learn takes them as they
are, the graph their encoding, and the generated rows hold every category, an unseen one where
the column ignores them, and missing values in each column that allows them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from modelcard.runtime import (
    INPUT,
    OUTPUT,
    PREDICTION,
    Matrix,
    disagreement,
    labels,
    onnx_session,
    run,
    value_disagreement,
)
from training import columns, families
from training.graph import ConversionError, Graph, scaler

__all__ = [
    "ConversionError",
    "Proof",
    "generated_rows",
    "prove",
    "sample",
    "sklearn_labels",
    "sklearn_proba",
    "sklearn_values",
    "to_onnx",
]

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


def to_onnx(model: Any, n_features: int) -> bytes:
    """The serialised ONNX graph of a fitted model (the same bytes for the same model).

    The first step may be the column step (training/columns.py: imputation and categorical
    encoding, from the coded rows modelcard.runtime.encode_column makes); every other step before
    the last must be a ``StandardScaler``; the last is converted by the registered family whose
    ``estimators`` list its class (training/families/). Anything else raises ConversionError
    naming the step and what the export handles."""
    steps = model.steps if isinstance(model, Pipeline) else [("model", model)]
    g = Graph()
    current = INPUT
    step_of_columns = columns.column_step(model)
    if step_of_columns is not None:
        current = columns.to_onnx(step_of_columns, current, g)
        steps = steps[1:]
    for step, estimator in steps[:-1]:
        if type(estimator) is not StandardScaler:
            raise ConversionError(
                f"cannot convert pipeline step {step!r} ({type(estimator).__name__}): "
                "only StandardScaler may come before the classifier"
            )
        current = scaler(estimator, current, g)
    step, classifier = steps[-1]
    regressor = not hasattr(classifier, "classes_")
    n_classes = 1 if regressor else len(classifier.classes_)
    output = PREDICTION if regressor else OUTPUT
    family = families.by_estimator(classifier)
    if family is None:
        handled = [
            cls.__name__ for name in families.names() for cls in families.get(name).estimators
        ]
        raise ConversionError(
            f"cannot convert {type(classifier).__name__} (step {step!r}): the ONNX export "
            f"handles {', '.join(handled[:-1])} and {handled[-1]}"
        )
    family.to_onnx(classifier, g, current)
    graph = helper.make_graph(
        g.nodes,
        "model",
        [helper.make_tensor_value_info(INPUT, TensorProto.DOUBLE, [None, n_features])],
        [helper.make_tensor_value_info(output, TensorProto.DOUBLE, [None, n_classes])],
        initializer=g.initializers,
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


def generated_rows(train: Matrix, count: int = GENERATED_ROWS) -> Matrix:
    """Rows the proof checks beyond the test split, the same on every run.

    Half are drawn feature by feature from the training values themselves: the split points of
    every tree lie between them, so this is where a threshold rounded the wrong way shows. The
    other half scatter around the training distribution (1.5 standard deviations of each feature,
    so some fall outside the range the model saw).
    """
    rng = np.random.default_rng(GENERATED_SEED)
    half = count // 2
    drawn = [rng.choice(train[:, j], size=half) for j in range(train.shape[1])]
    resampled = np.stack(drawn, axis=1)
    if np.isnan(train).any():  # missing values (coded NaN): the spread of those present
        std, mean = np.nanstd(train, axis=0), np.nanmean(train, axis=0)
        std, mean = np.nan_to_num(std), np.nan_to_num(mean)
    else:
        std, mean = train.std(axis=0), train.mean(axis=0)
    spread = np.where(std > 0, std, 1.0)
    scattered = mean + spread * rng.normal(0.0, 1.5, size=(count - half, train.shape[1]))
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
    test: Any,
    generated: Any,
    tolerance: float,
    *,
    coded: tuple[Matrix, Matrix] | None = None,
) -> Proof:
    """Run the graph and the model on the test split and the generated rows; raise
    ConversionError unless labels are identical and probabilities within ``tolerance``.

    ``classes`` names the model's classes in ``predict_proba`` column order (the card's list);
    empty for a regressor, whose predicted values (one column) are compared instead.
    ``test`` and ``generated`` are what scikit-learn takes (float64 matrices, or for a model
    with a column step DataFrames of the values a user sends); ``coded`` their encoding for the
    graph (modelcard.runtime.encode_rows), when it is not the rows themselves.
    """
    session = onnx_session(graph)
    largest = 0.0
    graph_rows = coded or (test, generated)
    for name, rows, fed in (
        ("the test split", test, graph_rows[0]),
        ("the generated rows", generated, graph_rows[1]),
    ):
        actual = run(session, fed)
        if not classes:  # a regressor: values, no labels
            expected = sklearn_values(model, rows)
            problem = value_disagreement(actual, expected, tolerance)
        else:
            expected = sklearn_proba(model, rows)
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


def sklearn_values(model: Any, rows: Matrix) -> Matrix:
    """A regressor's predictions for numpy rows as one float64 column (as its graph answers)."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        result: Matrix = np.asarray(model.predict(rows), dtype=np.float64).reshape(-1, 1)
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
