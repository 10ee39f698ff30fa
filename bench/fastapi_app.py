"""The reference users would pick instead: the same model behind FastAPI + uvicorn.

A straightforward handler: a pydantic body, a numpy matrix in feature order, scikit-learn's own
``predict_proba``. Run by the benchmark as ``uvicorn bench.fastapi_app:app --workers 2``.

Given its best shot: scikit-learn's per-call warning about numpy input to a DataFrame-fitted model
is silenced (printing it costs more than predicting), and TCP_NODELAY is set on accepted
connections. uvicorn's multi-worker mode hands asyncio listening sockets whose ``proto`` is 0, so
asyncio skips TCP_NODELAY and Nagle's algorithm holds each response ~40 ms for the client's delayed
ACK (without this: 47 ms per sequential request with --workers 2, 1.8 ms with --workers 1).
"""

from __future__ import annotations

import asyncio.base_events
import json
import os
import socket
import warnings
from pathlib import Path
from typing import Any

import joblib  # type: ignore[import-untyped]
import numpy as np
from fastapi import FastAPI
from pydantic import BaseModel

warnings.filterwarnings("ignore", message="X does not have valid feature names")


def _set_nodelay(sock: socket.socket) -> None:
    if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


asyncio.base_events._set_nodelay = _set_nodelay  # type: ignore[attr-defined]

MODEL_DIR = Path(os.environ.get("MODELOPS_MODEL_DIR", "training/model"))
METADATA = json.loads((MODEL_DIR / "metadata.json").read_text())
FEATURES = [feature["name"] for feature in METADATA["features"]]
CLASSES = METADATA["classes"]
MODEL = joblib.load(MODEL_DIR / METADATA["model_file"])

app = FastAPI()


class PredictRequest(BaseModel):
    instances: list[dict[str, float]]


@app.post("/predict")
def predict(body: PredictRequest) -> dict[str, Any]:
    x = np.array([[row[name] for name in FEATURES] for row in body.instances], dtype=np.float64)
    proba = MODEL.predict_proba(x)
    return {
        "classes": CLASSES,
        "labels": [CLASSES[i] for i in proba.argmax(axis=1)],
        "probabilities": proba.tolist(),
    }
