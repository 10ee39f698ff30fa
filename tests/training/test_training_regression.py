"""``data.task: regression``: scikit-learn's bundled diabetes data, written to a CSV in a temp
directory, through prepare, train (each regression family), evaluate, export (the proof) and
the offline drift profile, in process; the params' one-line errors; the quality gate and the
promotion's regression gate in a regression's terms (an error is a maximum, and may not grow)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import joblib  # type: ignore[import-untyped]
import numpy as np
import pandas as pd
import pytest
from regression_kit import (
    DATA_FILE,
    FEATURES,
    REGRESSORS,
    TARGET,
    diabetes_workspace,
    run_stages,
    write_params,
)

import modelcard
from gitops import gates
from training import drift, evaluate, export, families, params, portable, prepare, train
from training.errors import StageError

#: A valid logistic_regression section (a classification family, asked for a regression).
LOGISTIC = {"C": 1.0, "max_iter": 100, "tol": 1e-4, "solver": "lbfgs", "fit_intercept": True}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return diabetes_workspace(tmp_path_factory.mktemp("diabetes"))


@pytest.fixture(scope="module")
def trained(workspace: Path) -> dict[str, Path]:
    """Each regression family trained, evaluated and exported: its work directory."""
    works = {}
    for family in REGRESSORS:
        params_path = write_params(workspace, family, **{"train.estimator": family})
        work = workspace / family
        run_stages(workspace, params_path, work)
        works[family] = work
    return works


@pytest.mark.parametrize("family", REGRESSORS)
def test_each_regression_family_trains_evaluates_and_exports_a_graph_proven_on_10k_rows(
    trained: dict[str, Path], workspace: Path, family: str
) -> None:
    work = trained[family]
    metrics = json.loads((work / "metrics.json").read_text())
    assert set(metrics) == {"rmse", "mae", "r2"}
    assert 0 < metrics["mae"] <= metrics["rmse"] and metrics["r2"] < 1
    card = modelcard.load(work / "model")
    assert card["task"] == "regression" and card["classes"] == []
    assert card["estimator"] == family and card["format"] == "onnx"
    assert card["metrics"] == metrics and card["metric_average"] is None
    assert card["proof"]["generated_rows"] >= 10_000
    assert card["proof"]["test_rows"] == len(pd.read_csv(workspace / "split/test.csv"))
    assert card["proof"]["largest_difference"] <= 1e-6
    model = joblib.load(work / "model.pkl")
    assert not hasattr(model, "classes_")  # a regressor, not a classifier of numbers
    assert type(model).__name__ == "Pipeline"
    assert families.by_estimator(model.steps[-1][1]) is families.get(family)

    # the verification sample the server repeats: scikit-learn's values for its rows
    sample = modelcard.read_verification(work / "model", card)
    expected = portable.sklearn_values(model, np.asarray(sample.rows))
    np.testing.assert_array_equal(np.asarray(sample.probabilities), expected)
    assert sample.labels == []

    # the plots: predicted against actual, and the residuals, for every test row
    pairs = pd.read_csv(work / "plots/predicted_actual.csv")
    residuals = pd.read_csv(work / "plots/residuals.csv")
    assert list(pairs.columns) == ["actual", "predicted"]
    assert list(residuals.columns) == ["predicted", "residual"]
    assert len(pairs) == len(residuals) == card["proof"]["test_rows"]
    np.testing.assert_allclose(
        residuals["residual"], pairs["actual"] - pairs["predicted"], rtol=0, atol=1e-5
    )


def test_the_profile_holds_the_predictions_distribution_and_drift_reads_a_snapshot(
    trained: dict[str, Path], workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = trained["ridge"]
    card = modelcard.load(work / "model")
    profile = modelcard.read_profile(work / "model", card)
    assert profile.score_kind == modelcard.PREDICTION_SCORE and profile.classes == ()
    test = pd.read_csv(workspace / "split/test.csv")
    predictions = joblib.load(work / "model.pkl").predict(test.drop(columns=[TARGET]))
    counts = np.bincount(
        np.searchsorted(profile.score.edges, predictions, side="right"),
        minlength=len(profile.score.ratios),
    )
    np.testing.assert_allclose(profile.score.ratios, counts / len(predictions), rtol=1e-5)
    assert [f.name for f in profile.features] == list(test.columns.drop(TARGET))

    # the offline drift check takes the regression's profile (its features; no class balance)
    drift.main(["--profile", str(work / "model/profile.json"),
                "--data", str(workspace / "split/test.csv")])  # fmt: skip
    result = json.loads(capsys.readouterr().out)
    assert result["rows"] == len(test) and len(result["features"]) == len(FEATURES)
    with pytest.raises(StageError, match="no classes to compare the label column with"):
        drift.main(["--profile", str(work / "model/profile.json"),
                    "--data", str(workspace / "split/test.csv"), "--target", TARGET])  # fmt: skip


def test_a_graph_one_millionth_off_fails_the_regression_proof(
    trained: dict[str, Path], workspace: Path
) -> None:
    """The proof compares values to 1e-6: a graph whose intercept is off by 2e-6 is refused."""
    model = joblib.load(trained["ridge"] / "model.pkl")
    train_x = pd.read_csv(workspace / "split/train.csv").drop(columns=[TARGET]).to_numpy()
    test_x = pd.read_csv(workspace / "split/test.csv").drop(columns=[TARGET]).to_numpy()
    generated = portable.generated_rows(train_x)
    graph = portable.to_onnx(model, len(FEATURES))
    proof = portable.prove(model, graph, [], test_x, generated, 1e-6)
    assert proof.largest_difference <= 1e-6
    nudged = joblib.load(trained["ridge"] / "model.pkl")
    nudged.steps[-1][1].intercept_ += 2e-6
    with pytest.raises(portable.ConversionError) as refused:
        portable.prove(model, portable.to_onnx(nudged, len(FEATURES)), [], test_x, generated, 1e-6)
    assert str(refused.value) == (
        f"the ONNX graph differs from scikit-learn on the test split: {len(test_x)} of "
        f"{len(test_x)} rows have a value off by more than 1e-06 (largest difference 2e-06)"
    )


def test_the_quality_gate_holds_an_error_as_a_maximum(
    trained: dict[str, Path], workspace: Path
) -> None:
    metrics = json.loads((trained["ridge"] / "metrics.json").read_text())
    strict = write_params(workspace, "strict", **{"evaluate.thresholds": {"rmse": 40.0, "r2": 0.3}})
    with pytest.raises(StageError) as failed:
        evaluate.main(["--params", str(strict), "--test", str(workspace / "split/test.csv"),
                       "--model", str(trained["ridge"] / "model.pkl"),
                       "--metrics", str(workspace / "strict-metrics.json"),
                       "--plots", str(workspace / "strict-plots")])  # fmt: skip
    assert str(failed.value) == (
        f"quality gate failed: rmse {metrics['rmse']:.4f} > 40.0 (evaluate.thresholds.rmse)"
    )
    # the defect it guards against: an error held as a minimum would pass any rmse above 40
    assert metrics["rmse"] >= 40.0
    assert evaluate.gate_failures(metrics, {"rmse": metrics["rmse"], "r2": metrics["r2"]}) == []
    with pytest.raises(StageError, match="only a model that passed the quality gate"):
        export.main(["--params", str(strict), "--pipeline", str(trained["ridge"] / "model.pkl"),
                     "--train", str(workspace / "split/train.csv"),
                     "--test", str(workspace / "split/test.csv"),
                     "--metrics", str(trained["ridge"] / "metrics.json"),
                     "--out", str(workspace / "strict-model")])  # fmt: skip


def test_the_promotion_gate_refuses_a_model_whose_error_grew(
    trained: dict[str, Path], workspace: Path
) -> None:
    """The running model is the boosting one's, the candidate a worse one (two boosting
    rounds): its rmse grew far beyond 1 % and the gate names it; the old rule (every metric may
    drop by the tolerance) would have let it through."""
    old = json.loads((trained["hist_gradient_boosting"] / "metrics.json").read_text())
    weak = write_params(
        workspace,
        "weak",
        **{"train.estimator": "hist_gradient_boosting", "train.hist_gradient_boosting.max_iter": 2},
    )
    work = workspace / "weak"
    model = work / "model.pkl"
    train.main(["--params", str(weak), "--data", str(workspace / "split/train.csv"),
                "--model", str(model)])  # fmt: skip
    with pytest.raises(StageError, match="quality gate failed"):  # metrics.json is written first
        evaluate.main(["--params", str(weak), "--test", str(workspace / "split/test.csv"),
                       "--model", str(model), "--metrics", str(work / "metrics.json"),
                       "--plots", str(work / "plots")])  # fmt: skip
    new = json.loads((work / "metrics.json").read_text())
    gated = sorted(params.load_evaluate(weak).thresholds)
    assert gated == ["mae", "r2", "rmse"]
    why = gates.regressed(new, old, gated, 0.01)
    assert why is not None
    assert why[0] == f"mae {new['mae']}"  # the first gated error that grew (name order)
    assert why[1] == f"is more than 0.01 x {old['mae']} above {old['mae']}"
    assert new["rmse"] > old["rmse"] * 1.01
    # the same model passes against itself and within 1 % growth; a better one passes
    assert gates.regressed(old, old, gated, 0.01) is None
    assert gates.regressed({**old, "rmse": old["rmse"] * 1.009}, old, gated, 0.01) is None
    assert gates.regressed(old, new, gated, 0.01) is None
    # the defect: an error compared as a score (new < old - tolerance) lets the worse one through
    assert not any(new[name] < old[name] - 0.01 for name in ("rmse", "mae"))


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        (
            {"train.estimator": "logistic_regression", "train.logistic_regression": LOGISTIC},
            "train.estimator logistic_regression is not a regression family (data.task is "
            "regression); regression families: hist_gradient_boosting, random_forest, ridge",
        ),
        (
            {"evaluate.thresholds": {"rmse": 60.0, "accuracy": 0.9}},
            "evaluate.thresholds.accuracy is a classification metric (data.task is regression); "
            "regression metrics: rmse, mae, r2",
        ),
        (
            {"data.classes": ["low", "high"]},
            "data.classes is for classification only (data.task is regression): drop it",
        ),
        (
            {"data.task": "forecast"},
            "data.task must be one of classification, regression, got 'forecast'",
        ),
        (
            {"evaluate.thresholds": {"rmse": -1}},
            "evaluate.thresholds.rmse must be in (0, inf], got -1",
        ),
        (
            {"evaluate.thresholds": {"r2": 1.5}},
            "evaluate.thresholds.r2 must be in (-inf, 1], got 1.5",
        ),
    ],
)
def test_a_params_file_that_mixes_the_tasks_is_refused_in_one_line(
    workspace: Path, changes: dict[str, Any], error: str
) -> None:
    path = write_params(workspace, "mixed", **changes)
    with pytest.raises(params.ParamsError) as refused:
        params.load_data(path)
        params.load_train(path)
        params.load_evaluate(path)
    assert str(refused.value) == f"{path}: {error}"


def test_a_classification_asking_for_a_regression_family_or_metric_is_refused(
    tmp_path: Path,
) -> None:
    from training_helpers import ROOT

    text = (ROOT / "training/params.yaml").read_text()
    ridge = tmp_path / "ridge.yaml"
    ridge.write_text(text.replace("estimator: logistic_regression", "estimator: ridge", 1))
    with pytest.raises(params.ParamsError) as refused:
        params.load_train(ridge)
    assert str(refused.value) == (
        f"{ridge}: train.estimator ridge is not a classification family (data.task is "
        "classification); classification families: hist_gradient_boosting, "
        "logistic_regression, random_forest"
    )
    rmse = tmp_path / "rmse.yaml"
    rmse.write_text(text.replace("accuracy: 0.95", "rmse: 0.95", 1))
    with pytest.raises(params.ParamsError) as refused:
        params.load_evaluate(rmse)
    assert str(refused.value) == (
        f"{rmse}: evaluate.thresholds.rmse is a regression metric (data.task is "
        "classification); classification metrics: accuracy, precision, recall, f1, roc_auc"
    )


def test_a_target_cell_that_is_not_a_number_fails_prepare_naming_the_line(
    workspace: Path, tmp_path: Path
) -> None:
    lines = (workspace / DATA_FILE).read_text().splitlines()
    lines[5] = lines[5].rsplit(",", 1)[0] + ",high"
    (tmp_path / DATA_FILE).parent.mkdir()
    (tmp_path / DATA_FILE).write_text("\n".join(lines) + "\n")
    path = write_params(tmp_path, "params")
    with pytest.raises(StageError) as refused:
        prepare.main(["--params", str(path), "--out", str(tmp_path / "split"),
                      "--root", str(tmp_path)])  # fmt: skip
    assert str(refused.value) == (
        f"{tmp_path / DATA_FILE}: column {TARGET!r}: 'high' in line 6 is not a finite "
        "number (data.task is regression)"
    )
    assert not (tmp_path / "split").exists()


def test_a_model_of_the_other_task_fails_evaluate_in_one_line(
    trained: dict[str, Path], workspace: Path, tmp_path: Path
) -> None:
    from training_helpers import ROOT

    regressor = trained["ridge"] / "model.pkl"
    with pytest.raises(StageError) as refused:
        evaluate.main(["--params", str(ROOT / "training/params.yaml"),
                       "--test", str(workspace / "split/test.csv"), "--model", str(regressor),
                       "--metrics", str(tmp_path / "m.json"),
                       "--plots", str(tmp_path / "p")])  # fmt: skip
    assert str(refused.value) == (
        "the model is a regressor, data.task is classification: run prepare and train again"
    )


def test_the_card_contract_refuses_classes_on_a_regression(trained: dict[str, Path]) -> None:
    card = modelcard.load(trained["ridge"] / "model")
    with pytest.raises(modelcard.ContractError, match="classes must be empty for task regression"):
        modelcard.check_card({**card, "classes": ["low", "high"]}, Path("metadata.json"))
    with pytest.raises(modelcard.ContractError, match="task must be one of"):
        modelcard.check_card({**card, "task": "forecast"}, Path("metadata.json"))
    modelcard.check_card(card, Path("metadata.json"))
