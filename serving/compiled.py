"""Compile a fitted scikit-learn pipeline into plain numpy arithmetic.

scikit-learn's ``predict_proba`` spends hundreds of microseconds per call validating its input; the
arithmetic of a ``StandardScaler`` followed by a binary ``LogisticRegression`` is one fused affine
map and a sigmoid. ``compile_pipeline`` builds that map and proves it against the pipeline itself
on generated rows; anything it cannot compile exactly is left to scikit-learn.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from operator import mul
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.special import expit  # type: ignore[import-untyped]

Matrix = npt.NDArray[np.float64]
ProbaFn = Callable[[Matrix], Matrix]

# Tolerance for the load-time proof: the fused map reorders floating-point operations only.
VERIFY_ATOL = 1e-9
VERIFY_ROWS = 256


class AffineLogistic:
    """p(positive) = sigmoid(x · w + b), with the scaler folded into w and b."""

    def __init__(self, weights: Matrix, bias: float) -> None:
        self.weights = np.ascontiguousarray(weights, dtype=np.float64)
        self.bias = float(bias)
        self._weights = tuple(self.weights.tolist())

    def one(self, values: Sequence[float]) -> tuple[float, float] | None:
        """One row in plain Python floats (no numpy call); None unless all of it is finite.

        A non-finite value makes the score non-finite (no weight is exactly zero in practice,
        and 0 * inf is nan anyway), so a finite score proves a finite row.
        """
        score = sum(map(mul, values, self._weights)) + self.bias
        if not math.isfinite(score):
            return None
        if score >= 0:
            positive = 1.0 / (1.0 + math.exp(-score))
        else:
            exp = math.exp(score)
            positive = exp / (1.0 + exp)
        return 1.0 - positive, positive

    def __call__(self, x: Matrix) -> Matrix:
        positive = expit(x @ self.weights + self.bias)
        out = np.empty((x.shape[0], 2), dtype=np.float64)
        out[:, 1] = positive
        out[:, 0] = 1.0 - positive
        return out


def sklearn_proba(model: Any) -> ProbaFn:
    """The model's own ``predict_proba``, quiet about numpy input to a DataFrame-fitted model."""

    def proba(x: Matrix) -> Matrix:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="X does not have valid feature names")
            return np.asarray(model.predict_proba(x), dtype=np.float64)

    return proba


def _affine(model: Any, n_features: int) -> AffineLogistic | None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    if not isinstance(model, Pipeline) or len(model.steps) != 2:
        return None
    scaler, classifier = model.steps[0][1], model.steps[1][1]
    if type(scaler) is not StandardScaler or type(classifier) is not LogisticRegression:
        return None
    coef = np.asarray(classifier.coef_, dtype=np.float64)
    if coef.shape != (1, n_features) or len(classifier.classes_) != 2:
        return None
    mean = scaler.mean_ if scaler.with_mean else np.zeros(n_features)
    scale = scaler.scale_ if scaler.with_std and scaler.scale_ is not None else np.ones(n_features)
    weights = coef[0] / np.asarray(scale, dtype=np.float64)
    bias = float(classifier.intercept_[0]) - float(np.asarray(mean, dtype=np.float64) @ weights)
    return AffineLogistic(weights, bias)


#: Seeds the rows sample_rows draws, so every load checks the same rows.
SAMPLE_SEED = 0


def sample_rows(model: Any, n_features: int, rows: int = VERIFY_ROWS) -> Matrix:
    """Rows spread around the training distribution (the scaler's statistics when present)."""
    rng = np.random.default_rng(SAMPLE_SEED)
    centre, spread = np.zeros(n_features), np.ones(n_features)
    steps = getattr(model, "steps", [])
    scaler = steps[0][1] if steps else None
    if getattr(scaler, "mean_", None) is not None:
        centre = np.asarray(scaler.mean_, dtype=np.float64)  # type: ignore[union-attr]
    if getattr(scaler, "scale_", None) is not None:
        spread = np.asarray(scaler.scale_, dtype=np.float64)  # type: ignore[union-attr]
    result: Matrix = centre + spread * rng.normal(0.0, 1.5, size=(rows, n_features))
    return result


def compile_pipeline(model: Any, n_features: int) -> tuple[ProbaFn, str]:
    """The fastest exact ``predict_proba`` for ``model`` and the name of the path chosen."""
    fallback = sklearn_proba(model)
    compiled = _affine(model, n_features)
    if compiled is None:
        return fallback, "scikit-learn"
    rows = sample_rows(model, n_features)
    if not np.allclose(compiled(rows), fallback(rows), rtol=0.0, atol=VERIFY_ATOL):
        return fallback, "scikit-learn"
    return compiled, "numpy-affine"
