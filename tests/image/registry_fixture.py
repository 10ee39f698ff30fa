"""A model registry to build the image from: a git repo with a registered, staged model.

Builds a tiny model per docs/contracts.md (StandardScaler + LogisticRegression on scikit-learn's
breast-cancer data, written by training's own export: ``training/model/`` holds the card, the
ONNX graph and the verification sample), declares it in ``training/dvc.yaml`` as the GTO artifact
training/params.yaml names (``artifact.name``: the overlays' model name, which the served pod
reports) with the directory as a stage out,
pushes them to a local DVC remote, registers ``v1.0.0``, assigns ``staging``, registers a
``v1.1.0`` whose model card does not match its model file, and leaves a bare clone: what the
image build fetches from, the way CI would fetch from the real origin.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from training.export import write_artifact
from training.params import load_artifact

NAME = load_artifact().name  # the artifact the overlays serve (make render)
VERSION = "v1.0.0"
STAGE = "staging"
TAMPERED_VERSION = "v1.1.0"  # registered, but its metadata.json does not match its model file

DVC_YAML = f"""\
stages:
  train:
    cmd: 'false'  # the test writes the model; dvc only records it (dvc commit)
    outs:
      - model
artifacts:
  {NAME}:
    path: model
    type: model
"""


@dataclass(frozen=True)
class Registry:
    origin: Path  # bare git repository holding the GTO tags and the DVC pointers
    dvc_remote: Path  # local-directory DVC remote holding the model files
    name: str
    version: str
    stage: str
    sha256: str
    features: list[str]
    sample: dict[str, float]  # one row of the data set, by feature name
    sample_label: str
    tampered_version: str


def _run(cwd: Path, *cmd: str) -> str:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "GTO_NO_ANALYTICS": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"  # dvc, gto of this venv
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def _snake(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_")


def write_model(
    model_dir: Path, c: float = 1.0, dataset: Callable[..., Any] = load_breast_cancer
) -> tuple[str, pd.DataFrame, pd.Series]:
    """Fit and write the artifact with training's export; return its sha256, features, labels.
    ``dataset``: a scikit-learn loader (breast cancer: two classes; wine: three)."""
    bunch = dataset(as_frame=True)
    features = bunch.data.rename(columns=_snake).astype("float64")
    labels = bunch.target.map(dict(enumerate(bunch.target_names))).astype(str)
    classify = LogisticRegression(C=c, max_iter=1000)
    model = Pipeline([("scale", StandardScaler()), ("classify", classify)])
    model.fit(features, labels)
    rows = features.to_numpy()
    classes = [str(c) for c in model.classes_]
    accuracy = float((model.predict(features) == labels).mean())
    card = write_artifact(
        model,
        classes,
        rows,
        rows,
        model_dir,
        name=NAME,
        features=list(features.columns),
        allow_scikit_learn=False,
        positive_class="malignant" if len(classes) == 2 else None,
        card={
            "target": "diagnosis",
            "metrics": {"accuracy": accuracy},
            "params": {"C": c, "max_iter": 1000},
            "data": {"sha256": "0" * 64, "train_rows": len(features), "test_rows": 0},
        },
    )
    return str(card["model_sha256"]), features, labels


def make_registry(root: Path) -> Registry:
    """Create the source repo, the DVC remote and the bare origin under ``root``."""
    src, remote, origin = root / "src", root / "dvc-remote", root / "origin.git"
    src.mkdir(parents=True)
    remote.mkdir()
    _run(src, "git", "init", "-q", "-b", "main")
    _run(src, "git", "config", "user.email", "test@example.invalid")
    _run(src, "git", "config", "user.name", "image test")
    _run(src, "dvc", "init", "-q")
    _run(src, "dvc", "remote", "add", "-d", "storage", str(remote))
    sha256, features, labels = write_model(src / "training" / "model")
    (src / "training" / "dvc.yaml").write_text(DVC_YAML)
    _run(src, "dvc", "commit", "-q", "-f", "training/dvc.yaml:train")
    _run(src, "dvc", "push", "-q")
    _run(src, "git", "add", "-A")
    _run(src, "git", "commit", "-q", "-m", "model v1")
    _run(src, "gto", "register", NAME, "--version", VERSION)
    _run(src, "gto", "assign", NAME, "--version", VERSION, "--stage", STAGE)
    card_path = src / "training" / "model" / "metadata.json"
    card = json.loads(card_path.read_text())
    card["model_sha256"] = "0" * 64
    card_path.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    _run(src, "dvc", "commit", "-q", "-f", "training/dvc.yaml:train")
    _run(src, "dvc", "push", "-q")
    _run(src, "git", "commit", "-q", "-am", "model v1.1 with a card that does not match")
    _run(src, "gto", "register", NAME, "--version", TAMPERED_VERSION)
    _run(root, "git", "clone", "-q", "--bare", str(src), str(origin))
    row = features.iloc[0]
    return Registry(
        origin=origin,
        dvc_remote=remote,
        name=NAME,
        version=VERSION,
        stage=STAGE,
        sha256=sha256,
        features=list(features.columns),
        sample={k: float(v) for k, v in row.items()},
        sample_label=str(labels.iloc[0]),
        tampered_version=TAMPERED_VERSION,
    )


def register_version(
    registry: Registry, version: str, dataset: Callable[..., Any]
) -> tuple[str, pd.DataFrame, pd.Series]:
    """Train a model on another dataset, register it as ``version`` (no stage) and push it to the
    origin and the DVC remote; return its sha256, features and labels."""
    src = registry.origin.parent / "src"
    written = write_model(src / "training" / "model", dataset=dataset)
    _run(src, "dvc", "commit", "-q", "-f", "training/dvc.yaml:train")
    _run(src, "dvc", "push", "-q")
    _run(src, "git", "commit", "-q", "-am", f"model {version}")
    _run(src, "gto", "register", registry.name, "--version", version)
    _run(src, "git", "push", "-q", "--tags", str(registry.origin), "HEAD:main")
    return written


def move_stage(registry: Registry, version: str) -> str:
    """Train a different model, register it as ``version``, move the stage to it and push
    everything to the origin and the DVC remote; return the new model's sha256."""
    src = registry.origin.parent / "src"
    sha256, _, _ = write_model(src / "training" / "model", c=0.05)
    _run(src, "dvc", "commit", "-q", "-f", "training/dvc.yaml:train")
    _run(src, "dvc", "push", "-q")
    _run(src, "git", "commit", "-q", "-am", f"model {version}")
    _run(src, "gto", "register", registry.name, "--version", version)
    _run(src, "gto", "assign", registry.name, "--version", version, "--stage", registry.stage)
    _run(src, "git", "push", "-q", "--tags", str(registry.origin), "HEAD:main")
    return sha256
