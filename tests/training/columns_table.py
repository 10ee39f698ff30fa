"""A small churn-like table with categorical columns and missing values, trained by the real
stages: the data of tests/training/test_training_columns.py (training) and
test_training_columns_served.py (the same model served through Nginx).

The table is generated here, deterministically (seeded): ``colour`` (categories listed, unseen
ones refused, missing ones imputed with the most frequent), ``city`` (categories learned from the
train split, unseen ones ignored, missing ones imputed with the constant ``unknown``), ``age``
(int64, median), ``income`` (float64, no value may be missing) and ``score`` (float64, mean).
:func:`train_table` runs prepare, train, evaluate and export on it (each stage's own ``main``
through the stage runner's error handling, in this process: no interpreter start per stage).
"""

from __future__ import annotations

import csv
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib  # type: ignore[import-untyped]
import numpy as np
import pandas as pd
import yaml

import modelcard
from training import evaluate as evaluate_stage
from training import export as export_stage
from training import prepare as prepare_stage
from training import train as train_stage
from training.dataset import read_split
from training.errors import run_stage

ROOT = Path(__file__).resolve().parents[2]

COLOURS = ["red", "green", "blue"]
CITIES = ["kiev", "lima", "oslo", "pune"]
CLASSES = ["no", "yes"]
DATA = {
    "file": "training/data/churn.csv",
    "target": "churn",
    "classes": CLASSES,
    "positive_class": "yes",
    "features": "all",
    "exclude": ["id"],
    "feature_type": "float64",
    "types": {"age": "int64"},
    "categorical": {
        "colour": {"categories": COLOURS, "unseen": "error"},
        "city": {"categories": "learn", "unseen": "ignore"},
    },
    "missing": {
        "colour": "most_frequent",
        "city": {"constant": "unknown"},
        "age": "median",
        "score": "mean",
    },
}


def churn_rows(count: int = 600, seed: int = 7) -> list[list[str]]:
    """The table's rows as CSV cells (header first): the label follows the features with noise;
    colour misses every 11th value, city every 13th (as ``NA``), age every 7th, score every 17th."""
    rng = random.Random(seed)  # noqa: S311  (test data, not secrets)
    rows = [["id", "colour", "city", "age", "income", "score", "churn"]]
    for i in range(count):
        colour, city = COLOURS[i % 3], CITIES[rng.randrange(4)]
        age, income, score = rng.randint(18, 80), round(rng.gauss(50, 15), 3), rng.random() * 10
        z = {"red": 1.5, "green": 0.0, "blue": -0.5}[colour] + (0.8 if city == "oslo" else 0.0)
        z += (age - 50) / 15 - (income - 50) / 20 + (score - 5) / 3
        label = CLASSES[int(z + rng.gauss(0, 0.7) > 0)]
        cells = [str(i), colour, city, str(age), repr(income), repr(round(score, 4)), label]
        for column, every, offset, blank in ((1, 11, 3, ""), (2, 13, 5, "NA"), (3, 7, 2, "")):
            if i % every == offset:
                cells[column] = blank
        if i % 17 == 6:
            cells[5] = ""
        rows.append(cells)
    return rows


def write_table(root: Path, rows: list[list[str]]) -> None:
    path = root / DATA["file"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, lineterminator="\n").writerows(rows)


def write_params(root: Path, estimator: str, **data: Any) -> Path:
    """The committed params.yaml with this table's data section (and ``data`` overrides), a low
    gate and a small forest."""
    document = yaml.safe_load((ROOT / "training/params.yaml").read_text())
    document["data"] = {**DATA, **data}
    document["train"]["estimator"] = estimator
    document["train"]["random_forest"]["n_estimators"] = 20
    document["train"]["hist_gradient_boosting"]["max_iter"] = 20
    document["evaluate"]["thresholds"] = {"accuracy": 0.7, "roc_auc": 0.8}
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@dataclass
class Trained:
    root: Path
    model_dir: Path
    card: dict[str, Any]
    pipeline: Any
    test: pd.DataFrame


def train_table(root: Path, estimator: str = "logistic_regression") -> Trained:
    """The table through prepare, train, evaluate and export into ``root / "out"``."""
    write_table(root, churn_rows())
    p, out = str(write_params(root, estimator)), root / "out"
    for main, argv in (
        (prepare_stage.main, ["--out", out, "--root", root]),
        (train_stage.main, ["--data", out / "train.csv", "--model", out / "model.pkl"]),
        (evaluate_stage.main, [
            "--test", out / "test.csv", "--model", out / "model.pkl",
            "--metrics", out / "metrics.json", "--plots", out / "plots",
        ]),
        (export_stage.main, [
            "--pipeline", out / "model.pkl", "--train", out / "train.csv",
            "--test", out / "test.csv", "--metrics", out / "metrics.json", "--out", out / "model",
        ]),
    ):  # fmt: skip
        assert run_stage(main, ["--params", p, *map(str, argv)]) == 0, main.__module__
    test, _ = read_split(out / "test.csv", "churn", ["colour", "city"])
    pipeline = joblib.load(out / "model.pkl")
    return Trained(root, out / "model", modelcard.load(out / "model"), pipeline, test)


RECORD = {"colour": "red", "city": "oslo", "age": 40, "income": 52.5, "score": 3.25}


def frame_of(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Records as scikit-learn takes them (what read_split gives): NaN where a value is missing."""
    frame = pd.DataFrame(
        [{k: (math.nan if v in (None, "") else v) for k, v in r.items()} for r in records]
    )
    frame[["age", "income", "score"]] = frame[["age", "income", "score"]].astype("float64")
    return frame


def expected_proba(trained: Trained, records: list[dict[str, Any]]) -> np.ndarray:
    return np.asarray(trained.pipeline.predict_proba(frame_of(records)))
