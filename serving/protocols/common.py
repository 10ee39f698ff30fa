"""What both protocols share: reading JSON, the row limit, the words of a bad value, and scoring.

Used by ``serving.protocols.records`` and ``serving.protocols.v2``, fast and careful paths alike,
so that the two protocols word the same problem the same way, and so that every row either of
them scores goes through :func:`score` or :func:`score_one`: the one place rows are predicted and
counted (the predicted class, the scored rows and the drift signals, ``serving.metrics``), once
per row.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import orjson

from modelcard.runtime import Matrix
from serving.errors import ApiError, invalid
from serving.metrics import Metrics
from serving.model import Model
from serving.state import ServerState

NUMBER_TYPES = frozenset({int, float})


def parse_json(raw: bytes) -> Any:
    """orjson first; the standard library only to read NaN/Infinity, which validation refuses.
    Anything else that is not JSON is a 400 naming orjson's complaint."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as first:
        try:
            return json.loads(raw)
        except (ValueError, RecursionError):
            raise ApiError(400, f"malformed JSON: {first}") from None


def check_rows(count: int, max_rows: int) -> None:
    """A 422 for an empty batch, a 413 ``too_many_rows`` for more than ``max_rows`` rows."""
    if count == 0:
        raise invalid("empty batch: send at least one row", "instances")
    if count > max_rows:
        raise ApiError(
            413, f"{count} rows in one request; at most {max_rows} allowed", code="too_many_rows"
        )


def describe(value: Any) -> str:
    """A JSON value's type in an error message: ``null``, ``str``, ``bool``, ``list``..."""
    return "null" if value is None else type(value).__name__


def bad_value(value: Any, field: str) -> ApiError:
    """The 422 for a value that is not a finite number, at ``field``."""
    if type(value) is float and not math.isfinite(value):
        return invalid(f"{field} is {value}; only finite numbers are allowed", field)
    return invalid(f"{field} must be a number, got {describe(value)}", field)


def finite(matrix: Matrix, field_of: Callable[[int, int], str]) -> Matrix:
    """``matrix`` when every value is finite; else a 422 naming the first other one
    (``field_of(row, column)`` spells its place in the request)."""
    if not np.isfinite(matrix).all():
        row, col = np.argwhere(~np.isfinite(matrix))[0].tolist()
        field = field_of(row, col)
        raise invalid(f"{field} is {matrix[row, col]}; only finite numbers are allowed", field)
    return matrix


def score(server: ServerState, model: Model, x: Matrix, row_field: Callable[[int], str]) -> Matrix:
    """The model's probabilities for validated rows ``x``, each row counted in the metrics. A
    row whose answer is not finite (values near float64's limits overflow the model's arithmetic:
    a scaler's ``x / scale``, then ``inf - inf``) is a 422 naming it (``row_field(row)``), and
    nothing of the request is counted: an answer of ``null`` probabilities would be no answer."""
    proba = model.predict_proba(x)
    if not np.isfinite(proba).all():
        row = int(np.argwhere(~np.isfinite(proba))[0][0])
        field = row_field(row)
        raise invalid(
            f"row {row} ({field}): the model's answer for these values is not a finite number "
            "(values this far from the training data overflow its arithmetic); send values in "
            "the range it was trained on",
            field,
        )
    _described(server, model).observe_rows(x, proba)
    return proba


def score_one(
    server: ServerState, model: Model, values: Sequence[float]
) -> tuple[tuple[float, ...], int] | None:
    """One row's probabilities and the index of its most probable class, counted in the metrics;
    None (nothing counted) when the model has no one-row path or a value is not finite: the
    caller then scores the row through :func:`score`, which also answers a row whose answer is
    not finite."""
    proba = model.predict_one(values)
    if proba is None or not all(map(math.isfinite, proba)):
        return None
    best = max(range(len(proba)), key=proba.__getitem__)
    _described(server, model).observe_row(values, proba, best)
    return proba, best


def _described(server: ServerState, model: Model) -> Metrics:
    """The metrics, described for ``model`` (create_app does it for a model it loads; a model
    passed in and loaded afterwards is described at its first prediction)."""
    metrics = server.metrics
    if metrics.signals is None:
        metrics.describe_model(model)
    return metrics
