"""The records protocol's fast path against the careful path it stands in front of.

The one-pass decoder (``serving.protocols.records.RecordsDecoder``) may only ever *accept less*:
whatever body it decodes, the careful path (``careful_matrix``: any JSON, then checked piece by
piece) must accept too, with the same matrix bit for bit; whatever it refuses goes to the careful
path, which names the problem. Hypothesis writes bodies near the happy shape by hand (keys in any
order, escaped key characters, numbers in every JSON spelling, whitespace, duplicates, stray keys,
wrong types, tokens JSON does not allow) so that both sides of that line get exercised. And one
row: the one-row shortcut (``Model.predict_one``) answers as the matrix path would.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serving_testkit import TinyModel

from serving.errors import ApiError
from serving.metrics import Metrics
from serving.model import Model
from serving.protocols.records import RecordsDecoder, careful_matrix, decoder_for, predict_body
from serving.provenance import HEADER
from serving.state import ServerState

# Feature names with what a JSON writer may escape: a space, a slash, non-ASCII, an emoji
# (a surrogate pair when escaped). A quote or a backslash msgspec refuses in a key name.
FEATURES = ("mean radius", "a/b", "ñandú", "🦀 crab", "x")
MAX_ROWS = 50
DECODER = RecordsDecoder(FEATURES)

WHITESPACE = st.sampled_from(["", "", "", " ", "\n", "\t ", "\r\n  "])
FINITE = st.floats(allow_nan=False, allow_infinity=False)
# Number spellings JSON allows, some beyond float64 (overflow, underflow, >64-bit integers).
NUMBER_TEXT = st.one_of(
    FINITE.map(repr),
    FINITE.map(lambda x: f"{x:e}"),
    FINITE.map(lambda x: f"{x:.17E}"),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.sampled_from(["-0", "-0.0", "0e0", "1E+2", "1e400", "-1e400", "1e-400", "2.5e-324"]),
    st.sampled_from([str(10**400), "9007199254740993", "18446744073709551615"]),
)
# Tokens that are not a number in a feature's place: wrong types, and what JSON does not allow.
NOT_A_NUMBER = st.sampled_from(
    [
        *["true", "false", "null", '"1.5"', "[1.5]", '{"v": 1}', "NaN", "Infinity", "-Infinity"],
        *["01", "1.", ".5", "+1", "0x10", "1e", "--1"],
    ]
)


def key_text(name: str, escape: list[bool]) -> str:
    """A JSON string for ``name``, each character \\u-escaped where ``escape`` says."""
    out = []
    for char, escaped in zip(name, escape, strict=False):
        if escaped:
            units = char.encode("utf-16-be")
            out.extend(f"\\u{units[i : i + 2].hex()}" for i in range(0, len(units), 2))
        else:
            out.append(json.dumps(char, ensure_ascii=False)[1:-1])
    return '"' + "".join(out) + '"'


@st.composite
def row_text(draw: st.DrawFn) -> str:
    names = list(FEATURES)
    names = draw(st.permutations(names))
    if draw(st.integers(0, 9)) == 0:  # a missing feature
        names = names[: draw(st.integers(0, len(names) - 1))]
    if draw(st.integers(0, 9)) == 0:  # an unknown or a repeated key
        names = [*names, draw(st.sampled_from(["extra", "Mean radius", *FEATURES]))]
    members = []
    for name in names:
        bad = draw(st.integers(0, 19)) == 0
        value = draw(NOT_A_NUMBER if bad else NUMBER_TEXT)
        escape = draw(st.lists(st.booleans(), min_size=len(name), max_size=len(name)))
        ws = [draw(WHITESPACE) for _ in range(3)]
        members.append(f"{ws[0]}{key_text(name, escape)}{ws[1]}:{ws[2]}{value}")
    return "{" + ",".join(members) + draw(WHITESPACE) + "}"


@st.composite
def body_text(draw: st.DrawFn) -> bytes:
    rows = draw(st.lists(row_text(), min_size=0, max_size=4))
    if draw(st.integers(0, 14)) == 0:  # a row that is not an object
        rows.insert(0, draw(st.sampled_from(["[]", "1", "null", '"row"'])))
    ws = draw(WHITESPACE)
    array = "[" + ws + ("," + ws).join(rows) + ws + "]"
    top = [f'"instances"{ws}:{ws}{array}']
    extra = draw(st.integers(0, 14))
    if extra == 0:
        top.append('"instances": []')  # a repeated key: the last one counts
    elif extra == 1:
        top.append('"model": "x"')
    text = ws + "{" + ",".join(top) + "}" + ws
    tail = draw(st.integers(0, 19))
    if tail == 0:
        text += draw(st.sampled_from(["x", "{}", ",", "\x00"]))
    elif tail == 1:
        text = text[: draw(st.integers(0, len(text) - 1))]  # cut short
    return text.encode()


def careful(raw: bytes, features: tuple[str, ...] = FEATURES) -> np.ndarray | ApiError:
    """The careful path's matrix, or the error it answers."""
    try:
        return careful_matrix(raw, features, MAX_ROWS)
    except ApiError as error:
        return error


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body_text())
def test_what_the_decoder_accepts_the_careful_path_accepts_identically(raw: bytes) -> None:
    rows = DECODER.rows(raw)
    expected = careful(raw)
    if rows is None:
        return  # the careful path decides, as it always did
    if not rows:
        assert isinstance(expected, ApiError) and expected.status == 422
        return
    assert not isinstance(expected, ApiError), (
        f"decoder accepted what the careful path refuses: {expected}"
    )
    matrix = DECODER.matrix(rows)
    assert matrix.dtype == np.float64 and matrix.shape == expected.shape
    assert matrix.tobytes() == expected.tobytes()  # bit for bit: -0.0, rounding, subnormals
    assert DECODER.values(rows[0]) == tuple(expected[0].tolist())


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(*[FINITE] * len(FEATURES)), min_size=1, max_size=20))
def test_a_plain_body_is_decoded_not_sent_the_careful_way(values: list[tuple[float, ...]]) -> None:
    raw = json.dumps({"instances": [dict(zip(FEATURES, row, strict=True)) for row in values]})
    rows = DECODER.rows(raw.encode())
    assert rows is not None
    assert DECODER.matrix(rows).tolist() == [list(row) for row in values]


@pytest.mark.parametrize(
    "body",
    [
        {"instances": [{**dict.fromkeys(FEATURES, 1.0), "x": True}]},
        {"instances": [dict.fromkeys(FEATURES[:-1], 1.0)]},
        {"instances": [{**dict.fromkeys(FEATURES, 1.0), "extra": 1.0}]},
        {"instances": [{**dict.fromkeys(FEATURES, 1.0), "x": None}]},
        {"instances": [{**dict.fromkeys(FEATURES, 1.0), "x": "1.0"}]},
        {"instances": [dict.fromkeys(FEATURES, 1.0)], "model": "x"},
        {"instances": {"0": dict.fromkeys(FEATURES, 1.0)}},
        [dict.fromkeys(FEATURES, 1.0)],
    ],
    ids=["bool", "missing", "unknown", "null", "string", "top-level-key", "not-a-list", "bare"],
)
def test_each_kind_of_bad_row_is_left_to_the_careful_path(body: Any) -> None:
    raw = json.dumps(body).encode()
    assert DECODER.rows(raw) is None
    error = careful(raw)
    assert isinstance(error, ApiError) and error.status == 422


@pytest.mark.parametrize("text", ["NaN", "Infinity", "1e400"])
def test_non_finite_numbers_are_left_to_the_careful_path(text: str) -> None:
    members = ", ".join(f'"{name}": {text}' for name in FEATURES[3:])
    raw = f'{{"instances": [{{{members}}}]}}'.encode()
    decoder = RecordsDecoder(FEATURES[3:])
    assert decoder.rows(raw) is None
    error = careful(raw, FEATURES[3:])
    assert isinstance(error, ApiError) and error.status == 422
    assert "only finite numbers are allowed" in error.message


@pytest.mark.parametrize(
    "raw",
    [
        b'{"\xc3(instances": [{"x": 1}]}',
        b'{"instances": [{"x\xff": 1}]}',
        b'{"instances": [{"x": "\xc3("}]}',
    ],
    ids=["top-level-key", "feature-key", "value"],
)
def test_bytes_that_are_not_utf8_are_left_to_the_careful_path_which_answers_400(
    raw: bytes,
) -> None:
    """msgspec raises UnicodeDecodeError, not its own error, for a key that is not UTF-8 (the
    seeded fuzz met it as a 500): the decoder leaves such a body to the careful path."""
    assert DECODER.rows(raw) is None
    error = careful(raw)
    assert isinstance(error, ApiError) and error.status == 400


def test_a_one_feature_model_decodes_too() -> None:
    decoder = RecordsDecoder(("only",))
    rows = decoder.rows(b'{"instances": [{"only": 2}, {"only": -0.5}]}')
    assert rows is not None
    assert decoder.values(rows[0]) == (2.0,)
    assert decoder.matrix(rows).tolist() == [[2.0], [-0.5]]


def test_a_decoder_needs_features() -> None:
    with pytest.raises(ValueError, match="at least one feature"):
        RecordsDecoder(())


@pytest.mark.parametrize("name", ['say "hi"', "back\\slash", "tab\there"])
def test_feature_names_msgspec_refuses_send_every_request_the_careful_way(name: str) -> None:
    features = ("x", name)
    assert decoder_for(features) is None
    raw = json.dumps({"instances": [{"x": 1, name: 2.5}]}).encode()
    assert careful(raw, features).tolist() == [[1.0, 2.5]]  # type: ignore[union-attr]


def test_rows_beyond_the_limit_still_reach_the_row_check() -> None:
    """The decoder does not count rows: the endpoint checks the count for both paths alike."""
    raw = json.dumps({"instances": [dict.fromkeys(FEATURES, 0.5)] * (MAX_ROWS + 1)}).encode()
    rows = DECODER.rows(raw)
    assert rows is not None and len(rows) == MAX_ROWS + 1
    error = careful(raw)
    assert isinstance(error, ApiError) and error.status == 413


@pytest.fixture(scope="module")
def server(tiny_model: TinyModel) -> ServerState:
    """The tiny model, loaded and served (its one-row path as the model offers it)."""
    model = Model(tiny_model.directory)
    model.load()
    metrics = Metrics()
    metrics.describe_model(model)
    return ServerState(model=model, metrics=metrics, max_rows=MAX_ROWS)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_a_single_row_is_answered_as_the_matrix_path_answers_it(
    server: ServerState, tiny_model: TinyModel, data: st.DataObject
) -> None:
    """A one-row body takes the one-row shortcut (``Model.predict_one``, when the model offers
    it); its answer equals ``predict_proba`` and ``labels`` on the same row as a matrix."""
    scale = data.draw(st.sampled_from([1.0, 10.0, 1000.0]))
    values = data.draw(
        st.lists(
            st.floats(-scale, scale, allow_nan=False),
            min_size=len(tiny_model.features),
            max_size=len(tiny_model.features),
        )
    )
    raw = json.dumps({"instances": [dict(zip(tiny_model.features, values, strict=True))]})
    answer = predict_body(server, raw.encode())
    model = server.model
    expected = model.predict_proba(np.array([values], dtype=np.float64))
    assert answer.headers == {HEADER: model.provenance_id}
    assert (answer.body["model_name"], answer.body["model_version"]) == (
        model.name,
        model.provenance.version,
    )
    assert list(answer.body["classes"]) == list(model.classes)
    np.testing.assert_allclose(np.asarray(answer.body["probabilities"]), expected, atol=1e-12)
    if float(np.ptp(expected[0])) > 1e-9:  # no tie to break
        assert answer.body["labels"] == model.labels(expected)
