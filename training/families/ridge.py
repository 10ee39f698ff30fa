"""The linear regression family: ``StandardScaler``, then ``Ridge`` (``data.task: regression``).

Regression only: ``logistic_regression`` is the linear classifier, and its hyper-parameters (C,
the solvers of a logistic loss) are not a least-squares model's, so the linear regressor is its
own family with its own section. Its graph is ``x @ coef_ + intercept_`` after the scaler's
``(x - mean_) / scale_`` (training/graph.py), one column (PREDICTION). Only solvers that give the
same bytes on every run are offered (closed forms: cholesky, svd).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from onnx import helper
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from training.families import Boolean, Choice, Family, Number, register
from training.graph import PREDICTION, ConversionError, Graph

#: Closed-form solvers only: the pipeline must reproduce dvc.lock byte for byte.
SOLVERS = ("cholesky", "svd")


def regression(hyper: Mapping[str, Any]) -> Pipeline:
    return Pipeline([("scale", StandardScaler()), ("regress", Ridge(**hyper))])


def to_onnx(model: Ridge | LinearRegression, g: Graph, current: str) -> None:
    """``x @ coef_ + intercept_`` as one column."""
    coef = np.asarray(model.coef_, dtype=np.float64)
    if coef.ndim != 1:
        raise ConversionError(f"cannot convert a {type(model).__name__} with several outputs")
    scores = g.name()
    g.nodes.append(helper.make_node("MatMul", [current, g.constant(coef.reshape(-1, 1))], [scores]))
    intercept = np.asarray(model.intercept_, dtype=np.float64).reshape(1)
    g.nodes.append(helper.make_node("Add", [scores, g.constant(intercept)], [PREDICTION]))


FAMILY = register(
    Family(
        name="ridge",
        summary="`StandardScaler`, then `Ridge` (regression only)",
        params=(
            Number("alpha", note="L2 regularisation strength; 0 is least squares", closed=True),
            Choice("solver", note="closed forms only", options=SOLVERS),
            Boolean("fit_intercept"),
        ),
        pipeline=None,
        estimators=(Ridge, LinearRegression),
        to_onnx=to_onnx,
        regression=regression,
        encoding="one_hot",
    )
)
