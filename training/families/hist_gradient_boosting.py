"""The boosting family: ``HistGradientBoostingClassifier`` alone (no scaler); for ``data.task:
regression``, ``HistGradientBoostingRegressor`` from the same section.

Its graph compares float64 rows with float64 thresholds (the model never casts), sends NaN where
the model learnt to, sums every iteration's trees (``ai.onnx.ml.TreeEnsemble``), adds the baseline
and applies the loss's link: sigmoid for two classes (stacked as ``[1 - p, p]``), softmax for
more; a regressor's raw sum is its prediction (the squared error's identity link; another loss's
link is refused). Categorical columns reach it ordinal-encoded (training/columns.py: the
category's index, split on as a number); a model fitted with native categorical features is
refused. Its threads are the one OpenMP thread the stage runner pins (training/numerics.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from onnx import helper
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.pipeline import Pipeline

from training.families import Boolean, Family, Integer, Number, register
from training.graph import PREDICTION, ConversionError, Ensemble, Graph, Tree, probabilities


def pipeline(hyper: Mapping[str, Any]) -> Pipeline:
    return Pipeline([("classify", HistGradientBoostingClassifier(**hyper))])


def regression(hyper: Mapping[str, Any]) -> Pipeline:
    return Pipeline([("regress", HistGradientBoostingRegressor(**hyper))])


def to_onnx(
    model: HistGradientBoostingClassifier | HistGradientBoostingRegressor, g: Graph, current: str
) -> None:
    """Baseline plus every iteration's trees, then the loss's link: sigmoid or softmax for a
    classifier; none for a regressor with the squared error (PREDICTION)."""
    categorical = getattr(model, "is_categorical_", None)
    if categorical is not None and bool(np.any(categorical)):
        raise ConversionError(f"cannot convert a {type(model).__name__} with categorical features")
    regressor = isinstance(model, HistGradientBoostingRegressor)
    link = type(model._loss.link).__name__
    if regressor and link != "IdentityLink":
        raise ConversionError(
            f"cannot convert a HistGradientBoostingRegressor with loss {model.loss!r} "
            f"({link}): the export handles the identity link (squared_error)"
        )
    ensemble = Ensemble()
    per_iteration = int(model.n_trees_per_iteration_)
    for iteration in model._predictors:
        for target, predictor in enumerate(iteration):
            tree = predictor.nodes
            ensemble.add(
                Tree(
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
    summed, raw = g.name(), g.name()
    g.nodes.append(ensemble.node(current, summed, per_iteration))
    baseline = np.asarray(model._baseline_prediction, dtype=np.float64).reshape(1, per_iteration)
    if regressor:
        g.nodes.append(helper.make_node("Add", [summed, g.constant(baseline)], [PREDICTION]))
        return
    g.nodes.append(helper.make_node("Add", [summed, g.constant(baseline)], [raw]))
    probabilities(raw, per_iteration, g)


FAMILY = register(
    Family(
        name="hist_gradient_boosting",
        summary="`HistGradientBoostingClassifier` or `HistGradientBoostingRegressor` (no scaler)",
        params=(
            Integer("max_iter", note="boosting rounds", minimum=1),
            Number("learning_rate", low=0),
            Integer("max_leaf_nodes", minimum=2, optional=True),
            Integer("max_depth", minimum=1, optional=True),
            Integer("min_samples_leaf", minimum=1),
            Number("l2_regularization", low=0, closed=True),
            Boolean("early_stopping", note="`true` holds out part of the train split"),
            Integer("random_state", minimum=0),
        ),
        pipeline=pipeline,
        estimators=(HistGradientBoostingClassifier, HistGradientBoostingRegressor),
        to_onnx=to_onnx,
        regression=regression,
    )
)
