"""The benchmark's models: one per estimator family, each written twice, served and referenced.

Caller: ``bench.run`` (``make bench``) and tests/serving/test_serving_bench.py. :func:`build`
fits one family on the breast-cancer data bundled with scikit-learn (its stratified 80 % train
split, as the training pipeline splits) and writes, under ``<work>/<family>/``:

- ``served/``: the artifact the stack serves (modelcard's contract: ``metadata.json``,
  ``model.onnx``, ``verification.json``), written by training's own export
  (``training.export.served_files``), which proves the graph equal to the pipeline before it
  writes it: the benchmark measures exactly what training would ship;
- ``reference.pkl``: the same fitted scikit-learn pipeline (joblib), which the FastAPI reference
  (``bench.fastapi_app``) serves with ``predict_proba``.

The models are built here, not read from the training pipeline's output, so that the benchmark
runs every family in one run, whatever ``train.estimator`` chose, and does not depend on where
the pipeline keeps its files. The families are training's registry (training/families/, in its
order: :data:`FAMILIES`), each built by its own ``pipeline`` from its section of
training/params.yaml (``train.<family>``, whose random states are fixed): the same data and the
same models on every run, the pipelines training would fit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib  # type: ignore[import-untyped]

from training import families
from training.params import load_artifact, load_hyper

ROOT = Path(__file__).resolve().parents[1]
#: Where each family's hyper-parameters come from (its ``train.<family>`` section).
PARAMS = ROOT / "training" / "params.yaml"
MODEL_NAME = load_artifact(PARAMS).name
#: scikit-learn's target: 0 = malignant, 1 = benign; predict_proba columns follow classes_.
CLASS_NAMES = ["malignant", "benign"]
SEED = 42
SERVED_DIR = "served"
REFERENCE_FILE = "reference.pkl"
#: The families, in the order the benchmark runs them: the registry's classification families
#: (the benchmark's data is the breast-cancer classification).
FAMILIES: tuple[str, ...] = families.for_task("classification")


def pipeline(family: str) -> Any:
    """The untrained pipeline of ``family``, as training/train.py builds it from params.yaml;
    KeyError for a family not registered, ParamsError when its section is missing or invalid."""
    return families.get(family).build(load_hyper(PARAMS, family), "classification")


@dataclass(frozen=True)
class BenchModel:
    """One family's files: the served artifact directory and the reference's pickle."""

    family: str
    served: Path
    reference: Path
    features: tuple[str, ...]
    classes: tuple[str, ...]
    onnx_bytes: int


def snake(name: str) -> str:
    """A feature name as the model card lists it: ``mean radius`` → ``mean_radius``."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def dataset() -> tuple[list[str], Any, Any, Any, Any]:
    """Feature names and the train/test split (float64 matrices, integer targets)."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    data = load_breast_cancer()
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=0.2, random_state=SEED, stratify=data.target
    )
    return [snake(n) for n in data.feature_names], x_train, x_test, y_train, y_test


def build(family: str, work: Path) -> BenchModel:
    """Fit ``family`` and write its served artifact and its reference pickle under
    ``work/<family>``; raises KeyError for a family not registered, and training's
    ConversionError when the export cannot prove the graph equal to the pipeline."""
    from training.export import write_artifact

    model = pipeline(family)
    features, x_train, x_test, y_train, _ = dataset()
    model.fit(x_train, y_train)
    directory = work / family
    served = directory / SERVED_DIR
    served.mkdir(parents=True, exist_ok=True)
    files = write_artifact(
        model,
        CLASS_NAMES,
        x_train,
        x_test,
        served,
        name=MODEL_NAME,
        features=features,
        allow_scikit_learn=False,
        positive_class="malignant",
        card={
            "target": "diagnosis",
            "estimator": family,
            "data": {"train_rows": len(x_train), "test_rows": len(x_test)},
        },
    )
    reference = directory / REFERENCE_FILE
    joblib.dump(model, reference)
    return BenchModel(
        family,
        served,
        reference,
        tuple(features),
        tuple(CLASS_NAMES),
        (served / files["model_file"]).stat().st_size,
    )
