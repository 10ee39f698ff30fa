"""Liveness and readiness (Open Inference Protocol paths, used by the Kubernetes probes)."""

from __future__ import annotations

from flask import Blueprint, Response

from serving.errors import ApiError
from serving.state import json_response, state

bp = Blueprint("health", __name__)


@bp.get("/v2/health/live")
def live() -> Response:
    return json_response({"live": True})


@bp.get("/v2/health/ready")
def ready() -> Response:
    if not state().model.ready:
        raise ApiError(503, "model is not loaded yet")
    return json_response({"ready": True})
