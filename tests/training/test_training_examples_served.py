"""The two example datasets end to end with no code edit: data, .dvc file and params, nothing else.

For each of training/examples/ (``diabetes``: scikit-learn's diabetes data, a regression;
``churn``: a generated table with three categorical columns and four that miss values, a
classification) a fresh clone of this pipeline switches to it as docs/training.md says a user
does: the example's params.yaml over training/params.yaml, its .dvc file into training/data/,
``python -m training.bundled restore`` (``make training-data``) writes the data file checked
against that .dvc. Then ``dvc repro`` runs prepare, train, evaluate and export; the clone is
committed (only the data's .dvc file and params.yaml are inputs that changed: the rest is what the
pipeline writes), pushed, registered and assigned ``dev`` with GTO; the image is built from that
origin by images/build-model-server.sh (both stages, as tests/image builds it); the dev overlay's
pod (images/pod.py) answers ``/predict`` and v2 infer through its Nginx sidecar with the dataset's
own test rows (text for a category, null for a gap, numbers), as scikit-learn does within 1e-6;
its drift signals count the rows into the profile's bins (a category in its own bin, a missing
value in the last); and ``python -m training.drift`` compares the raw file with the profile.

One image per dataset (a module-scoped fixture, parametrized): the build and the pod are the cost.
"""

from __future__ import annotations

import csv
import json
import math
import re
import secrets
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib  # type: ignore[import-untyped]
import numpy as np
import pandas as pd
import pytest
import requests
import yaml
from image.conftest import build, require_podman
from image.podman_cli import pod_runner, podman, require_kubectl
from image.registry_fixture import Registry
from training_helpers import (
    ROOT,
    clone,
    make_origin,
    repro,
    run,
    stages_run,
    switch_to_example,
)

import modelcard
from modelcard import runtime

pytestmark = pytest.mark.e2e  # image builds, podman pods (and real git, DVC and GTO)

EXAMPLES = ROOT / "training" / "examples"
#: What the pipeline writes besides the model (git-tracked): the rest of a switch's diff.
OUTPUTS = {"training/dvc.lock", "training/metrics.json"}
VERSION, STAGE = "v0.0.1", "dev"
ROWS = 12  # test rows sent to the pod


@dataclass
class Example:
    name: str  # training/examples/<name>
    repo: Path
    changed: set[str]  # the files git saw change, relative to the repository
    params: dict[str, Any]
    card: dict[str, Any]
    test: list[dict[str, Any]]  # the test split's rows as a user sends them
    pipeline: Any
    pod: str  # the pod's Nginx URL


def request_rows(path: Path, card: dict[str, Any]) -> list[dict[str, Any]]:
    """A split's rows as JSON records: a category as its text, a missing cell as null, a number
    as a float (the card's features only)."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    records = []
    for row in rows:
        record: dict[str, Any] = {}
        for feature in card["features"]:
            cell = row[feature["name"]]
            if cell.strip().lower() in ("", "na", "n/a", "nan", "null", "none"):
                record[feature["name"]] = None
            elif feature["dtype"] == "category":
                record[feature["name"]] = cell
            else:
                record[feature["name"]] = float(cell)
        records.append(record)
    return records


def frame_of(records: list[dict[str, Any]], card: dict[str, Any]) -> pd.DataFrame:
    """Records as the pipeline takes them: NaN where a value is missing, numbers as float64."""
    frame = pd.DataFrame(
        [{k: (math.nan if v is None else v) for k, v in r.items()} for r in records]
    )
    for feature in card["features"]:
        if feature["dtype"] != "category":
            frame[feature["name"]] = frame[feature["name"]].astype("float64")
    return frame


@pytest.fixture(scope="module", params=["diabetes", "churn"])
def example(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Example]:
    require_podman()
    require_kubectl()
    name = request.param
    tmp = tmp_path_factory.mktemp(name)
    origin = make_origin(tmp)
    remote = tmp / "dvc-remote"
    repo = clone(origin, tmp / "clone", remote)
    switch_to_example(repo, name)
    assert stages_run(repro(repo)) == ["prepare", "train", "evaluate", "export"]
    run("git", "add", "-A", cwd=repo)
    changed = set(run("git", "diff", "--cached", "--name-only", cwd=repo).stdout.split())
    run("git", "commit", "-q", "-m", f"data: the {name} example", cwd=repo)
    run("dvc", "push", "-q", cwd=repo)
    params = yaml.safe_load((repo / "training/params.yaml").read_text())
    artifact = params["artifact"]["name"]
    run("gto", "register", artifact, "--version", VERSION, cwd=repo)
    run("gto", "assign", artifact, "--version", VERSION, "--stage", STAGE, cwd=repo)
    run("git", "push", "-q", "origin", "HEAD:main", "--tags", cwd=repo)
    card = modelcard.load(repo / "training/model")
    registry = Registry(
        origin=origin, dvc_remote=remote, name=artifact, version=VERSION, stage=STAGE,
        sha256=card["model_sha256"], features=[f["name"] for f in card["features"]],
        sample={}, sample_label="", tampered_version="",
    )  # fmt: skip
    # tagged with this checkout's HEAD like a real build (the overlay takes the tag for the
    # server's git commit), under a namespace of its own (tests/image/builds.py)
    commit = run("git", "rev-parse", "HEAD", cwd=ROOT).stdout.strip()
    token = secrets.token_hex(4)
    image = f"localhost/modelops-test-{token}/model-server:{commit}"
    fetch = f"localhost/modelops/model-server-fetch:test-{token}"
    (tmp / "build").mkdir()
    done = build(registry, f"{artifact}#{STAGE}", image, tmp / "build", fetch_image=fetch)
    assert done.returncode == 0, f"image build failed:\n{done.stderr[-6000:]}"
    test = request_rows(repo / "training/data/test.csv", card)
    pipeline = joblib.load(repo / "training/pipeline/model.pkl")
    try:
        with pod_runner().running_pod(image, env=STAGE) as running:
            yield Example(name, repo, changed, params, card, test, pipeline, running.base)
    finally:
        podman("rmi", "--force", image, fetch, check=False)


def test_a_switch_changes_only_the_data_its_dvc_file_and_params(example: Example) -> None:
    dvc_file = next((EXAMPLES / example.name).glob("*.dvc")).name
    plots = {p for p in example.changed if p.startswith("training/plots/")}
    assert example.changed - OUTPUTS - plots == {
        "training/params.yaml",
        f"training/data/{dvc_file}",
    }
    # the plots directory holds this task's files only (evaluate's out is the directory)
    written = sorted(p.name for p in (example.repo / "training/plots").iterdir())
    regression = example.params["data"].get("task") == "regression"
    assert written == (
        ["predicted_actual.csv", "residuals.csv"]
        if regression
        else ["confusion.csv", "precision_recall.csv", "roc.csv"]
    )


def expected(example: Example, records: list[dict[str, Any]]) -> np.ndarray:
    """scikit-learn's answer for RECORDS: the probabilities, or a regression's values."""
    frame = frame_of(records, example.card)
    if example.card["classes"]:
        return np.asarray(example.pipeline.predict_proba(frame))
    return np.asarray(example.pipeline.predict(frame), dtype=np.float64)


def test_the_pod_answers_predict_with_the_datasets_own_rows_as_scikit_learn(
    example: Example,
) -> None:
    records = example.test[:ROWS]
    if example.name == "churn":  # the rows hold gaps and every kind of column
        assert any(v is None for r in records for v in r.values())
        assert any(isinstance(v, str) for r in records for v in r.values())
    response = requests.post(f"{example.pod}/predict", json={"instances": records}, timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == VERSION
    if example.card["classes"]:
        got = np.asarray(body["probabilities"])
        assert body["labels"] == list(example.pipeline.predict(frame_of(records, example.card)))
    else:
        assert "probabilities" not in body
        got = np.asarray(body["predictions"])
    assert np.abs(got - expected(example, records)).max() <= 1e-6
    metadata = requests.get(f"{example.pod}/v2/models/{body['model_name']}", timeout=30).json()[
        "parameters"
    ]
    assert metadata["model_sha256"] == example.card["model_sha256"]


def test_the_pod_answers_v2_infer_one_tensor_per_feature_as_scikit_learn(
    example: Example,
) -> None:
    records = example.test[:ROWS]
    name = requests.post(
        f"{example.pod}/predict", json={"instances": records[:1]}, timeout=30
    ).json()["model_name"]
    metadata = requests.get(f"{example.pod}/v2/models/{name}", timeout=30).json()
    listed = {i["name"]: i["datatype"] for i in metadata["inputs"]}
    # one tensor per feature: BYTES for a category, FP64 for a number (a plain model's metadata
    # lists its one matrix, input-0, and takes per-feature tensors too)
    kinds = {
        f["name"]: "BYTES" if f["dtype"] == "category" else "FP64" for f in example.card["features"]
    }
    assert listed == kinds if any(k == "BYTES" for k in kinds.values()) else {"input-0": "FP64"}
    inputs = [
        {"name": feature, "shape": [len(records)], "datatype": kind,
         "data": [r[feature] for r in records]}
        for feature, kind in kinds.items()
    ]  # fmt: skip
    response = requests.post(
        f"{example.pod}/v2/models/{name}/infer", json={"inputs": inputs}, timeout=30
    )
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    if example.card["classes"]:
        got = np.asarray(outputs["predict_proba"]["data"]).reshape(len(records), -1)
    else:
        assert set(outputs) == {"predict"}
        got = np.asarray(outputs["predict"]["data"])
    assert np.abs(got - expected(example, records)).max() <= 1e-6


def input_bins(text: str, feature: str) -> dict[int, float]:
    """modelops_input_bin_total's values for FEATURE in a /metrics exposition, by bin."""
    found = re.findall(
        rf'^modelops_input_bin_total{{bin="(\d+)",feature="{feature}"}} (\S+)$', text, re.M
    )
    return {int(b): float(v) for b, v in found}


def test_the_pods_drift_signals_count_categories_and_gaps_in_the_profiles_bins(
    example: Example,
) -> None:
    """The rows of one /predict batch counted by the profile's rule: a category's code in its
    own bin (one bin per category), a missing value in its feature's last bin."""
    profile = json.loads((example.repo / "training/model/profile.json").read_text())
    sent = example.test[:ROWS]
    before = requests.get(f"{example.pod}/metrics", timeout=30).text
    response = requests.post(f"{example.pod}/predict", json={"instances": sent}, timeout=30)
    assert response.status_code == 200, response.text
    after = requests.get(f"{example.pod}/metrics", timeout=30).text
    for feature in profile["features"]:
        spec = next(f for f in example.card["features"] if f["name"] == feature["name"])
        codes = runtime.encode_column(spec, [r[feature["name"]] for r in sent]).tolist()
        want: dict[int, float] = {}
        for code in codes:
            index = bisect_right(feature["edges"], code)
            want[index] = want.get(index, 0.0) + 1.0
        old, new = input_bins(before, feature["name"]), input_bins(after, feature["name"])
        got = {b: v - old.get(b, 0.0) for b, v in new.items() if v != old.get(b, 0.0)}
        assert got == want, (feature["name"], got, want)
        if spec["dtype"] == "category":
            assert feature["categories"] == spec["categories"]
            assert len(feature["ratios"]) == len(spec["categories"]) + 1 + bool(spec.get("missing"))


def test_the_offline_drift_profile_takes_the_raw_file_categories_gaps_and_all(
    example: Example,
) -> None:
    target = example.params["data"]["target"]
    classification = bool(example.card["classes"])
    command = [
        "python", "-m", "training.drift", "--profile", "training/model/profile.json",
        "--data", example.params["data"]["file"],
        *(["--target", target] if classification else []),
    ]  # fmt: skip
    report = json.loads(run(*command, cwd=example.repo).stdout)
    names = [f["name"] for f in example.card["features"]]
    assert [f["name"] for f in report["features"]] == names
    # the whole raw file against its own train split: nothing drifted
    assert all(f["verdict"] == "stable" for f in report["features"]), report
    assert report["rows"] == len(pd.read_csv(example.repo / example.params["data"]["file"]))
    if classification:
        assert report["classes"] is not None and report["classes"] < 0.1
