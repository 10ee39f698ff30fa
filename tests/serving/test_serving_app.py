"""The app (the request pipeline) through werkzeug's test client: every endpoint, every error,
one error shape."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from serving_testkit import MODEL_NAME, TinyModel
from werkzeug.test import Client, TestResponse

from serving.app import ConfigError, create_app
from serving.model import Model
from serving.provenance import HEADER, provenance_id
from serving.routes import ROUTES

INFER = f"/v2/models/{MODEL_NAME}/infer"
DIGEST = "sha256:" + "d16e5700" * 8  # MODELOPS_IMAGE_DIGEST of the app fixture (conftest)
ERROR_KEYS = {"error", "code", "status", "field", "request_id"}


def assert_error(response: TestResponse, status: int, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body: dict[str, Any] = response.get_json()
    assert set(body) == ERROR_KEYS
    assert body["status"] == status
    assert isinstance(body["error"], str) and body["error"]
    assert body["request_id"] == response.headers["X-Request-ID"]
    if field is not None:
        assert body["field"] == field
    return body


#: A /predict answer: what the records protocol defines, plus the model's name and version.
PREDICT_KEYS = frozenset({"model_name", "model_version", "classes", "labels", "probabilities"})


def beyond_the_protocol(body: dict[str, Any]) -> list[str]:
    """The keys of a /predict answer beyond PREDICT_KEYS (the provenance has no place there)."""
    return sorted(set(body) - PREDICT_KEYS)


def test_predict_answers_labels_probabilities_and_provenance(
    client: Client, tiny_model: TinyModel
) -> None:
    rows = [tiny_model.record(i) for i in range(5)]
    response = client.post("/predict", json={"instances": rows})
    assert response.status_code == 200
    body = response.get_json()
    expected = tiny_model.pipeline.predict_proba(tiny_model.x_test[:5])
    np.testing.assert_allclose(body["probabilities"], expected, atol=1e-12)
    assert body["classes"] == ["malignant", "benign"]
    assert body["labels"] == [body["classes"][int(p[1] > p[0])] for p in expected]
    assert (body["model_name"], body["model_version"]) == (MODEL_NAME, "v1.2.0")
    assert beyond_the_protocol(body) == []
    provenance = {
        "name": MODEL_NAME,
        "version": "v1.2.0",
        "stage": "staging",
        "git_commit": "0123456789abcdef0123456789abcdef01234567",
        "image_digest": DIGEST,
        "data_sha256": tiny_model.metadata["data"]["sha256"],
        "model_sha256": tiny_model.metadata["model_sha256"],
    }
    assert response.headers[HEADER] == provenance_id(provenance)
    # The answer of before issue 24 carried the provenance itself: the check sees it.
    assert beyond_the_protocol({**body, "model": provenance}) == ["model"]


def test_integers_are_numbers_too(client: Client, tiny_model: TinyModel) -> None:
    row = {name: int(value) for name, value in tiny_model.record(0).items()}
    assert client.post("/predict", json={"instances": [row]}).status_code == 200


def test_request_id_is_echoed(client: Client, tiny_model: TinyModel) -> None:
    response = client.post(
        "/predict", json={"instances": [tiny_model.record()]}, headers={"X-Request-ID": "abc-123"}
    )
    assert response.headers["X-Request-ID"] == "abc-123"


def _with(tiny_model: TinyModel, **changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = tiny_model.record(0)
    for key, value in changes.items():
        if value is ...:
            del row[key]
        else:
            row[key] = value
    return row


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"mean_radius": ...}, "instances[0].mean_radius", "lacks the feature 'mean_radius'"),
        ({"colour": 1.0}, "instances[0].colour", "unknown feature 'colour'"),
        ({"mean_area": "12.5"}, "instances[0].mean_area", "must be a number, got str"),
        ({"mean_area": True}, "instances[0].mean_area", "must be a number, got bool"),
        ({"mean_area": None}, "instances[0].mean_area", "must be a number, got null"),
        ({"mean_area": [1.0]}, "instances[0].mean_area", "must be a number, got list"),
    ],
)
def test_bad_rows_are_422_naming_the_field(
    client: Client, tiny_model: TinyModel, changes: dict[str, Any], field: str, words: str
) -> None:
    response = client.post("/predict", json={"instances": [_with(tiny_model, **changes)]})
    assert words in assert_error(response, 422, field)["error"]


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"mean_radius": ...}, "instances[1].mean_radius", "lacks the feature 'mean_radius'"),
        ({"colour": 1.0}, "instances[1].colour", "unknown feature 'colour'"),
        ({"mean_area": "12.5"}, "instances[1].mean_area", "must be a number, got str"),
        ({"mean_area": True}, "instances[1].mean_area", "must be a number, got bool"),
        ({"mean_area": False}, "instances[1].mean_area", "must be a number, got bool"),
        ({"mean_area": None}, "instances[1].mean_area", "must be a number, got null"),
        ({"mean_area": [1.0]}, "instances[1].mean_area", "must be a number, got list"),
        ({"mean_area": {}}, "instances[1].mean_area", "must be a number, got dict"),
        ({"mean_area": 10**400}, "instances", "out of the float64 range"),
    ],
)
def test_bad_value_in_a_batch_is_422_naming_the_field(
    client: Client, tiny_model: TinyModel, changes: dict[str, Any], field: str, words: str
) -> None:
    """A batch is refused alike, whatever the other rows hold: here zeros and ones (what a
    boolean would pass for as a float) all around the bad value."""
    zeros = {name: 0.0 for name in tiny_model.record(0)}
    ones = {name: 1 for name in tiny_model.record(0)}
    rows = [zeros, {**ones, **_with(tiny_model, **changes)}, ones]
    if "mean_radius" in changes:
        del rows[1]["mean_radius"]
    response = client.post("/predict", data=json.dumps({"instances": rows}))
    assert words in assert_error(response, 422, field)["error"]


def test_batch_keys_in_any_order_give_the_same_answer(
    client: Client, tiny_model: TinyModel
) -> None:
    rows = [tiny_model.record(i) for i in range(6)]
    shuffled = [dict(reversed(row.items())) if i % 2 else row for i, row in enumerate(rows)]
    ordered = client.post("/predict", json={"instances": rows}).get_json()
    mixed = client.post("/predict", json={"instances": shuffled}).get_json()
    expected = tiny_model.pipeline.predict_proba(tiny_model.x_test[:6])
    np.testing.assert_allclose(ordered["probabilities"], expected, atol=1e-12)
    assert mixed == ordered
    reordered = [dict(reversed(row.items())) for row in rows]
    assert client.post("/predict", json={"instances": reordered}).get_json() == ordered


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_values_are_422(client: Client, tiny_model: TinyModel, literal: str) -> None:
    row = json.dumps(_with(tiny_model, worst_area=0.0)).replace(
        '"worst_area": 0.0', f'"worst_area": {literal}'
    )
    response = client.post("/predict", data='{"instances": [' + row + "]}")
    body = assert_error(response, 422, "instances[0].worst_area")
    assert "only finite numbers" in body["error"]


def scored_rows(client: Client) -> float:
    """The server's count of scored rows (modelops_scored_rows_total)."""
    lines = client.get("/metrics").get_data(as_text=True).splitlines()
    found = [float(line.rsplit(" ", 1)[1]) for line in lines
             if line.startswith("modelops_scored_rows_total")]  # fmt: skip
    assert found, "no modelops_scored_rows_total"
    return sum(found)


#: float64's largest value: the tiny model's scaler divides it to inf, and its logistic answer of
#: inf - inf is NaN.
EXTREME = 1.7976931348623157e308


@pytest.mark.parametrize("rows", [1, 3])
def test_a_row_the_model_cannot_answer_finitely_is_422_on_both_protocols_and_counts_nothing(
    client: Client, tiny_model: TinyModel, rows: int
) -> None:
    """Rows of float64's extreme values once got a 200 whose probabilities were null: the served
    model answers NaN for them (shown first; scikit-learn itself refuses the scaler's inf), so
    the server now names the row instead."""
    extreme = [EXTREME if i % 2 else -EXTREME for i in range(len(tiny_model.features))]
    served: Model = client.application.server.model  # type: ignore[attr-defined]
    assert np.isnan(served.predict_proba(np.array([extreme]))).any()
    batch = [tiny_model.record(i) for i in range(rows - 1)]
    batch.append(dict(zip(tiny_model.features, extreme, strict=True)))
    before = scored_rows(client)
    body = assert_error(client.post("/predict", json={"instances": batch}), 422,
                        f"instances[{rows - 1}]")  # fmt: skip
    assert body["error"].startswith(f"row {rows - 1} (instances[{rows - 1}]): the model's answer")
    data = [v for row in batch for v in (row[f] for f in tiny_model.features)]
    tensor = {"name": "input-0", "shape": [rows, len(tiny_model.features)], "datatype": "FP64",
              "data": data}  # fmt: skip
    body = assert_error(client.post(INFER, json={"inputs": [tensor]}), 422, "inputs")
    assert body["error"].startswith(f"row {rows - 1} (inputs): the model's answer")
    assert scored_rows(client) == before
    # the same rows with the extreme ones halved: an answer, 200
    batch[-1] = dict(zip(tiny_model.features, [v / 2**600 for v in extreme], strict=True))
    answered = client.post("/predict", json={"instances": batch})
    assert answered.status_code == 200 and None not in answered.get_json()["probabilities"][-1]


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b'{"instances": [', 400, None),
        (b"\xff\xfe garbage", 400, None),
        (b"", 400, None),
        (b"[]", 422, "instances"),
        (b'{"rows": []}', 422, "instances"),
        (b'{"instances": {}}', 422, "instances"),
        (b'{"instances": []}', 422, "instances"),
        (b'{"instances": [1]}', 422, "instances[0]"),
    ],
)
def test_malformed_and_empty_bodies(
    client: Client, body: bytes, status: int, field: str | None
) -> None:
    assert_error(client.post("/predict", data=body), status, field)


def test_extra_top_level_key_is_named(client: Client, tiny_model: TinyModel) -> None:
    response = client.post("/predict", json={"instances": [tiny_model.record()], "debug": 1})
    assert_error(response, 422, "debug")


def test_row_limit_and_body_limit(tiny_model: TinyModel) -> None:
    app = create_app(
        {"MODEL_DIR": str(tiny_model.directory), "MAX_ROWS": 3, "MAX_CONTENT_LENGTH": 4000}
    )
    client = app.test_client()
    ok = client.post("/predict", json={"instances": [tiny_model.record()] * 3})
    assert ok.status_code == 200
    body = assert_error(client.post("/predict", json={"instances": [tiny_model.record()] * 4}), 413)
    assert body["code"] == "too_many_rows" and "at most 3" in body["error"]
    big = client.post("/predict", data=b'{"instances": [' + b" " * 5000 + b"]}")
    assert assert_error(big, 413)["code"] == "payload_too_large"


def test_a_malformed_limit_is_refused_at_start_naming_the_variable(tiny_model: TinyModel) -> None:
    with pytest.raises(ConfigError, match=r"^MODELOPS_MAX_ROWS must be an integer, got 'lots'$"):
        create_app({"MODEL_DIR": str(tiny_model.directory), "MAX_ROWS": "lots"})


def test_wrong_method_unknown_path_unknown_model(client: Client) -> None:
    response = client.get("/predict")
    assert_error(response, 405)
    assert "POST" in response.headers["Allow"]
    assert_error(client.get("/nowhere"), 404)
    assert_error(client.post("/v2/models/other/infer", json={"inputs": []}), 404)
    assert_error(client.get("/v2/models/other"), 404)
    assert_error(client.get(f"/v2/models/{MODEL_NAME}/versions/v9.9.9"), 404)


def test_not_ready_until_loaded(tiny_model: TinyModel) -> None:
    model = Model(tiny_model.directory)
    client = create_app(model=model).test_client()
    assert client.get("/v2/health/live").get_json() == {"live": True}
    assert_error(client.get("/v2/health/ready"), 503)
    assert_error(client.post("/predict", json={"instances": [tiny_model.record()]}), 503)
    model.load()
    assert client.get("/v2/health/ready").get_json() == {"ready": True}


def test_v2_server_and_model_metadata(client: Client, tiny_model: TinyModel) -> None:
    assert client.get("/v2").get_json() == {
        "name": "modelops",
        "version": "0.1.0",
        "extensions": [],
    }
    for path in (f"/v2/models/{MODEL_NAME}", f"/v2/models/{MODEL_NAME}/versions/v1.2.0"):
        meta = client.get(path).get_json()
        assert meta["name"] == MODEL_NAME and meta["versions"] == ["v1.2.0"]
        assert meta["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 30]}]
        assert [o["name"] for o in meta["outputs"]] == ["predict", "predict_proba"]
        assert meta["parameters"]["features"] == tiny_model.features
        assert meta["parameters"]["model_sha256"] == tiny_model.metadata["model_sha256"]
        assert meta["parameters"]["stage"] == "staging"
        assert meta["parameters"]["image_digest"] == DIGEST
    ready = client.get(f"/v2/models/{MODEL_NAME}/ready")
    assert ready.get_json() == {"name": MODEL_NAME, "ready": True}


@pytest.mark.parametrize("digest", [DIGEST, "sha256:" + "0" * 64])
def test_modelops_image_digest_is_reported_in_every_provenance(
    tiny_model: TinyModel, monkeypatch: pytest.MonkeyPatch, digest: str
) -> None:
    """The pod's MODELOPS_IMAGE_DIGEST (kustomize/transformers/provenance sets it from the image
    the overlay pins) reaches the v2 model metadata, the model info metric, and through the
    provenance id the header of both prediction endpoints."""
    monkeypatch.setenv("MODELOPS_IMAGE_DIGEST", digest)
    client = create_app({"MODEL_DIR": str(tiny_model.directory)}).test_client()
    predicted = client.post("/predict", json={"instances": [tiny_model.record()]})
    assert predicted.status_code == 200
    inferred = client.post(
        INFER,
        json={
            "inputs": [
                {
                    "name": "input-0",
                    "shape": [1, 30],
                    "datatype": "FP64",
                    "data": tiny_model.x_test[0].tolist(),
                }
            ]
        },
    )
    assert inferred.status_code == 200, inferred.get_data(as_text=True)
    parameters = client.get(f"/v2/models/{MODEL_NAME}").get_json()["parameters"]
    assert parameters["image_digest"] == digest
    for response in (predicted, inferred):
        assert response.headers[HEADER] == parameters["provenance_id"] == provenance_id(parameters)
    assert f'image_digest="{digest}"' in client.get("/metrics").get_data(as_text=True)


def test_without_modelops_image_digest_the_digest_is_reported_empty(
    tiny_model: TinyModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not from a pinned image (make serve, the image run alone): the field is there, empty, as
    git_commit is when MODELOPS_GIT_COMMIT is unset, and the id is of that empty value."""
    monkeypatch.delenv("MODELOPS_IMAGE_DIGEST", raising=False)
    client = create_app({"MODEL_DIR": str(tiny_model.directory)}).test_client()
    response = client.post("/predict", json={"instances": [tiny_model.record()]})
    parameters = client.get(f"/v2/models/{MODEL_NAME}").get_json()["parameters"]
    assert list(parameters)[3:5] == ["git_commit", "image_digest"]
    assert parameters["image_digest"] == ""
    assert response.headers[HEADER] == provenance_id(parameters)


def _expected(tiny_model: TinyModel, rows: int) -> np.ndarray:
    result: np.ndarray = tiny_model.pipeline.predict_proba(tiny_model.x_test[:rows])
    return result


def _infer(client: Client, body: dict[str, Any], path: str = INFER) -> dict[str, Any]:
    response = client.post(path, json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers[HEADER] == client.application.server.model.provenance_id
    result: dict[str, Any] = response.get_json()
    return result


def _check_outputs(body: dict[str, Any], expected: np.ndarray, classes: list[str]) -> None:
    outputs = {o["name"]: o for o in body["outputs"]}
    proba = outputs["predict_proba"]
    assert proba["datatype"] == "FP64" and proba["shape"] == [len(expected), 2]
    np.testing.assert_allclose(np.reshape(proba["data"], proba["shape"]), expected, atol=1e-6)
    assert outputs["predict"]["datatype"] == "BYTES"
    assert outputs["predict"]["data"] == [classes[int(p[1] > p[0])] for p in expected]


@pytest.mark.parametrize("datatype", ["FP64", "FP32"])
@pytest.mark.parametrize("nested", [False, True])
def test_v2_one_tensor_batched(
    client: Client, tiny_model: TinyModel, datatype: str, nested: bool
) -> None:
    x = tiny_model.x_test[:4]
    data = x.tolist() if nested else x.ravel().tolist()
    tensor = {"name": "input-0", "shape": [4, 30], "datatype": datatype, "data": data}
    body = _infer(client, {"id": "req-7", "inputs": [tensor]})
    assert body["model_name"] == MODEL_NAME
    assert body["model_version"] == "v1.2.0"
    assert body["id"] == "req-7"
    _check_outputs(body, _expected(tiny_model, 4), ["malignant", "benign"])


def test_v2_single_row_vector_and_versioned_path(client: Client, tiny_model: TinyModel) -> None:
    tensor = {"name": "x", "shape": [30], "datatype": "FP64", "data": tiny_model.x_test[0].tolist()}
    path = f"/v2/models/{MODEL_NAME}/versions/v1.2.0/infer"
    _check_outputs(
        _infer(client, {"inputs": [tensor]}, path),
        _expected(tiny_model, 1),
        ["malignant", "benign"],
    )


@pytest.mark.parametrize("shape_of", [lambda n: [n], lambda n: [n, 1]])
def test_v2_one_tensor_per_feature(client: Client, tiny_model: TinyModel, shape_of: Any) -> None:
    x = tiny_model.x_test[:3]
    inputs = [
        {"name": name, "shape": shape_of(3), "datatype": "FP64", "data": x[:, i].tolist()}
        for i, name in reversed(list(enumerate(tiny_model.features)))
    ]
    body = _infer(client, {"inputs": inputs, "parameters": {"content_type": "pd"}})
    _check_outputs(body, _expected(tiny_model, 3), ["malignant", "benign"])


def test_v2_requested_outputs_only(client: Client, tiny_model: TinyModel) -> None:
    tensor = {
        "name": "in",
        "shape": [1, 30],
        "datatype": "FP64",
        "data": tiny_model.x_test[0].tolist(),
    }
    body = _infer(client, {"inputs": [tensor], "outputs": [{"name": "predict_proba"}]})
    assert [o["name"] for o in body["outputs"]] == ["predict_proba"]


def test_v2_binary_tensor_extension(client: Client, tiny_model: TinyModel) -> None:
    x = tiny_model.x_test[:2].astype("<f4")
    raw = x.tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": [2, 30],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "outputs": [{"name": "predict_proba", "parameters": {"binary_data": False}}],
        }
    ).encode()
    response = client.post(
        INFER,
        data=header + raw,
        headers={"Inference-Header-Content-Length": str(len(header))},
        content_type="application/octet-stream",
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    proba = response.get_json()["outputs"][0]
    np.testing.assert_allclose(
        np.reshape(proba["data"], [2, 2]), _expected(tiny_model, 2), atol=1e-5
    )
    assert struct.calcsize("<f") * 60 == len(raw)


@pytest.mark.parametrize(
    ("tensor", "field"),
    [
        (
            {"name": "i", "shape": [1, 29], "datatype": "FP64", "data": [0.0] * 29},
            "inputs[0].shape",
        ),
        ({"name": "i", "shape": [1, 30], "datatype": "FP64", "data": [0.0] * 29}, "inputs[0].data"),
        (
            {"name": "i", "shape": [1, 30], "datatype": "BYTES", "data": ["a"] * 30},
            "inputs[0].datatype",
        ),
        (
            {"name": "i", "shape": [1, 30], "datatype": "FP64", "data": [0.0] * 29 + ["x"]},
            "inputs[0].data[29]",
        ),
        (
            {"name": "i", "shape": [1, 30], "datatype": "INT64", "data": [0] * 29 + [0.5]},
            "inputs[0].data[29]",
        ),
        *(
            ({"name": "i", "shape": [1, 30], "datatype": dtype, "data": [fill] * 29 + [bad]}, f)
            for dtype, fill in (("FP64", 0.0), ("FP64", 1.0), ("INT64", 0), ("INT64", 1))
            for bad, f in ((True, "inputs[0].data[29]"), (False, "inputs[0].data[29]"))
        ),
        (
            {"name": "i", "shape": [1, 30], "datatype": "FP64", "data": [[1.0] * 29 + [True]]},
            "inputs[0].data[29]",
        ),
        (
            {"name": "i", "shape": [1, 30], "datatype": "FP64", "data": [None] * 30},
            "inputs[0].data[0]",
        ),
        ({"name": "i", "shape": "1,30", "datatype": "FP64", "data": [0.0] * 30}, "inputs[0].shape"),
        ({"name": "i", "shape": [0, 30], "datatype": "FP64", "data": []}, "instances"),
        ({"shape": [1, 30], "datatype": "FP64", "data": [0.0] * 30}, "inputs[0].name"),
        ({"name": "i", "shape": [1, 30], "datatype": "FP64"}, "inputs[0].data"),
    ],
)
def test_v2_bad_tensors_are_422(client: Client, tensor: dict[str, Any], field: str) -> None:
    body = assert_error(client.post(INFER, json={"inputs": [tensor]}), 422, field)
    if any(type(v) is bool for v in np.ravel(np.array(tensor.get("data", []), dtype=object))):
        assert "must be a number, got bool" in body["error"]


@pytest.mark.parametrize(
    ("datatype", "bad", "edge"),
    [("INT8", 1000, 127), ("UINT8", -1, 0), ("UINT16", 70000, 65535), ("FP16", 1e308, 65504.0)],
)
def test_v2_json_values_outside_their_datatype_are_422_and_its_edges_are_answered(
    client: Client, datatype: str, bad: float, edge: float
) -> None:
    """JSON data is not cast: a value the declared datatype cannot hold is refused, naming it,
    where a cast would have wrapped it (INT8 1000 -> -24) or made it infinite (FP16)."""
    tensor = {"name": "i", "shape": [1, 30], "datatype": datatype, "data": [0] * 29 + [bad]}
    body = assert_error(client.post(INFER, json={"inputs": [tensor]}), 422, "inputs[0].data[29]")
    assert f"outside the range of {datatype}" in body["error"]
    nested = {**tensor, "data": [[0] * 29 + [bad]]}  # the fast path's other branch
    assert_error(client.post(INFER, json={"inputs": [nested]}), 422, "inputs[0].data[29]")
    tensor["data"] = [0] * 29 + [edge]
    assert client.post(INFER, json={"inputs": [tensor]}).status_code == 200


def test_v2_bad_requests(client: Client, tiny_model: TinyModel) -> None:
    good = {
        "name": "i",
        "shape": [1, 30],
        "datatype": "FP64",
        "data": tiny_model.x_test[0].tolist(),
    }
    assert_error(client.post(INFER, data=b"{nope"), 400)
    assert_error(client.post(INFER, json={"inputs": []}), 422, "inputs")
    assert_error(client.post(INFER, json={"instances": []}), 422, "inputs")
    assert_error(
        client.post(INFER, json={"inputs": [good], "outputs": [{"name": "x"}]}),
        422,
        "outputs[0].name",
    )
    assert_error(client.post(INFER, json={"inputs": [good], "id": 5}), 422, "id")
    nan = json.dumps({"inputs": [dict(good, data=[0.0] * 29 + [0.0])]}).replace("0.0]", "NaN]")
    assert_error(client.post(INFER, data=nan), 422, "inputs[0].data[29]")
    per_feature = [
        {"name": name, "shape": [1], "datatype": "FP64", "data": [1.0]}
        for name in tiny_model.features[:-1]
    ]
    assert_error(client.post(INFER, json={"inputs": per_feature}), 422, "inputs")
    unknown = [*per_feature, {"name": "colour", "shape": [1], "datatype": "FP64", "data": [1.0]}]
    assert_error(client.post(INFER, json={"inputs": unknown}), 422, "inputs[29].name")


def test_metrics_count_requests_and_predictions(client: Client, tiny_model: TinyModel) -> None:
    def sample(text: str, prefix: str) -> float:
        return sum(
            float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)
        )

    before = client.get("/metrics").get_data(as_text=True)
    client.post("/predict", json={"instances": [tiny_model.record(i) for i in range(4)]})
    client.post("/predict", data=b"{")
    after = client.get("/metrics").get_data(as_text=True)
    ok = 'modelops_requests_total{endpoint="/predict",status="200"}'
    bad = 'modelops_requests_total{endpoint="/predict",status="400"}'
    assert sample(after, ok) == sample(before, ok) + 1
    assert sample(after, bad) == sample(before, bad) + 1
    assert (
        sample(after, "modelops_predictions_total{")
        == sample(before, "modelops_predictions_total{") + 4
    )
    assert 'modelops_request_duration_seconds_bucket{endpoint="/predict"' in after
    served = client.application.server.model
    assert "modelops_model_info{" in after
    assert f'inference_path="{served.inference_path}"' in after and served.inference_path


def test_openapi_document_is_served_and_documents_every_route_of_the_table(
    client: Client,
) -> None:
    served = client.get("/openapi.json")
    kept = json.loads((Path(__file__).parents[2] / "serving" / "openapi.json").read_text())
    assert served.get_json() == kept
    table = {
        (rule.replace("<", "{").replace(">", "}"), route.method.lower())
        for route in ROUTES
        for rule in route.rules
    }
    documented = {
        (path, method)
        for path, item in kept["paths"].items()
        for method in item
        if method in {"get", "post", "put", "delete", "patch", "head", "options"}
    }
    assert table == documented


def test_a_chunked_body_is_read_and_answered_alike(client: Client) -> None:
    """No Content-Length (a chunked upload): the body is read to its end, within the limit."""
    response = client.post(
        "/predict",
        data=b"{}",
        environ_overrides={"CONTENT_LENGTH": "", "wsgi.input_terminated": True},
    )
    assert_error(response, 422, "instances")


def test_a_chunked_body_past_the_limit_is_a_413(tiny_model: TinyModel) -> None:
    client = create_app(
        {"MODEL_DIR": str(tiny_model.directory), "MAX_CONTENT_LENGTH": 100}
    ).test_client()
    response = client.post(
        "/predict",
        data=b'{"instances": [' + b" " * 500 + b"]}",
        environ_overrides={"CONTENT_LENGTH": "", "wsgi.input_terminated": True},
    )
    assert assert_error(response, 413)["code"] == "payload_too_large"


def test_paths_near_the_table_are_404_and_head_is_answered_like_get(
    client: Client,
) -> None:
    for path in (
        f"/v2/models/{MODEL_NAME}/a/b/infer",
        f"/v2/models/{MODEL_NAME}/",
        "/v2/models//ready",
        "/predict/",
        "/v2/health",
    ):
        assert_error(client.get(path), 404)
    assert_error(client.post(f"/v2/models/{MODEL_NAME}/a/b/infer", json={}), 404)
    head = client.head("/v2/health/live")
    get = client.get("/v2/health/live")
    assert head.status_code == 200 and head.data == b""
    assert head.headers["Content-Length"] == get.headers["Content-Length"]
    assert head.headers["X-Request-ID"]
    response = client.post("/v2/health/live")
    assert_error(response, 405)
    assert response.headers["Allow"] == "GET, HEAD"


def _log_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def _assert_json_500(
    response: TestResponse, request_id: str, path: str, log_text: str, error_words: str
) -> None:
    """The app's JSON 500: the one error shape, the request id in header, body and both log
    lines, the exception named in the log only."""
    body = assert_error(response, 500)
    assert body["code"] == "internal_error" and body["field"] is None
    assert body["request_id"] == request_id == response.headers["X-Request-ID"]
    assert error_words not in response.get_data(as_text=True)
    assert "Traceback" not in log_text
    lines = [line for line in _log_lines(log_text) if line.get("request_id") == request_id]
    assert [line["event"] for line in lines] == ["unhandled_error", "request"]
    unhandled, request = lines
    assert unhandled["level"] == "error" and error_words in unhandled["error"]
    assert request["status"] == 500 and request["path"] == path


def test_a_handler_that_raises_is_a_json_500_with_the_request_id_and_one_log_line(
    tiny_model: TinyModel, capfd: pytest.CaptureFixture[str]
) -> None:
    model = Model(tiny_model.directory)
    model.load()

    def broken(x: np.ndarray) -> np.ndarray:
        raise RuntimeError("the model fell over")

    model.predict_proba = broken  # type: ignore[method-assign]
    client = create_app(model=model).test_client()
    rows = {"instances": [tiny_model.record(0), tiny_model.record(1)]}
    # two rows each: one row would take the one-row path (Model.predict_one), not predict_proba
    tensor = {"name": "i", "shape": [2, 30], "datatype": "FP64", "data": [0.5] * 60}
    for path, body in (("/predict", rows), (INFER, {"inputs": [tensor]})):
        capfd.readouterr()
        response = client.post(path, json=body, headers={"X-Request-ID": f"boom-{path}"})
        _assert_json_500(
            response, f"boom-{path}", path, capfd.readouterr().err, "the model fell over"
        )
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'modelops_requests_total{endpoint="/predict",status="500"} 1.0' in metrics


def test_the_pipeline_answers_404_and_405_itself_with_the_error_shape_metrics_and_log_line(
    client: Client, capfd: pytest.CaptureFixture[str]
) -> None:
    """A path no rule has, and a rule's path with another method: the pipeline's own JSON
    errors, with the request id, counted under ``unmatched`` and logged like any request."""
    before = client.get("/metrics").get_data(as_text=True)
    capfd.readouterr()
    missing = client.get("/nowhere/at/all", headers={"X-Request-ID": "lost-1"})
    assert assert_error(missing, 404)["request_id"] == "lost-1"
    assert missing.get_json()["error"] == "no such endpoint; see /openapi.json"
    wrong = client.delete(f"/v2/models/{MODEL_NAME}/infer", headers={"X-Request-ID": "wrong-1"})
    assert assert_error(wrong, 405)["code"] == "method_not_allowed"
    assert wrong.headers["Allow"] == "POST"
    lines = [line for line in _log_lines(capfd.readouterr().err) if line["event"] == "request"]
    assert [(line["request_id"], line["path"], line["status"]) for line in lines] == [
        ("lost-1", "/nowhere/at/all", 404),
        ("wrong-1", f"/v2/models/{MODEL_NAME}/infer", 405),
    ]
    after = client.get("/metrics").get_data(as_text=True)
    for status in (404, 405):
        sample = f'modelops_requests_total{{endpoint="unmatched",status="{status}"}}'
        count = {
            line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in before.splitlines()
            if line.startswith(sample)
        }
        assert f"{sample} {count.get(sample, 0.0) + 1}" in after


ANSWER_EVERY_KIND_OF_PATH = """
import json, sys
from {module} import {name} as app
from werkzeug.test import Client
client = Client(app)
row = json.loads(sys.argv[1])
for method, path, body in (
    ("POST", "/predict", {{"instances": [row]}}),
    ("GET", "/nowhere", None),
    ("DELETE", "/predict", None),
    ("POST", "/bench/flask-constant", {{}}),
):
    client.open(path, method=method, json=body)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {{"flask", "fastapi"}})))
"""


def frameworks_on_the_request_path(entry: str, tiny_model: TinyModel, tmp_path: Path) -> list[str]:
    """The web frameworks loaded once ENTRY (``module:name``, a WSGI app as uWSGI loads it)
    has answered a prediction, an unknown path, a wrong method and the floor's Flask path."""
    module, name = entry.split(":")
    env = {
        **os.environ,
        "MODELOPS_MODEL_DIR": str(tiny_model.directory),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        "PYTHONPATH": str(Path(__file__).parents[2]),
    }
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            ANSWER_EVERY_KIND_OF_PATH.format(module=module, name=name),
            json.dumps(tiny_model.record()),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[2],
    )
    found: list[str] = json.loads(done.stdout.splitlines()[-1])
    return found


def test_no_web_framework_dispatches_a_request_of_the_app(
    tiny_model: TinyModel, tmp_path: Path
) -> None:
    """uWSGI's entry answers every path without loading Flask (or any framework): there is one
    dispatcher, the pipeline's router. The benchmark's floor, which puts a Flask app in front
    for one cell, is seen loading it: the check sees a second dispatcher where there is one."""
    assert frameworks_on_the_request_path("serving.wsgi:application", tiny_model, tmp_path) == []
    floor = frameworks_on_the_request_path("bench.floor:application", tiny_model, tmp_path / "f")
    assert "flask" in floor
