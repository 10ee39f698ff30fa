"""The model artifact: a directory with ``model.pkl`` and its model card ``metadata.json``.

The format is the contract in docs/contracts.md; the artifact's name is ``artifact.name`` in
params.yaml (training.params.load_artifact). :func:`load_model` checks the sha256 recorded in
metadata.json before unpickling, so a file nobody verified is never executed.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import joblib  # type: ignore[import-untyped]  # no stubs; not in pyproject overrides
import numpy
import sklearn

from training.dataset import sha256_file

MODEL_FILE = "model.pkl"
METADATA_FILE = "metadata.json"
SCHEMA_VERSION = 1


class ModelIntegrityError(Exception):
    """The model directory is incomplete, or model.pkl is not the file metadata.json describes."""


def library_versions() -> dict[str, str]:
    """What the pickle needs to load. Python as major.minor (the pickle-compatibility boundary):
    a patch release must not change the card's bytes, or dvc.lock would not reproduce."""
    return {
        "python": ".".join(platform.python_version_tuple()[:2]),
        "scikit-learn": sklearn.__version__,
        "numpy": numpy.__version__,
    }


def write_metadata(model_dir: Path, card: dict[str, Any]) -> Path:
    """Write metadata.json (sorted keys, trailing newline: the same bytes for the same card)."""
    path = model_dir / METADATA_FILE
    path.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def read_metadata(model_dir: Path) -> dict[str, Any]:
    path = model_dir / METADATA_FILE
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelIntegrityError(f"no {METADATA_FILE} in {model_dir}") from None
    except json.JSONDecodeError as exc:
        raise ModelIntegrityError(f"{path}: not valid JSON ({exc.msg})") from None
    if not isinstance(card, dict) or card.get("schema_version") != SCHEMA_VERSION:
        raise ModelIntegrityError(f"{path}: schema_version must be {SCHEMA_VERSION}")
    return card


def verify(model_dir: Path) -> dict[str, Any]:
    """Return the model card once model.pkl's sha256 matches it; raise otherwise."""
    card = read_metadata(model_dir)
    model_file = card.get("model_file")
    if model_file != MODEL_FILE:
        raise ModelIntegrityError(f"model_file must be {MODEL_FILE!r}, got {model_file!r}")
    path = model_dir / MODEL_FILE
    if not path.is_file():
        raise ModelIntegrityError(f"no {MODEL_FILE} in {model_dir}")
    actual = sha256_file(path)
    if actual != card.get("model_sha256"):
        raise ModelIntegrityError(
            f"{path}: sha256 mismatch: file has {actual}, metadata.json records "
            f"{card.get('model_sha256')}"
        )
    return card


def load_model(model_dir: Path) -> tuple[Any, dict[str, Any]]:
    """The verified model and its card. Unpickles only a file whose sha256 was checked."""
    card = verify(model_dir)
    return joblib.load(model_dir / MODEL_FILE), card
