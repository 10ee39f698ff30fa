"""The Open Inference Protocol's tensor data: the fast path against the careful path.

``fast_values`` (one ``array('d')`` pass, or numpy's type discovery when the body has no
``true``/``false``/``null`` token) may only ever *accept less* than ``careful_values`` (flattened,
checked value by value): whatever it takes, the careful path takes too, with the same float64
values bit for bit; whatever it declines goes the careful way, which names the problem. Hypothesis
writes tensor data of every datatype, flat and nested, with the values a client may send by
mistake (booleans among 0s and 1s, null, strings, lists where numbers belong, floats in an integer
tensor, integers beyond int64 or float64, NaN and infinities) so that both sides of that line get
exercised.
"""

from __future__ import annotations

import json
from typing import Any
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serving_testkit import TinyModel

from serving.errors import ApiError
from serving.metrics import Metrics
from serving.model import Model
from serving.protocols import v2
from serving.protocols.common import parse_json
from serving.protocols.v2 import V2_NUMERIC, careful_values, fast_values, infer_body
from serving.provenance import HEADER
from serving.state import ServerState

FINITE = st.floats(allow_nan=False, allow_infinity=False)
NUMBER = st.one_of(
    FINITE,
    st.sampled_from([0.0, -0.0, 1.0, 0, 1, 5e-324, 2.5e-308, 1.7976931348623157e308]),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([2**63, 2**64, -(2**63) - 1, 10**400]),
)
WRONG = st.sampled_from(
    [True, False, None, "1.5", "", [], {}, {"v": 1}, float("nan"), float("inf"), float("-inf")]
)
VALUE = st.one_of(NUMBER, NUMBER, NUMBER, NUMBER, WRONG)


@st.composite
def tensor_data(draw: st.DrawFn) -> list[Any]:
    """Flat data, or nested rows of equal (or, rarely, unequal) length."""
    if draw(st.booleans()):
        return draw(st.lists(VALUE, max_size=12))
    width = draw(st.integers(1, 4))
    rows = draw(st.lists(st.lists(VALUE, min_size=width, max_size=width), min_size=1, max_size=4))
    if draw(st.integers(0, 9)) == 0:
        rows.append(draw(st.lists(VALUE, max_size=width + 1)))
    return rows


def values_of(data: list[Any], datatype: str) -> tuple[np.ndarray | None, np.ndarray | ApiError]:
    """What each path makes of ``data`` as it arrives (written as JSON, read by the server)."""
    text = json.dumps(data).encode()
    parsed = parse_json(text)
    literal_free = b"true" not in text and b"false" not in text and b"null" not in text
    fast = fast_values(parsed, datatype, lambda: literal_free)
    size = len(np.ravel(np.array(fast))) if fast is not None else _count(parsed)
    try:
        careful: np.ndarray | ApiError = careful_values(parsed, datatype, [size], "inputs[0]")
    except ApiError as error:
        careful = error
    return fast, careful


def _count(data: Any) -> int:
    return sum(_count(item) for item in data) if isinstance(data, list) else 1


@pytest.mark.parametrize("few", [v2.FEW_VALUES, 0], ids=["types-looked-at", "numpy-0s-and-1s"])
@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tensor_data(), st.sampled_from(sorted(V2_NUMERIC)))
def test_what_the_fast_path_takes_the_careful_path_takes_identically(
    few: int, data: list[Any], datatype: str
) -> None:
    """Both ways of seeking booleans (``_holds_bool``: every value's type for a few values,
    numpy's 0s and 1s for more) are held to the line."""
    with mock.patch.object(v2, "FEW_VALUES", few):
        fast, careful = values_of(data, datatype)
    if fast is None:
        return  # the careful path decides, as it always did
    assert not isinstance(careful, ApiError), (
        f"fast path took what the careful path refuses: {careful}"
    )
    assert fast.dtype == np.float64 and careful.dtype == np.float64
    assert fast.tobytes() == careful.tobytes()  # bit for bit: -0.0, rounding, subnormals


@settings(max_examples=300, deadline=None)
@given(st.lists(FINITE, min_size=1, max_size=40))
def test_flat_finite_float_data_takes_the_fast_path(values: list[float]) -> None:
    fast, _ = values_of(values, "FP64")
    assert fast is not None
    assert fast.tolist() == values


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.integers(-(2**31), 2**31), min_size=3, max_size=3), min_size=1))
def test_nested_integer_data_takes_the_fast_path(rows: list[list[int]]) -> None:
    fast, _ = values_of(rows, "INT64")
    assert fast is not None
    assert fast.tolist() == [float(v) for row in rows for v in row]


@pytest.mark.parametrize(
    ("data", "datatype", "words"),
    [
        ([0.0, 1.0, True], "FP64", "inputs[0].data[2] must be a number, got bool"),
        ([[0, 1], [None, 1]], "INT32", "inputs[0].data[2] must be a number, got null"),
        ([1, 2, 3.5], "INT64", "inputs[0].data[2] is not an integer but the datatype is INT64"),
        ([1.0, "2"], "FP32", "inputs[0].data[1] must be a number, got str"),
        ([10**400], "FP64", "out of the float64 range"),
    ],
)
def test_what_the_fast_path_declines_the_careful_path_names(
    data: list[Any], datatype: str, words: str
) -> None:
    fast, careful = values_of(data, datatype)
    assert fast is None
    assert isinstance(careful, ApiError) and careful.status == 422
    assert words in careful.message


@pytest.mark.parametrize("size", [3, 300], ids=["few-values", "many-values"])
def test_a_boolean_among_numbers_is_found_both_ways(size: int) -> None:
    """A boolean where a 1.0 (or 0.0) could be is found by either way of seeking it; the same
    values with the boolean written as a number are taken."""
    for hidden in (True, False):
        values: list[Any] = [0.5] * size
        values[size // 2] = hidden
        flat = np.asarray(values, dtype=np.float64)
        assert v2._holds_bool(flat, values)
        values[size // 2] = float(hidden)
        assert not v2._holds_bool(flat, values)


@pytest.fixture(scope="module")
def server(tiny_model: TinyModel) -> ServerState:
    """The tiny model, loaded and served."""
    model = Model(tiny_model.directory)
    model.load()
    metrics = Metrics()
    metrics.describe_model(model)
    return ServerState(model=model, metrics=metrics, max_rows=50)


def one_row_disagreement(answer: dict[str, Any], model: Model, row: list[float]) -> str | None:
    """Why a v2 answer to one row is not the matrix path's answer to it (``predict_proba`` and
    ``labels`` on the row as a one-row matrix), or None."""
    expected = model.predict_proba(np.array([row], dtype=np.float64))
    outputs = {output["name"]: output for output in answer["outputs"]}
    proba = outputs["predict_proba"]
    if proba["shape"] != [1, len(model.classes)] or proba["datatype"] != "FP64":
        return f"predict_proba is {proba['shape']} {proba['datatype']}"
    if not np.allclose(np.asarray(proba["data"], dtype=np.float64), expected.ravel(), atol=1e-12):
        return f"probabilities {list(proba['data'])} against {expected.ravel().tolist()}"
    if float(np.ptp(expected[0])) > 1e-9 and list(outputs["predict"]["data"]) != model.labels(
        expected
    ):
        return f"label {list(outputs['predict']['data'])} against {model.labels(expected)}"
    if outputs["predict"]["shape"] != [1]:
        return f"predict's shape is {outputs['predict']['shape']}"
    return None


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_a_single_row_tensor_is_answered_as_the_matrix_path_answers_it(
    server: ServerState, tiny_model: TinyModel, data: st.DataObject
) -> None:
    """A one-row tensor ([1, F] or [F], flat or nested) takes the one-row path both protocols
    share (``score_one``); its answer equals ``predict_proba`` and ``labels`` on the row."""
    scale = data.draw(st.sampled_from([1.0, 10.0, 1000.0]))
    width = len(tiny_model.features)
    row = data.draw(
        st.lists(st.floats(-scale, scale, allow_nan=False), min_size=width, max_size=width)
    )
    shape, payload = data.draw(
        st.sampled_from([([1, width], row), ([width], row), ([1, width], [row])])
    )
    tensor = {"name": "input-0", "shape": shape, "datatype": "FP64", "data": payload}
    model = server.model
    raw = json.dumps({"inputs": [tensor]}).encode()
    answer = infer_body(server, model.name, None, raw, None)
    assert answer.headers == {HEADER: model.provenance_id}
    assert answer.body["model_name"] == model.name
    assert one_row_disagreement(answer.body, model, row) is None


def test_a_single_row_tensor_never_reaches_the_batch_path(
    server: ServerState, tiny_model: TinyModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One row is scored by ``Model.predict_one`` (the bound buffers, the row's signals in plain
    Python), not by ``predict_proba``: with the batch path broken, one row is still answered and
    two rows are not."""
    model = server.model
    row = [0.25] * len(tiny_model.features)
    expected = infer_body(server, model.name, None, _tensor_body([row]), None).body

    def broken(x: np.ndarray) -> np.ndarray:
        raise RuntimeError("the batch path was taken")

    monkeypatch.setattr(model, "predict_proba", broken)
    assert infer_body(server, model.name, None, _tensor_body([row]), None).body == expected
    with pytest.raises(RuntimeError, match="the batch path was taken"):
        infer_body(server, model.name, None, _tensor_body([row, row]), None)


def test_the_one_row_check_rejects_an_answer_that_differs_from_the_matrix_path(
    server: ServerState, tiny_model: TinyModel
) -> None:
    """``one_row_disagreement`` can fail: the probabilities swapped, or a second label added,
    are each named."""
    model = server.model
    row = [0.25] * len(tiny_model.features)
    answer = infer_body(server, model.name, None, _tensor_body([row]), None).body
    assert one_row_disagreement(answer, model, row) is None
    swapped = json.loads(json.dumps(answer, default=list))
    proba = next(o for o in swapped["outputs"] if o["name"] == "predict_proba")
    proba["data"] = proba["data"][::-1]
    assert "probabilities" in str(one_row_disagreement(swapped, model, row))
    doubled = json.loads(json.dumps(answer, default=list))
    labels = next(o for o in doubled["outputs"] if o["name"] == "predict")
    labels["shape"] = [2]
    assert "shape" in str(one_row_disagreement(doubled, model, row))


def _tensor_body(rows: list[list[float]]) -> bytes:
    tensor = {
        "name": "input-0",
        "shape": [len(rows), len(rows[0])],
        "datatype": "FP64",
        "data": [v for row in rows for v in row],
    }
    return json.dumps({"inputs": [tensor]}).encode()
