"""The bundled dataset: scikit-learn's breast-cancer data with snake_case columns.

569 rows, 30 numeric features (``mean_radius`` ... ``worst_fractal_dimension``) and the target
column ``diagnosis`` with the labels ``benign`` and ``malignant``. Loading it needs no network.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.datasets import load_breast_cancer

TARGET = "diagnosis"
POSITIVE_CLASS = "malignant"


def snake_case(name: str) -> str:
    """``'worst concave points'`` -> ``'worst_concave_points'``."""
    return re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_")


def load_frame() -> pd.DataFrame:
    """The whole dataset as one frame: the features in their original order, then the target."""
    bunch: Any = load_breast_cancer(as_frame=True)
    frame: pd.DataFrame = bunch.frame.copy()
    labels = dict(enumerate(bunch.target_names))  # 0 -> malignant, 1 -> benign
    frame = frame.rename(columns={c: snake_case(str(c)) for c in bunch.feature_names})
    frame[TARGET] = frame.pop("target").map(labels).astype(str)
    return frame


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Write a split so that reading it back gives the same values (and the same bytes each run)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, lineterminator="\n")


def read_split(path: Path) -> tuple[pd.DataFrame, pd.Series]:
    """Features and target of a split written by prepare."""
    frame = pd.read_csv(path)
    if TARGET not in frame.columns:
        raise ValueError(f"{path}: no {TARGET!r} column")
    target = frame.pop(TARGET).astype(str)
    return frame.astype("float64"), target


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
