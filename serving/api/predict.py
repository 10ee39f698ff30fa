"""POST /predict: rows as records in, labels and class probabilities out."""

from __future__ import annotations

from flask import Blueprint, Response, request

from serving import inputs
from serving.errors import invalid
from serving.state import PROVENANCE_HEADER, json_response, parse_json, state

bp = Blueprint("predict", __name__)


@bp.post("/predict")
def predict() -> Response:
    server = state()
    model = server.require_model(server.model.name)
    body = parse_json(request.get_data(cache=False))
    if type(body) is not dict or "instances" not in body:
        raise invalid(
            'the body must be an object {"instances": [{feature: number, ...}]}', "instances"
        )
    if len(body) != 1:
        extra = sorted(k for k in body if k != "instances")[0]
        raise invalid(f"unknown key {extra!r}; the body has only 'instances'", extra)
    x = inputs.records(body["instances"], model.feature_names, server.max_rows)
    proba = model.predict_proba(x)
    server.metrics.count_predictions(proba)
    payload = {
        "model": model.provenance.as_dict(),
        "classes": model.classes,
        "labels": model.labels(proba),
        "probabilities": proba,
    }
    return json_response(payload, headers={PROVENANCE_HEADER: model.provenance.header()})
