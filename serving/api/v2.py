"""The Open Inference Protocol ("v2": KServe, Triton, MLServer) REST endpoints.

``infer_payload`` is the whole inference endpoint; the Flask view and the WSGI fast path
(``serving.fastpath``) both call it.

Server metadata, model metadata and readiness, and inference. Inputs: one ``[N, F]`` tensor with
the features in model order, or one ``[N]`` tensor per feature named after it; any numeric
datatype; data flat (row-major) or nested; the binary tensor data extension for inputs. Outputs:
``predict`` (BYTES, the labels) and ``predict_proba`` (FP64, ``[N, classes]``), always as JSON.
"""

from __future__ import annotations

import functools
from typing import Any

from flask import Blueprint, Response, request

from serving import inputs
from serving.errors import ApiError, invalid
from serving.model import Model
from serving.state import PROVENANCE_HEADER, ServerState, json_response, parse_json, state

bp = Blueprint("v2", __name__, url_prefix="/v2")

SERVER_NAME = "modelops"
SERVER_VERSION = "0.1.0"
OUTPUTS = ("predict", "predict_proba")
BINARY_HEADER = "Inference-Header-Content-Length"


@bp.get("")
def server_metadata() -> Response:
    return json_response({"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": []})


def _metadata(model: Model) -> dict[str, Any]:
    width = len(model.features)
    metadata: dict[str, Any] = {"name": model.name}
    if model.provenance.version:
        metadata["versions"] = [model.provenance.version]
    metadata.update(
        {
            "platform": "scikit-learn",
            "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [-1, width]}],
            "outputs": [
                {"name": "predict", "datatype": "BYTES", "shape": [-1]},
                {"name": "predict_proba", "datatype": "FP64", "shape": [-1, len(model.classes)]},
            ],
            "parameters": {
                **model.provenance_dict,
                "features": list(model.feature_names),
                "classes": list(model.classes),
                "inference_path": model.inference_path,
            },
        }
    )
    return metadata


@bp.get("/models/<name>")
@bp.get("/models/<name>/versions/<version>")
def model_metadata(name: str, version: str | None = None) -> Response:
    model = state().require_model(name, version)
    return json_response(_metadata(model))


@bp.get("/models/<name>/ready")
@bp.get("/models/<name>/versions/<version>/ready")
def model_ready(name: str, version: str | None = None) -> Response:
    model = state().require_model(name, version)
    return json_response({"name": model.name, "ready": model.ready})


def _split_binary(raw: bytes, length_text: str | None) -> tuple[bytes, dict[int, bytes], Any]:
    """Separate the JSON header from binary tensor data (the protocol's binary extension)."""
    if length_text is None:
        return raw, {}, None
    try:
        length = int(length_text)
    except ValueError:
        raise ApiError(400, f"{BINARY_HEADER} must be an integer") from None
    if not 0 < length <= len(raw):
        raise ApiError(400, f"{BINARY_HEADER} {length} does not fit the {len(raw)}-byte body")
    body = parse_json(raw[:length])
    binary: dict[int, bytes] = {}
    offset = length
    tensors = body.get("inputs") if isinstance(body, dict) else None
    for index, tensor in enumerate(tensors if isinstance(tensors, list) else []):
        params = tensor.get("parameters") if isinstance(tensor, dict) else None
        size = params.get("binary_data_size") if isinstance(params, dict) else None
        if size is None:
            continue
        if type(size) is not int or size < 0 or offset + size > len(raw):
            raise invalid(
                f"inputs[{index}].parameters.binary_data_size {size!r} overruns the body",
                f"inputs[{index}].parameters.binary_data_size",
            )
        binary[index] = raw[offset : offset + size]
        offset += size
    if offset != len(raw):
        raise invalid(f"{len(raw) - offset} bytes of binary data belong to no input", "inputs")
    return raw[:length], binary, body


def _requested_outputs(body: dict[str, Any]) -> tuple[str, ...]:
    requested = body.get("outputs")
    if requested is None:
        return OUTPUTS
    if not isinstance(requested, list):
        raise invalid("'outputs' must be a list of {\"name\": ...}", "outputs")
    names = []
    for index, item in enumerate(requested):
        name = item.get("name") if isinstance(item, dict) else None
        if name not in OUTPUTS:
            raise invalid(
                f"outputs[{index}].name {name!r} is not an output; allowed: {', '.join(OUTPUTS)}",
                f"outputs[{index}].name",
            )
        names.append(name)
    return tuple(names)


def infer_payload(
    server: ServerState, name: str, version: str | None, raw: bytes, binary_header: str | None
) -> tuple[dict[str, Any], dict[str, str]]:
    """The answer to one infer body and its headers; raises ``ApiError``.

    ``binary_header``: the Inference-Header-Content-Length header, if sent.
    """
    model = server.require_model(name, version)
    raw, binary, body = _split_binary(raw, binary_header)
    if body is None:
        body = parse_json(raw)
    if type(body) is not dict or "inputs" not in body:
        raise invalid(
            'the body must be an object {"inputs": [{"name", "shape", "datatype", "data"}]}',
            "inputs",
        )
    if "id" in body and not isinstance(body["id"], str):
        raise invalid("'id' must be a string", "id")
    outputs = _requested_outputs(body)
    literal_free = functools.cache(lambda: inputs.literal_free(raw))
    x = inputs.v2_tensors(
        body["inputs"], model.feature_names, server.max_rows, binary, literal_free=literal_free
    )
    proba = model.predict_proba(x)
    server.metrics.count_predictions(proba)
    rows = proba.shape[0]
    tensors: list[dict[str, Any]] = []
    for output in outputs:
        if output == "predict":
            tensors.append(
                {"name": output, "shape": [rows], "datatype": "BYTES", "data": model.labels(proba)}
            )
        else:
            tensors.append(
                {
                    "name": output,
                    "shape": [rows, proba.shape[1]],
                    "datatype": "FP64",
                    "data": proba.ravel(),
                }
            )
    payload: dict[str, Any] = {"model_name": model.name}
    if model.provenance.version:
        payload["model_version"] = model.provenance.version
    if "id" in body:
        payload["id"] = body["id"]
    payload["outputs"] = tensors
    return payload, {PROVENANCE_HEADER: model.provenance_header}


@bp.post("/models/<name>/infer")
@bp.post("/models/<name>/versions/<version>/infer")
def infer(name: str, version: str | None = None) -> Response:
    raw = request.get_data(cache=False)
    payload, headers = infer_payload(
        state(), name, version, raw, request.headers.get(BINARY_HEADER)
    )
    return json_response(payload, headers=headers)
