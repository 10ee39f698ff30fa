"""The model card training writes: what the artifact's metadata.json says beyond its files.

The rules of the artifact (keys, formats, file names, hashes) are modelcard's, one module for
training, the server and the image (docs/contracts.md). This module fills in what training knows:
the estimator and its params, the data, the features with their types, the classes, the metrics
and the libraries. Caller: the export stage (training/export.py), which adds the served files'
keys and writes the card through :func:`modelcard.write_card`.
"""

from __future__ import annotations

import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import modelcard
from training import columns, numerics
from training.dataset import read_split, sha256_file
from training.errors import StageError
from training.params import ArtifactParams, DataParams, TrainParams


def library_versions() -> dict[str, str]:
    """What trained, exported and proved the model. Python as major.minor (the pickle
    compatibility boundary): a patch release must not change the card's bytes, or dvc.lock would
    not reproduce."""
    versions = {"python": ".".join(platform.python_version_tuple()[:2])}
    for package in ("scikit-learn", "numpy", "onnx", "onnxruntime"):
        versions[package] = metadata.version(package)
    return versions


def model_card(
    model: Any,
    train_csv: Path,
    test_rows: int,
    metrics: dict[str, float],
    data: DataParams,
    train: TrainParams,
    artifact: ArtifactParams,
    metric_average: str | None,
) -> dict[str, Any]:
    """The card's training keys (schema :data:`modelcard.SCHEMA_VERSION`); the caller adds the
    served files' keys (training.export.served_files)."""
    features, _ = read_split(train_csv, data.target, data.categorical)
    if list(model.feature_names_in_) != list(features.columns):
        raise StageError("the model's features differ from the train split's columns")
    # a regression's card says so; a classification's has no task key (its bytes stay as they
    # were: modelcard reads a card without one as a classification)
    task = {"task": data.task} if data.regression else {}
    return {
        **task,
        "schema_version": modelcard.SCHEMA_VERSION,
        "name": artifact.name,
        "estimator": train.estimator,
        "features": columns.card_features(
            model,
            [str(c) for c in features.columns],
            {str(c): data.type_of(str(c)) for c in features.columns},
        ),
        "target": data.target,
        "classes": [str(c) for c in getattr(model, "classes_", ())],
        "positive_class": data.positive_class,
        "metric_average": metric_average,
        "metrics": metrics,
        "params": train.as_dict(),
        "data": {
            "file": data.file,
            "sha256": sha256_file(train_csv),
            "train_rows": len(features),
            "test_rows": test_rows,
        },
        "libraries": library_versions(),
        "numerics": numerics.describe(),
    }
