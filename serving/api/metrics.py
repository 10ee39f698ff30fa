"""GET /metrics in the Prometheus text format, merged across uWSGI workers."""

from __future__ import annotations

from flask import Blueprint, Response

from serving.state import state

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics() -> Response:
    exporter = state().metrics
    return Response(exporter.exposition(), mimetype=exporter.content_type)
