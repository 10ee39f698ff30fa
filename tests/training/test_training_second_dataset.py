"""A second dataset proves the data is a parameter: wine (13 features, 3 classes) end to end.

A fork that ships another model changes the data, its description and params.yaml, nothing else:
here the bundled wine data is written to training/data/wine.csv by the module that writes the
default file, added with ``dvc add``, described in params.yaml's ``data`` section (and the
artifact's name in ``artifact``), and the same pipeline, registry and server take it from there:
prepare, train, evaluate, the report, ``gto register``/``assign``, ``dvc get`` by the tag (as the
image build fetches it), and one prediction through the real Nginx + uWSGI stack over ``/predict``
and ``/v2``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from training_helpers import clone, make_origin, png_size, repro, run, stages_run

import modelcard
from devstack.stack import Stack, missing_servers
from serving.provenance import HEADER, provenance_id

pytestmark = pytest.mark.e2e  # a real Nginx + uWSGI stack (and real git, DVC and GTO)

NAME = "wine-classifier"
CLASSES = ["class_0", "class_1", "class_2"]
RAW = "training/data/wine.csv"
#: What a new dataset may change among the files git tracks: its description and its .dvc file;
#: the rest of the diff is what the pipeline writes (dvc.lock, metrics, plot data).
INPUTS = {"training/params.yaml", f"{RAW}.dvc"}
OUTPUTS = {
    "training/dvc.lock",
    "training/metrics.json",
    "training/plots/confusion.csv",
    "training/plots/precision_recall.csv",
    "training/plots/roc.csv",
}


@dataclass
class Wine:
    repo: Path
    origin: Path
    changed: set[str]
    model_dir: Path
    card: dict[str, Any]
    commit: str


def describe(repo: Path) -> None:
    """Point params.yaml at the wine file, as a user edits it (the other sections stay)."""
    path = repo / "training/params.yaml"
    document = yaml.safe_load(path.read_text())
    document["data"] = {
        "file": RAW,
        "target": "cultivar",
        "classes": CLASSES,
        "features": "all",
        "exclude": [],
        "feature_type": "float64",
        "types": {},
    }
    document["artifact"] = {"name": NAME, "description": "Wine cultivar classifier"}
    path.write_text(yaml.safe_dump(document, sort_keys=False))


@pytest.fixture(scope="module")
def wine(tmp_path_factory: pytest.TempPathFactory) -> Wine:
    tmp = tmp_path_factory.mktemp("wine")
    origin = make_origin(tmp)
    repo = clone(origin, tmp / "clone", tmp / "dvc-remote")
    # The data: written by the module that writes the default file, then added to DVC.
    run("python", "-m", "training.bundled", "write", "wine", RAW, cwd=repo)
    run("dvc", "add", RAW, cwd=repo)
    describe(repo)
    assert stages_run(repro(repo)) == ["prepare", "train", "evaluate", "export"]
    run("git", "add", "-A", cwd=repo)
    changed = set(run("git", "diff", "--cached", "--name-only", cwd=repo).stdout.split())
    run("git", "commit", "-q", "-m", "data: wine", cwd=repo)
    run("dvc", "push", cwd=repo)
    run("gto", "register", NAME, cwd=repo)
    run("gto", "assign", NAME, "--version", "v0.0.1", "--stage", "dev", cwd=repo)
    run("git", "push", "-q", "origin", "HEAD:main", "--tags", cwd=repo)
    # Fetched back by its stage tag from the bare origin, the way the image build does.
    model_dir = tmp / "model"
    run(
        "dvc", "get", origin, "training/model", "--rev", f"{NAME}#dev#1", "-o", model_dir,
        "--remote", "local", "--remote-config", f"url={tmp / 'dvc-remote'}",
        cwd=tmp,
    )  # fmt: skip
    commit = run("git", "rev-parse", "HEAD", cwd=repo).stdout.strip()
    return Wine(repo, origin, changed, model_dir, modelcard.load(model_dir), commit)


def test_only_the_data_its_description_and_params_changed(wine: Wine) -> None:
    assert wine.changed - OUTPUTS == INPUTS


def test_the_model_card_describes_a_three_class_model_on_thirteen_features(wine: Wine) -> None:
    card = wine.card
    assert card["name"] == NAME
    assert card["classes"] == CLASSES
    assert card["positive_class"] is None and card["metric_average"] == "macro"
    assert card["target"] == "cultivar" and card["estimator"] == "logistic_regression"
    features = card["features"]
    assert isinstance(features, list) and len(features) == 13
    assert features[0] == {"name": "alcohol", "dtype": "float64"}
    assert card["data"] == {
        "file": RAW,
        "sha256": card["data"]["sha256"],  # type: ignore[index]
        "train_rows": 142,
        "test_rows": 36,
    }
    metrics = json.loads((wine.repo / "training/metrics.json").read_text())
    assert metrics.keys() == {"accuracy", "precision", "recall", "f1", "roc_auc"}
    assert all(0.9 <= value <= 1 for value in metrics.values()), metrics


def test_the_plots_and_the_report_work_for_three_classes(wine: Wine, tmp_path: Path) -> None:
    text = (wine.repo / "training/plots/confusion.csv").read_text()
    confusion = list(csv.DictReader(text.splitlines()))
    assert {row["actual"] for row in confusion} == set(CLASSES)
    roc = (wine.repo / "training/plots/roc.csv").read_text().splitlines()
    assert roc[0] == "fpr,tpr" and roc[-1] == "1.0,1.0"
    run("python", "-m", "training.report", "--base", "HEAD~1", "--out", tmp_path, cwd=wine.repo)
    report = (tmp_path / "report.md").read_text()
    assert "| data | `training/data/breast_cancer.csv` | `training/data/wine.csv` |" in report
    assert "| classes | `benign, malignant` | `class_0, class_1, class_2` |" in report
    for png in ("roc.png", "precision_recall.png", "confusion.png"):
        width, height = png_size((tmp_path / png).read_bytes())
        assert width > 200 and height > 200, png


def test_gto_registers_the_artifact_named_in_params(wine: Wine) -> None:
    shown = json.loads(run("gto", "show", "--json", cwd=wine.repo).stdout)
    assert shown[NAME]["version"] == "v0.0.1"
    assert shown[NAME]["stage"] == {"dev": "v0.0.1"}


@pytest.fixture(scope="module")
def stack(wine: Wine) -> Iterator[Stack]:
    missing = missing_servers()  # Nginx as the stack finds it, like tests/serving's need_nginx
    if missing is not None:
        pytest.skip(missing)
    env = {
        "MODELOPS_MODEL_NAME": NAME,
        "MODELOPS_MODEL_VERSION": "v0.0.1",
        "MODELOPS_MODEL_STAGE": "dev",
        "MODELOPS_GIT_COMMIT": wine.commit,
    }
    with Stack(wine.model_dir, env=env) as running:
        yield running


def first_test_row(wine: Wine) -> tuple[dict[str, float], str]:
    with (wine.repo / "training/data/test.csv").open() as handle:
        row = next(csv.DictReader(handle))
    label = row.pop("cultivar")
    return {name: float(value) for name, value in row.items()}, label


def test_one_prediction_through_the_stack_over_predict(wine: Wine, stack: Stack) -> None:
    features, _ = first_test_row(wine)
    response = requests.post(f"{stack.url}/predict", json={"instances": [features]}, timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["classes"] == CLASSES
    assert body["labels"][0] in CLASSES
    assert len(body["probabilities"][0]) == 3
    assert sum(body["probabilities"][0]) == pytest.approx(1.0)
    assert (body["model_name"], body["model_version"]) == (NAME, "v0.0.1")
    served = requests.get(f"{stack.url}/v2/models/{NAME}", timeout=30).json()["parameters"]
    assert (served["stage"], served["git_commit"]) == ("dev", wine.commit)
    assert response.headers[HEADER] == provenance_id(served)


def test_one_prediction_through_the_stack_over_v2(wine: Wine, stack: Stack) -> None:
    features, _ = first_test_row(wine)
    names = [feature["name"] for feature in wine.card["features"]]
    tensor = {"name": "input-0", "shape": [1, 13], "datatype": "FP64"}
    tensor["data"] = [features[name] for name in names]  # type: ignore[assignment]
    url = f"{stack.url}/v2/models/{NAME}/infer"
    response = requests.post(url, json={"id": "1", "inputs": [tensor]}, timeout=30)
    assert response.status_code == 200, response.text
    outputs = {output["name"]: output for output in response.json()["outputs"]}
    assert outputs["predict"]["data"][0] in CLASSES
    assert outputs["predict_proba"]["shape"] == [1, 3]
    metadata = requests.get(f"{stack.url}/v2/models/{NAME}", timeout=30).json()
    assert metadata["name"] == NAME
    assert [i["shape"] for i in metadata["inputs"]] == [[-1, 13]]
