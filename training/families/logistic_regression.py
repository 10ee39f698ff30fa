"""The linear family: ``StandardScaler``, then ``LogisticRegression``; categorical columns are
one-hot encoded before it (training/columns.py).

Its graph is ``expit(x @ coef_.T + intercept_)`` for two classes (stacked as ``[1 - p, p]``) and
the ``softmax`` of it for more, after the scaler's ``(x - mean_) / scale_`` (training/graph.py).
Only deterministic solvers are offered: the pipeline must reproduce dvc.lock byte for byte.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from onnx import helper
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from training.families import Boolean, Choice, Family, Integer, Number, register
from training.graph import Graph, probabilities

#: Deterministic solvers only: the pipeline must reproduce dvc.lock byte for byte.
SOLVERS = ("lbfgs", "newton-cg", "newton-cholesky")


def pipeline(hyper: Mapping[str, Any]) -> Pipeline:
    return Pipeline([("scale", StandardScaler()), ("classify", LogisticRegression(**hyper))])


def to_onnx(model: LogisticRegression, g: Graph, current: str) -> None:
    """``expit(x @ coef_.T + intercept_)`` for two classes, ``softmax`` of it for more."""
    scores, biased = g.name(), g.name()
    coef = np.asarray(model.coef_, dtype=np.float64)
    g.nodes.append(helper.make_node("MatMul", [current, g.constant(coef.T)], [scores]))
    intercept = np.asarray(model.intercept_, dtype=np.float64)
    g.nodes.append(helper.make_node("Add", [scores, g.constant(intercept)], [biased]))
    probabilities(biased, coef.shape[0], g)


FAMILY = register(
    Family(
        name="logistic_regression",
        summary="`StandardScaler`, then `LogisticRegression`",
        params=(
            Number("C", note="inverse regularisation strength", low=0),
            Integer("max_iter", minimum=1),
            Number("tol", low=0),
            Choice("solver", note="deterministic solvers only", options=SOLVERS),
            Boolean("fit_intercept"),
        ),
        pipeline=pipeline,
        estimators=(LogisticRegression,),
        to_onnx=to_onnx,
        encoding="one_hot",
    )
)
