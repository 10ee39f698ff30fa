"""The categorical table served through Nginx: categories, unseen ones, nulls, wrong types.

The model tests/training/columns_table.py trains (the real stages on a seeded table with two
categorical columns and four that may miss values) is served by a devstack Stack (uWSGI behind
Nginx), which answers every category, an unseen one and nulls where allowed as scikit-learn does
(within 1e-6), over /predict and v2 (JSON and binary tensors), and refuses nulls where not, an
unseen category of a column that refuses them and wrong types and datatypes, each in one line
naming the value's place; every refusal beside the same request without its defect, answered.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import requests
from columns_table import (
    CITIES,
    COLOURS,
    RECORD,
    Trained,
    expected_proba,
    frame_of,
    train_table,
)

from devstack.stack import Stack, missing_servers

pytestmark = pytest.mark.e2e  # a real Nginx + uWSGI stack


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    return train_table(tmp_path_factory.mktemp("churn-served"))


@pytest.fixture(scope="module")
def stack(trained: Trained) -> Iterator[Stack]:
    missing = missing_servers()
    if missing is not None:
        pytest.skip(missing)
    with Stack(trained.model_dir, env={"MODELOPS_MODEL_NAME": "churn"}) as running:
        yield running


def predict(stack: Stack, records: list[dict[str, Any]]) -> requests.Response:
    return requests.post(f"{stack.url}/predict", json={"instances": records}, timeout=30)


def test_predict_answers_every_category_an_unseen_one_and_nulls_as_scikit_learn(
    trained: Trained, stack: Stack
) -> None:
    records = [{**RECORD, "colour": c, "city": city} for c in COLOURS for city in CITIES]
    records += [
        {**RECORD, "city": "quito"},  # unseen, ignored
        {**RECORD, "colour": None, "city": None, "age": None, "score": None},
        {**RECORD, "colour": "", "city": ""},  # "" is a missing category too
    ]
    response = predict(stack, records)
    assert response.status_code == 200, response.text
    served = np.asarray(response.json()["probabilities"])
    assert np.abs(served - expected_proba(trained, records)).max() <= 1e-6
    assert response.json()["labels"] == list(trained.pipeline.predict(frame_of(records)))


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"income": None}, "instances[1].income",
         "instances[1].income is missing; income does not allow missing values"),
        ({"colour": "purple"}, "instances[1].colour",
         "instances[1].colour is 'purple', not a category of colour (categories: red, green, "
         "blue; unseen ones are refused)"),
        ({"colour": 1.0}, "instances[1].colour",
         "instances[1].colour must be a string (a category of colour), got float"),
        ({"age": "forty"}, "instances[1].age", "instances[1].age must be a number, got str"),
        ({"score": True}, "instances[1].score", "instances[1].score must be a number, got bool"),
    ],
    ids=["null-in-income", "unseen-colour", "number-for-category", "text-for-number", "bool"],
)  # fmt: skip
def test_predict_refuses_a_value_its_feature_does_not_take_in_one_line(
    stack: Stack, change: dict[str, Any], field: str, message: str
) -> None:
    assert predict(stack, [RECORD, RECORD]).status_code == 200  # without the defect: answered
    response = predict(stack, [RECORD, {**RECORD, **change}])
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == message and "\n" not in body["error"]
    assert body.get("field", field) == field


def tensors(records: list[dict[str, Any]], **datatypes: str) -> list[dict[str, Any]]:
    kinds = {"colour": "BYTES", "city": "BYTES", "age": "INT64", "income": "FP64", "score": "FP64"}
    kinds.update(datatypes)
    return [
        {"name": name, "shape": [len(records)], "datatype": kinds[name],
         "data": [r[name] for r in records]}
        for name in RECORD
    ]  # fmt: skip


def infer(stack: Stack, inputs: list[dict[str, Any]]) -> requests.Response:
    return requests.post(f"{stack.url}/v2/models/churn/infer", json={"inputs": inputs}, timeout=30)


def test_v2_takes_bytes_tensors_and_nulls_and_lists_each_input(
    trained: Trained, stack: Stack
) -> None:
    records = [{**RECORD, "colour": c} for c in COLOURS]
    records += [{**RECORD, "city": "quito", "age": None, "score": None, "colour": ""}]
    response = infer(stack, tensors(records))
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    served = np.asarray(outputs["predict_proba"]["data"]).reshape(len(records), 2)
    assert np.abs(served - expected_proba(trained, records)).max() <= 1e-6
    metadata = requests.get(f"{stack.url}/v2/models/churn", timeout=30).json()
    assert metadata["inputs"] == [
        {"name": "colour", "datatype": "BYTES", "shape": [-1]},
        {"name": "city", "datatype": "BYTES", "shape": [-1]},
        {"name": "age", "datatype": "FP64", "shape": [-1]},
        {"name": "income", "datatype": "FP64", "shape": [-1]},
        {"name": "score", "datatype": "FP64", "shape": [-1]},
    ]
    assert metadata["parameters"]["categories"]["colour"] == {
        "categories": COLOURS,
        "unseen": "error",
    }
    assert metadata["parameters"]["missing"] == ["colour", "city", "age", "score"]


@pytest.mark.parametrize(
    ("datatypes", "change", "field", "message"),
    [
        ({"colour": "FP64"}, {}, "inputs[0].datatype",
         "inputs[0].datatype is 'FP64'; colour is categorical: send BYTES (its categories as "
         "strings)"),
        ({"income": "BYTES"}, {}, "inputs[3].datatype",
         "inputs[3].datatype is 'BYTES'; income is a number: send one of FP64, FP32, FP16, "
         "INT64, INT32, INT16, INT8, UINT64, UINT32, UINT16, UINT8"),
        ({}, {"income": None}, "inputs[3].data[1]",
         "inputs[3].data[1] (income) is missing; income does not allow missing values"),
        ({}, {"colour": "purple"}, "inputs[0].data[1]",
         "inputs[0].data[1] (colour) is 'purple', not a category of colour (categories: red, "
         "green, blue; unseen ones are refused)"),
        ({}, {"colour": 3}, "inputs[0].data[1]",
         "inputs[0].data[1] (colour) must be a string (a category of colour), got int"),
    ],
    ids=[
        "fp64-for-category", "bytes-for-number", "null-in-income", "unseen-colour",
        "number-in-bytes",
    ],
)  # fmt: skip
def test_v2_refuses_a_wrong_datatype_or_value_in_one_line_naming_the_input(
    stack: Stack,
    datatypes: dict[str, str],
    change: dict[str, Any],
    field: str,
    message: str,
) -> None:
    assert infer(stack, tensors([RECORD, RECORD])).status_code == 200  # without the defect
    response = infer(stack, tensors([RECORD, {**RECORD, **change}], **datatypes))
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == message and "\n" not in body["error"]
    assert body.get("field", field) == field


def binary_body(records: list[dict[str, Any]]) -> tuple[bytes, int]:
    """An infer body in the binary tensor data extension: BYTES as 4-byte little-endian length
    prefixed UTF-8 elements ("" where missing), numbers as little-endian FP64 (NaN where
    missing); the JSON header's length."""
    inputs, chunks = [], []
    for name in RECORD:
        values = [r[name] for r in records]
        if name in ("colour", "city"):
            chunk = b"".join(
                len(v.encode()).to_bytes(4, "little") + v.encode()
                for v in (x or "" for x in values)
            )
            datatype = "BYTES"
        else:
            chunk = np.asarray([math.nan if v is None else v for v in values], "<f8").tobytes()
            datatype = "FP64"
        chunks.append(chunk)
        inputs.append(
            {"name": name, "shape": [len(records)], "datatype": datatype,
             "parameters": {"binary_data_size": len(chunk)}}
        )  # fmt: skip
    header = json.dumps({"inputs": inputs}).encode()
    return header + b"".join(chunks), len(header)


def test_v2_binary_tensors_carry_bytes_categories_and_nan_as_missing(
    trained: Trained, stack: Stack
) -> None:
    records = [
        {**RECORD, "colour": "blue", "city": "pune"},
        {**RECORD, "colour": None, "city": "quito", "age": None, "score": None},
    ]
    body, length = binary_body(records)
    response = requests.post(
        f"{stack.url}/v2/models/churn/infer",
        data=body,
        headers={"Inference-Header-Content-Length": str(length)},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    served = np.asarray(outputs["predict_proba"]["data"]).reshape(2, 2)
    assert np.abs(served - expected_proba(trained, records)).max() <= 1e-6
    refused, length = binary_body([{**RECORD, "income": None}])  # NaN where none may be missing
    response = requests.post(
        f"{stack.url}/v2/models/churn/infer",
        data=refused,
        headers={"Inference-Header-Content-Length": str(length)},
        timeout=30,
    )
    assert response.status_code == 422
    assert response.json()["error"] == (
        "inputs[3].data[0] (income) is missing; income does not allow missing values"
    )
