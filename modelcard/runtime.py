"""How an artifact's model runs, and how its answers are compared with scikit-learn's.

One source for both sides of the proof: training (training/portable.py) runs the exported model
with :func:`onnx_session` and compares it with the scikit-learn pipeline on the test split and on
generated rows; the server (serving/model.py) runs the same session and repeats the comparison on
the verification sample before it becomes ready. :func:`disagreement` is the rule both apply.

Imports numpy and ONNX Runtime (the `serving` extra); the fetch stage, which has neither, imports
only :mod:`modelcard`.
"""

from __future__ import annotations

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
