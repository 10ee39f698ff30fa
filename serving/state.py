"""What the views share: the model, the metrics and the request limits, plus JSON helpers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import orjson
from flask import Response, current_app

from serving.errors import ApiError
from serving.metrics import Metrics
from serving.model import Model

JSON_MIMETYPE = "application/json"
PROVENANCE_HEADER = "X-Model-Provenance"


@dataclass
class ServerState:
    model: Model
    metrics: Metrics
    max_rows: int

    def require_model(self, name: str, version: str | None = None) -> Model:
        """The model called ``name`` (and ``version``, when given), ready to predict."""
        model = self.model
        if name != model.name:
            raise ApiError(404, f"unknown model {name!r}; this server serves {model.name!r}")
        if version is not None and version != model.provenance.version:
            raise ApiError(
                404,
                f"unknown version {version!r} of {name!r}; "
                f"served: {model.provenance.version or '(unversioned)'}",
            )
        if not model.ready:
            raise ApiError(503, "model is not loaded yet")
        return model


def state() -> ServerState:
    result: ServerState = current_app.extensions["modelops"]
    return result


def parse_json(raw: bytes) -> Any:
    """orjson first; the standard library only to read NaN/Infinity, which validation refuses."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as first:
        try:
            return json.loads(raw)
        except (ValueError, RecursionError):
            raise ApiError(400, f"malformed JSON: {first}") from None


def json_response(
    payload: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    body = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(body, status=status, mimetype=JSON_MIMETYPE, headers=headers)
