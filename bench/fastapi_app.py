"""The reference users would pick instead: the same model behind FastAPI + uvicorn, scikit-learn.

Run by the benchmark (``bench.run``) as ``uvicorn bench.fastapi_app:app --workers 2``, with
``MODELOPS_BENCH_CARD`` naming the served artifact's ``metadata.json`` (the feature order and
the classes) and ``MODELOPS_BENCH_PICKLE`` the fitted scikit-learn pipeline (``bench.models``).
``POST /predict`` takes the stack's records body, ``{"instances": [{feature: number}, ...]}``,
and answers ``{"classes", "labels", "probabilities"}``; ``GET /healthz`` answers once the model
is loaded.

Given its best shot, the way a careful FastAPI user would write it:

- an ``async`` handler on the raw body (``await request.body()``): no pydantic model, no
  validation layer, no thread-pool hop (a sync handler runs in a thread for every request);
- orjson both ways: ``orjson.loads`` of the body and a ``Response`` of ``orjson.dumps`` bytes
  (numpy serialised natively), not FastAPI's ``jsonable_encoder`` + ``json.dumps``;
- a float64 numpy matrix in feature order, straight into scikit-learn's ``predict_proba``;
- scikit-learn's input validation reduced as its documentation suggests for latency
  (``assume_finite``), and its native thread pools held to one thread per worker (the
  benchmark sets ``OMP_NUM_THREADS=1``): two workers on two cores, each one thread, like the
  stack's uWSGI workers and their one-thread ONNX Runtime sessions; more threads only fight over
  the same cores (a histogram gradient boosting model predicts one row in 1.5 ms on one thread
  and 10-20 ms with OpenMP's two on a busy two-core host);
- TCP_NODELAY on accepted connections. uvicorn's multi-worker mode hands asyncio listening
  sockets whose ``proto`` is 0, so asyncio skips TCP_NODELAY and Nagle's algorithm holds each
  response ~40 ms for the client's delayed ACK (47 ms per sequential request with --workers 2,
  1.8 ms with --workers 1).

It checks nothing the stack checks (types, missing or extra features, sizes): a malformed body
is a 500 here, and a reference with the stack's checks would only be slower.
"""

from __future__ import annotations

import asyncio.base_events
import json
import os
import socket
from pathlib import Path

import joblib  # type: ignore[import-untyped]
import numpy as np
import orjson
import sklearn
from fastapi import FastAPI, Request, Response


def _set_nodelay(sock: socket.socket) -> None:
    if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


asyncio.base_events._set_nodelay = _set_nodelay  # type: ignore[attr-defined]
sklearn.set_config(assume_finite=True)

CARD = json.loads(Path(os.environ["MODELOPS_BENCH_CARD"]).read_text(encoding="utf-8"))
FEATURES = tuple(feature["name"] for feature in CARD["features"])
CLASSES = tuple(CARD["classes"])
MODEL = joblib.load(os.environ["MODELOPS_BENCH_PICKLE"])
JSON = "application/json"

app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


@app.post("/predict")
async def predict(request: Request) -> Response:
    rows = orjson.loads(await request.body())["instances"]
    x = np.array([[row[name] for name in FEATURES] for row in rows], dtype=np.float64)
    proba = MODEL.predict_proba(x)
    body = {
        "classes": CLASSES,
        "labels": [CLASSES[i] for i in proba.argmax(axis=1).tolist()],
        "probabilities": proba,
    }
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), media_type=JSON)


@app.get("/healthz")
async def healthz() -> Response:
    return Response(b'{"status":"ok"}', media_type=JSON)
