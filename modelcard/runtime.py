"""How an artifact's model runs, and how its answers are compared with scikit-learn's.

One source for both sides of the proof: training (training/portable.py) runs the exported model
with :func:`onnx_session` and compares it with the scikit-learn pipeline on the test split and on
generated rows; the server (serving/model.py) runs the same session and repeats the comparison on
the verification sample before it becomes ready. :func:`disagreement` is the rule both apply.

Imports numpy and ONNX Runtime (the `serving` extra); the fetch stage, which has neither, imports
only :mod:`modelcard`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

Matrix = npt.NDArray[np.float64]

#: ONNX Runtime's opt-out of its telemetry (1.32 on Linux: a device id and an event database in
#: the home directory's cache, and uploads). Set before the runtime initialises: nothing is
#: created, persisted or sent. The image and the Makefile set it too.
TELEMETRY_OFF = {"ORT_DISABLE_TELEMETRY": "1"}

#: The graph's input: float64 rows in the card's feature order.
INPUT = "input"
#: The graph's output: float64 class probabilities, columns in the card's ``classes`` order.
OUTPUT = "probabilities"
#: A regression graph's output (the card's ``task: regression``): the predicted value, float64,
#: one column.
PREDICTION = "prediction"


def onnx_session(model: bytes) -> Any:
    """An ONNX Runtime session for a serialised model, on one thread.

    One thread, sequential execution: the answer does not depend on the machine's core count
    (a parallel sum adds in another order), and uWSGI forks workers after the model loads, so no
    thread pool may exist at fork time. Each worker process is one thread of serving anyway.
    ONNX Runtime's telemetry is off (:data:`TELEMETRY_OFF`).
    """
    os.environ.update(TELEMETRY_OFF)
    import onnxruntime  # type: ignore[import-untyped]

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only: warnings about unused initializers are noise
    return onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def check_signature(
    session: Any, n_features: int, n_classes: int, output: str = OUTPUT
) -> str | None:
    """Why the session's graph does not fit the card, or None when it does. ``output`` is the
    output's name (:data:`PREDICTION` for a regression, whose ``n_classes`` is its 1 column)."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if [i.name for i in inputs] != [INPUT] or [o.name for o in outputs] != [output]:
        return (
            f"the ONNX graph must have one input {INPUT!r} and one output {output!r}, "
            f"it has {[i.name for i in inputs]} and {[o.name for o in outputs]}"
        )
    if inputs[0].type != "tensor(double)" or outputs[0].type != "tensor(double)":
        return "the ONNX graph's input and output must be tensor(double)"
    shape_in, shape_out = inputs[0].shape, outputs[0].shape
    if len(shape_in) != 2 or shape_in[1] != n_features:
        return f"the ONNX graph takes {shape_in[1:]} features, the card lists {n_features}"
    if len(shape_out) != 2 or shape_out[1] != n_classes:
        what = "columns" if output == PREDICTION else "probabilities"
        return f"the ONNX graph answers {shape_out[1:]} {what}, the card lists {n_classes}"
    return None


def run(session: Any, rows: Matrix) -> Matrix:
    """Class probabilities of float64 ``rows`` (n x features) from an :func:`onnx_session`."""
    result: Matrix = session.run(None, {INPUT: rows})[0]
    return result


def labels(proba: Matrix, classes: Sequence[str]) -> list[str]:
    """The most probable class of each row; a tie goes to the first class, as in scikit-learn."""
    return [classes[i] for i in np.argmax(proba, axis=1).tolist()]


def value_disagreement(actual: Matrix, expected: Matrix, tolerance: float) -> str | None:
    """Why ``actual`` predicted values are not scikit-learn's ``expected`` ones, or None: the
    rule of a regression's proof, every value finite and within ``tolerance`` (absolute)."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        return f"{actual.shape} values where {expected.shape} were expected"
    if not np.all(np.isfinite(actual)):
        return f"{int(np.sum(~np.isfinite(actual)))} values are not finite"
    difference = np.abs(actual - expected)
    worst = float(difference.max()) if difference.size else 0.0
    far = int(np.sum(np.any(difference > tolerance, axis=1)))
    if far:
        return (
            f"{far} of {len(actual)} rows have a value off by more than {tolerance:g} "
            f"(largest difference {worst:.3g})"
        )
    return None


def disagreement(
    actual: Matrix,
    expected: Matrix,
    expected_labels: Sequence[str],
    classes: Sequence[str],
    tolerance: float,
) -> str | None:
    """Why ``actual`` probabilities are not scikit-learn's ``expected`` ones, or None.

    The rule of the proof: every label (the most probable class) identical, every probability
    within ``tolerance``. The message counts the rows that break it and names the worst one.
    """
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        return f"{actual.shape} probabilities where {expected.shape} were expected"
    served = labels(actual, classes)
    wrong_labels = sum(a != b for a, b in zip(served, expected_labels, strict=True))
    difference = np.abs(actual - expected)
    if not np.all(np.isfinite(actual)):
        return f"{int(np.sum(~np.isfinite(actual)))} probabilities are not finite"
    worst = float(difference.max()) if difference.size else 0.0
    far = int(np.sum(np.any(difference > tolerance, axis=1)))
    if wrong_labels or far:
        return (
            f"{wrong_labels} of {len(served)} labels differ and {far} rows have a probability "
            f"off by more than {tolerance:g} (largest difference {worst:.3g})"
        )
    return None


# --- input columns: categories and missing values ----------------------------------------------

#: A card feature's dtype for a column of text categories (its ``categories`` list the known ones).
CATEGORY = "category"
#: What an unseen category becomes under ``unseen: ignore``: the code no category has (one-hot:
#: all zeros; ordinal: -1, scikit-learn's ``unknown_value``).
UNSEEN_CODE = -1.0


class InputError(ValueError):
    """A value a card's feature does not take: ``row`` (its index in the column), ``column`` (the
    feature's name, once known) and ``message`` (what is wrong, to follow the value's place in
    the request: ``instances[3].colour``)."""

    def __init__(self, row: int, message: str, column: str = "") -> None:
        super().__init__(message)
        self.row = row
        self.message = message
        self.column = column


def plain(features: Sequence[dict[str, Any]]) -> bool:
    """Every feature a number that may not be missing: the model's input is a float64 matrix as
    sent (the servers' fast paths); else each value goes through :func:`encode_column`."""
    return all(f.get("dtype") != CATEGORY and not f.get("missing") for f in features)


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def encode_column(feature: dict[str, Any], values: Sequence[Any]) -> Matrix:
    """One column of request values as the graph's float64 input: a number as itself, a category
    as its index in the card's ``categories``, an unseen category as :data:`UNSEEN_CODE` (under
    ``unseen: ignore``), a missing value (JSON null, NaN, and for a category the empty string) as
    NaN where the feature allows it (the graph imputes it). Raises :class:`InputError` for the
    first value the feature does not take. Callers: the servers' decoders (serving/protocols),
    the model's load-time verification and training's proof (training/portable.py), so the rule
    is proven with the graph."""
    name = feature["name"]
    missing_ok = bool(feature.get("missing"))
    out = np.empty(len(values), dtype=np.float64)
    if feature.get("dtype") == CATEGORY:
        codes = {c: float(i) for i, c in enumerate(feature["categories"])}
        ignore = feature.get("unseen") == "ignore"
        for row, value in enumerate(values):
            if type(value) is str and value != "":
                code = codes.get(value)
                if code is None:
                    if not ignore:
                        shown = ", ".join(feature["categories"])
                        raise InputError(
                            row,
                            f"is {value!r}, not a category of {name} (categories: {shown}; "
                            "unseen ones are refused)",
                        )
                    code = UNSEEN_CODE
                out[row] = code
            elif value is None or value == "" or (type(value) is float and math.isnan(value)):
                if not missing_ok:
                    raise InputError(row, f"is missing; {name} does not allow missing values")
                out[row] = math.nan
            else:
                raise InputError(
                    row, f"must be a string (a category of {name}), got {_kind(value)}"
                )
        return out
    for row, value in enumerate(values):
        kind = type(value)
        if kind is float or kind is int or isinstance(value, np.floating | np.integer):
            number = float(value)
            if math.isnan(number) or value is None:
                if not missing_ok:
                    raise InputError(row, f"is missing; {name} does not allow missing values")
            elif not math.isfinite(number):
                raise InputError(row, f"is {number}; only finite numbers are allowed")
            out[row] = number
        elif value is None:
            if not missing_ok:
                raise InputError(row, f"is missing; {name} does not allow missing values")
            out[row] = math.nan
        else:
            raise InputError(row, f"must be a number, got {_kind(value)}")
    return out


def encode_rows(features: Sequence[dict[str, Any]], rows: Sequence[Sequence[Any]]) -> Matrix:
    """Rows of request values (features in card order) as the graph's float64 input, column by
    column through :func:`encode_column`; InputError's ``row`` is the row's index and its
    ``column`` the feature's name. Of several bad values, the first column's first is named."""
    matrix = np.empty((len(rows), len(features)), dtype=np.float64)
    for index, feature in enumerate(features):
        try:
            matrix[:, index] = encode_column(feature, [row[index] for row in rows])
        except InputError as exc:
            raise InputError(exc.row, exc.message, feature["name"]) from None
    return matrix
