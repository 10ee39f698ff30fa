"""Property-based fuzzing of the real stack: no generated request may get a 5xx.

schemathesis generates requests (valid and invalid) from serving/openapi.json for every
operation; hypothesis mutates valid rows and tensors value by value. Every answer must be below
500, and every error must have the one JSON error shape.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.generation.case import Case
from serving_testkit import MODEL_NAME, TinyModel

from devstack.stack import Stack

pytestmark = pytest.mark.e2e
OPENAPI = Path(__file__).resolve().parents[2] / "serving" / "openapi.json"
SCHEMA = schemathesis.openapi.from_path(OPENAPI)
ERROR_KEYS = {"error", "code", "status", "field", "request_id"}
FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
_SESSION = requests.Session()


def check(response: requests.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if response.status_code >= 400 and response.request.method != "HEAD":
        assert set(response.json()) == ERROR_KEYS, response.text[:500]


@SCHEMA.parametrize()
@FUZZ
def test_no_generated_request_gets_a_5xx(case: Case, stack: Stack) -> None:
    if (
        case.path_parameters
        and "name" in case.path_parameters
        and case.path_parameters["name"] == ""
    ):
        case.path_parameters["name"] = MODEL_NAME
    check(case.call(base_url=stack.url, session=_SESSION, timeout=10))


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=6,
)


@st.composite
def mutated_rows(draw: st.DrawFn, features: list[str]) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(features, 1.0)
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.sampled_from(["drop", "add", "replace"]))
        if action == "drop" and row:
            row.pop(draw(st.sampled_from(sorted(row))))
        elif action == "add":
            row[draw(st.text(max_size=12))] = draw(json_values)
        elif row:
            row[draw(st.sampled_from(sorted(row)))] = draw(json_values)
    return row


def test_mutated_records_never_get_a_5xx(stack: Stack, tiny_model: TinyModel) -> None:
    @given(rows=st.lists(mutated_rows(tiny_model.features), max_size=3))
    @FUZZ
    def run(rows: list[dict[str, Any]]) -> None:
        body = json.dumps({"instances": rows})  # infinities become the Infinity literal
        response = _SESSION.post(f"{stack.url}/predict", data=body, timeout=10)
        check(response)
        if response.status_code == 200:
            assert len(response.json()["labels"]) == len(rows)

    run()


def test_mutated_tensors_never_get_a_5xx(stack: Stack) -> None:
    shapes = st.lists(st.integers(-1, 40), min_size=0, max_size=3)
    datatypes = st.sampled_from(["FP64", "FP32", "INT64", "UINT8", "BOOL", "BYTES", "fp64", ""])
    data = st.lists(st.floats(allow_nan=False) | st.integers() | json_values, max_size=70)

    @given(shape=shapes, datatype=datatypes, data=data, name=st.text(max_size=10))
    @FUZZ
    def run(shape: list[int], datatype: str, data: list[Any], name: str) -> None:
        tensor = {"name": name, "shape": shape, "datatype": datatype, "data": data}
        body = json.dumps({"inputs": [tensor]})
        check(_SESSION.post(f"{stack.url}/v2/models/{MODEL_NAME}/infer", data=body, timeout=10))

    run()
