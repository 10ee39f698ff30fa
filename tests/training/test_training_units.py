"""Pure logic of the training package: params validation, the gate, the verified model loader."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from training_helpers import ROOT

from training import artifact, params
from training.dataset import load_frame, snake_case
from training.evaluate import gate_failures
from training.train import build_pipeline

VALID = """\
prepare: {seed: 1, test_size: 0.25}
train: {C: 2, max_iter: 50, tol: 0.001, solver: newton-cg, fit_intercept: false}
evaluate: {thresholds: {accuracy: 0.5, roc_auc: 0.6}}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def test_the_committed_params_file_is_valid_for_every_stage() -> None:
    path = ROOT / "training/params.yaml"
    assert params.load_prepare(path).test_size == pytest.approx(0.2)
    assert params.load_train(path).solver in params.SOLVERS
    assert set(params.load_evaluate(path).thresholds) == set(params.METRIC_NAMES)


def test_a_valid_file_gives_typed_values(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    assert params.load_prepare(path) == params.PrepareParams(seed=1, test_size=0.25)
    train = params.load_train(path)
    assert train.C == 2.0 and isinstance(train.C, float)
    assert train.as_dict() == {
        "C": 2.0, "max_iter": 50, "tol": 0.001, "solver": "newton-cg", "fit_intercept": False,
    }  # fmt: skip
    assert params.load_evaluate(path).thresholds == {"accuracy": 0.5, "roc_auc": 0.6}


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("C: 2,", "C: '2',", "train.C must be a number, got '2'"),
        ("C: 2,", "C: true,", "train.C must be a number, got True"),
        ("C: 2,", "C: -1,", "train.C must be in (0, inf], got -1"),
        ("C: 2,", "", "train.C is missing"),
        ("max_iter: 50", "max_iter: 5.5", "train.max_iter must be an integer, got 5.5"),
        ("fit_intercept: false", "fit_intercept: 'no'", "train.fit_intercept must be true or"),
        ("solver: newton-cg", "solver: saga", "train.solver must be one of lbfgs, newton-cg"),
        ("tol: 0.001", "tol: .nan", "train.tol must be in (0, inf], got nan"),
        ("test_size: 0.25", "test_size: 0.9", "prepare.test_size must be in (0, 0.5], got 0.9"),
        ("seed: 1,", "seed: 1, sed: 2,", "prepare.sed is not a known key"),
        ("accuracy: 0.5", "acuracy: 0.5", "evaluate.thresholds.acuracy is not a known key"),
        ("thresholds: {", "thresholds: [{", "evaluate.thresholds must be a mapping"),
    ],
)
def test_a_bad_value_is_named_in_one_line(tmp_path: Path, old: str, new: str, message: str) -> None:
    text = VALID.replace(old, new)
    if text.count("[") != text.count("]"):
        text = text.replace("}}", "}]}")
    assert text != VALID
    path = write(tmp_path, text)
    with pytest.raises(params.ParamsError) as caught:
        for load in (params.load_prepare, params.load_train, params.load_evaluate):
            load(path)
    assert message in str(caught.value)
    assert str(caught.value).startswith(f"{path}: ")
    assert "\n" not in str(caught.value)


def test_a_missing_section_and_bad_yaml_are_named(tmp_path: Path) -> None:
    path = write(tmp_path, "prepare: {seed: 1, test_size: 0.2}\n")
    with pytest.raises(params.ParamsError, match=r"params.yaml: missing key train$"):
        params.load_train(path)
    path = write(tmp_path, "train: [C\n")
    with pytest.raises(params.ParamsError, match=r"not valid YAML at line 2"):
        params.load_train(path)


def test_the_gate_names_each_metric_below_its_threshold() -> None:
    metrics = {"accuracy": 0.9, "precision": 0.8, "recall": 0.95, "f1": 0.85, "roc_auc": 0.99}
    assert gate_failures(metrics, {"accuracy": 0.9, "roc_auc": 0.98}) == []
    assert gate_failures(metrics, {"precision": 0.85, "recall": 0.96, "f1": 0.5}) == [
        "precision 0.8000 < 0.85 (evaluate.thresholds.precision)",
        "recall 0.9500 < 0.96 (evaluate.thresholds.recall)",
    ]


def test_the_dataset_has_snake_case_features_and_named_labels() -> None:
    assert snake_case("worst concave points") == "worst_concave_points"
    frame = load_frame()
    assert frame.shape == (569, 31)
    assert list(frame.columns[:2]) == ["mean_radius", "mean_texture"]
    assert frame["diagnosis"].value_counts().to_dict() == {"benign": 357, "malignant": 212}


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A tiny model with its card, built here rather than taken from DVC."""
    frame = load_frame().head(120)
    target = frame.pop("diagnosis")
    train = params.TrainParams(C=1.0, max_iter=200, tol=1e-4, solver="lbfgs", fit_intercept=True)
    model = build_pipeline(train).fit(frame, target)
    artifact.joblib.dump(model, tmp_path / artifact.MODEL_FILE)
    card = {
        "schema_version": 1,
        "model_file": "model.pkl",
        "model_sha256": artifact.sha256_file(tmp_path / artifact.MODEL_FILE),
    }
    artifact.write_metadata(tmp_path, card)
    return tmp_path


def test_load_model_returns_the_verified_model(model_dir: Path) -> None:
    model, card = artifact.load_model(model_dir)
    row = load_frame().drop(columns="diagnosis").head(1)
    assert model.predict(row)[0] in {"benign", "malignant"}
    assert card["model_sha256"] == artifact.sha256_file(model_dir / "model.pkl")


def test_a_tampered_model_is_refused_before_it_is_unpickled(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (model_dir / "model.pkl").open("ab") as handle:
        handle.write(b"\x00")

    def must_not_unpickle(path: object) -> None:
        raise AssertionError(f"unpickled an unverified file: {path}")

    monkeypatch.setattr(artifact.joblib, "load", must_not_unpickle)
    with pytest.raises(artifact.ModelIntegrityError, match="sha256 mismatch"):
        artifact.load_model(model_dir)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: (d / "metadata.json").unlink(), "no metadata.json"),
        (lambda d: (d / "model.pkl").unlink(), "no model.pkl"),
        (lambda d: (d / "metadata.json").write_text("{"), "not valid JSON"),
        (
            lambda d: (d / "metadata.json").write_text(json.dumps({"schema_version": 2})),
            "schema_version must be 1",
        ),
    ],
)
def test_an_incomplete_model_directory_is_refused(
    model_dir: Path, change: object, message: str
) -> None:
    change(model_dir)  # type: ignore[operator]
    with pytest.raises(artifact.ModelIntegrityError, match=message):
        artifact.verify(model_dir)


def test_pandas_reads_back_what_prepare_writes(tmp_path: Path) -> None:
    from training.dataset import read_split, write_csv

    frame = load_frame()
    write_csv(frame, tmp_path / "all.csv")
    features, target = read_split(tmp_path / "all.csv")
    pd.testing.assert_frame_equal(features, frame.drop(columns="diagnosis"))
    assert list(target) == list(frame["diagnosis"])
