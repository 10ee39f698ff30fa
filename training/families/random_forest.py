"""The forest family: ``RandomForestClassifier`` alone (trees need no scaler), built with one job;
for ``data.task: regression``, ``RandomForestRegressor`` from the same section.

Its graph (an ``ExtraTreesClassifier`` converts the same way) reproduces scikit-learn's trees
exactly: they cast their input to float32, so the graph casts the row to float32 and back, then
compares ``x <= threshold`` with the float64 thresholds (``ai.onnx.ml.TreeEnsemble``); the
probability is the sum of each tree's leaf fractions divided by the number of trees, so an even
vote stays an exact tie, which both sides give to the first class. With two classes the trees are
walked once, for the second class, and the first gets ``1 - p``. A regressor's graph is the same
walk with each leaf's mean as its weight, summed and divided by the number of trees (scikit-learn
adds the trees' predictions and divides once).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from onnx import TensorProto, helper
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.pipeline import Pipeline

from training.families import Boolean, Choice, Family, Integer, register
from training.graph import (
    OUTPUT,
    PREDICTION,
    ConversionError,
    Ensemble,
    Graph,
    Tree,
    two_columns,
)


def pipeline(hyper: Mapping[str, Any]) -> Pipeline:
    """One job: the trees are built in order, the same bytes on every run."""
    return Pipeline([("classify", RandomForestClassifier(**hyper, n_jobs=1))])


def regression(hyper: Mapping[str, Any]) -> Pipeline:
    """The regressor, one job likewise."""
    return Pipeline([("regress", RandomForestRegressor(**hyper, n_jobs=1))])


def forest_trees(
    model: RandomForestClassifier | ExtraTreesClassifier, classes: list[int]
) -> Iterator[Tree]:
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
            yield Tree(
                left=tree.children_left,
                right=tree.children_right,
                feature=tree.feature,
                threshold=tree.threshold,
                missing_left=np.asarray(missing, dtype=bool),
                is_leaf=is_leaf,
                leaf_value=fractions[:, column],
                target=target,
            )


def regression_to_onnx(
    model: RandomForestRegressor | ExtraTreesRegressor, g: Graph, current: str
) -> None:
    """Cast to float32 and back, sum the trees' leaf means, divide by the count: PREDICTION."""
    if model.n_outputs_ != 1:
        raise ConversionError(f"cannot convert a {type(model).__name__} with several outputs")
    ensemble = Ensemble()
    for estimator in model.estimators_:
        tree = estimator.tree_
        is_leaf = np.asarray(tree.children_left == -1)
        missing = getattr(tree, "missing_go_to_left", np.zeros(len(is_leaf), dtype=np.uint8))
        ensemble.add(
            Tree(
                left=tree.children_left,
                right=tree.children_right,
                feature=tree.feature,
                threshold=tree.threshold,
                missing_left=np.asarray(missing, dtype=bool),
                is_leaf=is_leaf,
                leaf_value=np.asarray(tree.value[:, 0, 0], dtype=np.float64),
                target=0,
            )
        )
    narrow, widened, summed = g.name(), g.name(), g.name()
    g.nodes.append(helper.make_node("Cast", [current], [narrow], to=TensorProto.FLOAT))
    g.nodes.append(helper.make_node("Cast", [narrow], [widened], to=TensorProto.DOUBLE))
    g.nodes.append(ensemble.node(widened, summed, 1))
    count = g.constant([float(len(model.estimators_))])
    g.nodes.append(helper.make_node("Div", [summed, count], [PREDICTION]))


def to_onnx(model: Any, g: Graph, current: str) -> None:
    """The classifier's graph (below), or the regressor's (:func:`regression_to_onnx`)."""
    if isinstance(model, RandomForestRegressor | ExtraTreesRegressor):
        regression_to_onnx(model, g, current)
    else:
        classifier_to_onnx(model, g, current)


def classifier_to_onnx(
    model: RandomForestClassifier | ExtraTreesClassifier, g: Graph, current: str
) -> None:
    """Cast to float32 and back, sum the trees' leaf fractions per class, divide by the count.

    Two classes walk the trees once, for the second class, and answer ``1 - p`` for the first
    (as a two-class logistic regression does): half the nodes of one tree set per class."""
    n_classes = len(model.classes_)
    binary = n_classes == 2
    ensemble = Ensemble()
    for tree in forest_trees(model, [1] if binary else list(range(n_classes))):
        ensemble.add(tree)
    narrow, widened, summed = g.name(), g.name(), g.name()
    g.nodes.append(helper.make_node("Cast", [current], [narrow], to=TensorProto.FLOAT))
    g.nodes.append(helper.make_node("Cast", [narrow], [widened], to=TensorProto.DOUBLE))
    g.nodes.append(ensemble.node(widened, summed, 1 if binary else n_classes))
    count = g.constant([float(len(model.estimators_))])
    if binary:
        positive = g.name()
        g.nodes.append(helper.make_node("Div", [summed, count], [positive]))
        two_columns(positive, g)
    else:
        g.nodes.append(helper.make_node("Div", [summed, count], [OUTPUT]))


FAMILY = register(
    Family(
        name="random_forest",
        summary="`RandomForestClassifier` or `RandomForestRegressor` (no scaler: trees need "
        "none), one job",
        params=(
            Integer("n_estimators", minimum=1),
            Integer("max_depth", minimum=1, optional=True),
            Integer("min_samples_leaf", minimum=1),
            Choice(
                "max_features",
                note="of the feature count, tried at each split",
                options=("sqrt", "log2"),
            ),
            Boolean("bootstrap"),
            Integer("random_state", minimum=0),
        ),
        pipeline=pipeline,
        estimators=(
            RandomForestClassifier,
            ExtraTreesClassifier,
            RandomForestRegressor,
            ExtraTreesRegressor,
        ),
        to_onnx=to_onnx,
        regression=regression,
    )
)
