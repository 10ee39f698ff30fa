"""GET /openapi.json: the API description kept in the repository (serving/openapi.json)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from flask import Blueprint, Response

from serving.state import JSON_MIMETYPE

bp = Blueprint("openapi", __name__)


@cache
def document() -> bytes:
    return (Path(__file__).resolve().parents[1] / "openapi.json").read_bytes()


@bp.get("/openapi.json")
def openapi() -> Response:
    return Response(document(), mimetype=JSON_MIMETYPE)
