"""POST /predict: rows as records in, labels and class probabilities out.

``predict_payload`` is the whole endpoint; the Flask view and the WSGI fast path
(``serving.fastpath``) both call it.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request

from serving import inputs, records
from serving.compiled import Matrix
from serving.errors import invalid
from serving.model import Model
from serving.state import PROVENANCE_HEADER, ServerState, json_response, parse_json, state

bp = Blueprint("predict", __name__)


def predict_payload(server: ServerState, raw: bytes) -> tuple[dict[str, Any], dict[str, str]]:
    """The answer to one /predict body and its headers; raises ``ApiError``.

    A well-formed body is decoded in one pass (``serving.records``); anything that pass refuses
    goes the careful way, which accepts the same bodies and names what is wrong with the others.
    """
    model = server.require_model(server.model.name)
    decoder = records.decoder_for(model.feature_names)
    rows = None if decoder is None else decoder.rows(raw)
    if decoder is None or rows is None:
        x = careful_matrix(raw, model.feature_names, server.max_rows)
    else:
        inputs.check_rows(len(rows), server.max_rows)
        if len(rows) == 1:
            answer = _one_row(model, server, decoder.values(rows[0]))
            if answer is not None:
                return answer
        x = inputs.finite_records(decoder.matrix(rows), model.feature_names)
    proba = model.predict_proba(x)
    server.metrics.count_predictions(proba)
    payload = {
        "model": model.provenance_dict,
        "classes": model.classes,
        "labels": model.labels(proba),
        "probabilities": proba,
    }
    return payload, {PROVENANCE_HEADER: model.provenance_header}


def careful_matrix(raw: bytes, features: tuple[str, ...], max_rows: int) -> Matrix:
    """The body parsed as any JSON, then checked piece by piece; raises the first problem."""
    body = parse_json(raw)
    if type(body) is not dict or "instances" not in body:
        raise invalid(
            'the body must be an object {"instances": [{feature: number, ...}]}', "instances"
        )
    if len(body) != 1:
        extra = sorted(k for k in body if k != "instances")[0]
        raise invalid(f"unknown key {extra!r}; the body has only 'instances'", extra)
    return inputs.records(body["instances"], features, max_rows)


def _one_row(
    model: Model, server: ServerState, values: tuple[float, ...]
) -> tuple[dict[str, Any], dict[str, str]] | None:
    """The common single-row request in plain Python (no numpy call), or None to go the general
    way (the model has no plain-Python path, or a value is not finite)."""
    proba = model.predict_one(values)
    if proba is None:
        return None
    best = max(range(len(proba)), key=proba.__getitem__)
    server.metrics.count_class(best)
    payload = {
        "model": model.provenance_dict,
        "classes": model.classes,
        "labels": [model.classes[best]],
        "probabilities": [proba],
    }
    return payload, {PROVENANCE_HEADER: model.provenance_header}


@bp.post("/predict")
def predict() -> Response:
    payload, headers = predict_payload(state(), request.get_data(cache=False))
    return json_response(payload, headers=headers)
