"""A tiny model directory per docs/contracts.md, written by training's own export."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from training.export import write_artifact
from training.params import load_artifact

MODEL_NAME = load_artifact().name  # training/params.yaml: the name the chart serves
# scikit-learn's target: 0 = malignant, 1 = benign; predict_proba columns follow classes_.
CLASS_NAMES = ["malignant", "benign"]


def snake(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


@dataclass
class TinyModel:
    directory: Path
    features: list[str]
    pipeline: Any
    x_test: np.ndarray
    metadata: dict[str, Any]
    x_train: np.ndarray  # the rows profile.json describes

    def record(self, row: int = 0) -> dict[str, float]:
        return dict(zip(self.features, self.x_test[row].tolist(), strict=True))


def build_model(directory: Path, estimator: Any = None) -> TinyModel:
    data = load_breast_cancer()
    features = [snake(name) for name in data.feature_names]
    x_train, x_test, y_train, _ = train_test_split(
        data.data, data.target, test_size=0.2, random_state=42, stratify=data.target
    )
    pipeline = (
        estimator
        if estimator is not None
        else Pipeline(
            [("scaler", StandardScaler()), ("classifier", LogisticRegression(max_iter=1000))]
        )
    )
    pipeline.fit(x_train, y_train)
    # The served files come from training's own export (ONNX, proven against the pipeline); a
    # test double it cannot convert (SlowModel) is served as the pickle, as params can allow.
    metadata = write_artifact(
        pipeline,
        CLASS_NAMES,
        x_train,
        x_test,
        directory,
        name=MODEL_NAME,
        features=features,
        allow_scikit_learn=True,
        positive_class="malignant",
        card={
            "target": "diagnosis",
            "metrics": {
                "accuracy": 0.97,
                "precision": 0.97,
                "recall": 0.97,
                "f1": 0.97,
                "roc_auc": 0.99,
            },
            "params": {"C": 1.0},
            "data": {"sha256": "d" * 64, "train_rows": len(x_train), "test_rows": len(x_test)},
            "libraries": {"python": "3.11", "scikit-learn": "1.9.1", "numpy": "2.4.6"},
        },
    )
    return TinyModel(directory, features, pipeline, x_test, metadata, x_train)


# A model whose prediction is slow on demand: a request whose first feature is SLOW_SENTINEL stays
# in flight for SLOW_SECONDS (uWSGI unpickles it, so this module must be on its PYTHONPATH).
SLOW_SENTINEL = 12345.0
SLOW_SECONDS = 2.0


class SlowModel:
    def __init__(self) -> None:
        self.pipeline = Pipeline(
            [("scaler", StandardScaler()), ("classifier", LogisticRegression(max_iter=1000))]
        )

    def fit(self, x: np.ndarray, y: np.ndarray) -> SlowModel:
        self.pipeline.fit(x, y)
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        if x[0, 0] == SLOW_SENTINEL:
            import time

            time.sleep(SLOW_SECONDS)
        result: np.ndarray = self.pipeline.predict_proba(x)
        return result


LOADING_MARKER = "slow-loading model: unpickling"
LOAD_SECONDS = 60.0
# Another load time for one server: its environment (the uWSGI master unpickles the model).
LOAD_SECONDS_ENV = "MODELOPS_TEST_LOAD_SECONDS"


class SlowLoadingModel(SlowModel):
    """Takes a minute (or $MODELOPS_TEST_LOAD_SECONDS) to unpickle: a window in which to signal
    or probe a server that is starting."""

    def __setstate__(self, state: dict[str, Any]) -> None:
        import os
        import sys
        import time

        print(LOADING_MARKER, file=sys.stderr, flush=True)
        time.sleep(float(os.environ.get(LOAD_SECONDS_ENV, LOAD_SECONDS)))
        self.__dict__.update(state)


# A model that hangs on demand: a request whose first feature is HANG_SENTINEL never ends on its
# own (an hour); uWSGI's harakiri, or a test stopping the stack, ends it.
HANG_SENTINEL = 54321.0
HANG_SECONDS = 3600.0


class HangingModel(SlowModel):
    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        if x[0, 0] == HANG_SENTINEL:
            import time

            time.sleep(HANG_SECONDS)
        return super().predict_proba(x)


# A model that fails on demand: a request whose first feature is RAISE_SENTINEL makes its
# predict_proba raise, inside a worker, as a bug in the model or the runtime would (the app's own
# 500, through the stack); it hangs on HANG_SENTINEL as HangingModel does.
RAISE_SENTINEL = 6789.0


class FailingModel(HangingModel):
    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        if x[0, 0] == RAISE_SENTINEL:
            raise RuntimeError("FailingModel fails on demand")
        return super().predict_proba(x)
