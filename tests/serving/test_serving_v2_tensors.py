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

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving.errors import ApiError
from serving.protocols.common import parse_json
from serving.protocols.v2 import V2_NUMERIC, careful_values, fast_values

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


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tensor_data(), st.sampled_from(sorted(V2_NUMERIC)))
def test_what_the_fast_path_takes_the_careful_path_takes_identically(
    data: list[Any], datatype: str
) -> None:
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
