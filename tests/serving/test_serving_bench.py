"""The benchmark's pieces (`make bench`, bench/): its models, its reference, its cells, its
scoring and its report. Nothing here is timed: the figures are the benchmark's business."""

from __future__ import annotations

import json
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

import joblib  # type: ignore[import-untyped]
import numpy as np
import pytest
from conftest import need_nginx

import modelcard
from bench import models, run
from devstack.stack import free_port
from serving.model import Model
from serving.readiness import NotReadyError


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, models.BenchModel]:
    work = tmp_path_factory.mktemp("bench-models")
    return {family: models.build(family, work) for family in models.FAMILIES}


def test_every_family_is_written_as_an_onnx_artifact_and_a_pickle_that_agree(
    built: dict[str, models.BenchModel],
) -> None:
    _, _, x_test, _, _ = models.dataset()
    for family, model in built.items():
        card = modelcard.load(model.served)
        assert card["format"] == "onnx" and card["estimator"] == family
        served = Model(model.served)
        served.load()
        pipeline = joblib.load(model.reference)
        np.testing.assert_allclose(
            served.predict_proba(x_test),
            pipeline.predict_proba(x_test),
            rtol=0,
            atol=modelcard.PROBABILITY_TOLERANCE,
        )
    forest = joblib.load(built["random_forest"].reference)[-1]
    boosting = joblib.load(built["hist_gradient_boosting"].reference)[-1]
    assert forest.n_estimators == 100 and forest.n_jobs == 1
    assert boosting.max_iter == 100 and boosting.n_iter_ == 100


@pytest.mark.e2e  # a real Nginx + uWSGI stack
def test_the_reference_answers_one_row_as_the_stack_does_for_every_family(
    built: dict[str, models.BenchModel],
) -> None:
    need_nginx()
    body = run.workloads(built["logistic_regression"].features)["predict-1"].body
    with tempfile.TemporaryDirectory() as tmp:
        for family, model in built.items():
            with (
                run.stack_target(model.served) as (stack_url, _),
                run.fastapi_target(model, Path(tmp)) as (reference_url, _),
            ):
                assert run.disagreement(stack_url, reference_url, body) is None, family
                answer = run.post_json(reference_url + "/predict", body)
                expected = joblib.load(model.reference).predict_proba(
                    np.array([list(json.loads(body)["instances"][0].values())])
                )
                assert answer["classes"] == list(models.CLASS_NAMES)
                np.testing.assert_allclose(answer["probabilities"], expected, rtol=0, atol=1e-12)


@pytest.mark.e2e  # a real Nginx + uWSGI stack
def test_a_short_partial_run_measures_its_cells_and_writes_only_its_own_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    need_nginx()
    out = tmp_path / "out"
    cells = "logistic_regression/stack:predict-1,floor:pipeline-constant-1"
    assert run.main(["--out", str(out), "--duration", "1", "--only", cells]) == 0
    (report_path,) = out.glob("only-*.json")
    report = json.loads(report_path.read_text())
    assert report["scores"] == {} and not (out / "latest.json").exists()
    measured = {
        (r["family"], r["target"], r["workload"], r["concurrency"]) for r in report["results"]
    }
    assert measured == {
        *(("logistic_regression", "stack", "predict-1", c) for c in run.CONCURRENCY),
        *(("", "floor", "pipeline-constant-1", c) for c in run.CONCURRENCY),
    }
    assert all(r["requests"] > 0 and r["errors"] == 0 for r in report["results"])
    assert report["machine"]["cpus"] and report["machine"]["libraries"]["onnxruntime"]
    assert "no targets scored" in (out / report_path.with_suffix(".md").name).read_text()
    assert (out / "models" / "logistic_regression" / models.SERVED_DIR / "model.onnx").is_file()
    capsys.readouterr()


def test_only_refuses_an_unknown_cell_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--out", str(tmp_path / "out")]
    assert run.main([*argv, "--only", "random_forest/stack:predict-1000,stack:nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("unknown cell 'stack:nope' in --only")
    assert "random_forest/stack:predict-1000" in err and "\n" not in err
    assert not (tmp_path / "out").exists()


def row(family: str, target: str, workload: str, c: int, **values: float) -> dict[str, Any]:
    figures = {"rps": 1000.0, "rows_per_s": 1000.0, "p99_ms": 1.0, "cpu_us_per_request": 100.0}
    figures.update(values)
    return {
        "family": family,
        "target": target,
        "workload": workload,
        "concurrency": c,
        "requests": 5000,
        "errors": 0,
        "p50_ms": 0.5,
        **figures,
    }


def full_results() -> list[dict[str, Any]]:
    """Every cell of a full run: each family 4x its reference and 1.2x the floor's CPU."""
    results = []
    for c in run.CONCURRENCY:
        for workload in run.SHARED_CELLS["floor"]:
            results.append(row("", "floor", workload, c))
        results.append(row("", "ceiling", "constant-1", c, rps=20_000.0))
        for family in models.FAMILIES:
            results.append(row(family, "stack", "predict-1", c, rps=4000.0, cpu_us_per_request=120))
            results.append(row(family, "stack", "predict-1000", c, rps=40.0, rows_per_s=40_000))
            results.append(row(family, "stack", "infer-1000", c, rps=50.0, rows_per_s=50_000))
            results.append(row(family, "fastapi", "predict-1", c))
            results.append(row(family, "fastapi", "predict-1000", c, rps=10.0, rows_per_s=10_000))
    return results


def test_a_full_run_scores_every_family_and_reports_a_missed_target_as_failed() -> None:
    results = full_results()
    slow = next(
        r
        for r in results
        if (r["family"], r["target"], r["workload"], r["concurrency"])
        == ("random_forest", "stack", "predict-1000", 64)
    )
    slow["rows_per_s"] = 15_000.0  # 1.5x the reference's 10,000 rows/s: below the 2x goal
    scores = run.score(results)
    assert list(scores) == list(models.FAMILIES)
    for family, scored in scores.items():
        targets = scored["targets"]
        assert targets["rps_1row"] == {
            "measured": {"c16": 4.0, "c64": 4.0},
            "goal": 3,
            "passed": True,
        }
        assert targets["cpu_1row"]["measured"] == {"c1": 1.2, "c16": 1.2, "c64": 1.2}
        assert targets["cpu_1row"]["passed"] and targets["p99_1row"]["passed"]
        assert targets["rows_1000"]["passed"] is (family != "random_forest")
    assert scores["random_forest"]["targets"]["rows_1000"]["measured"] == {"c16": 4.0, "c64": 1.5}

    report = {
        "started": "2026-11-28T12:00:00Z",
        "duration_s": 5,
        "loadavg_before": "1 1 1",
        "loadavg_after": "2 2 2",
        "machine": {
            "cpu_model": "Test CPU",
            "cpus": 2,
            "kernel": "Linux 6",
            "python": "3.11.7",
            "libraries": {"onnxruntime": "1.32.0"},
        },
        "results": results,
        "scores": scores,
    }
    text = run.markdown(report)
    assert "Machine: Test CPU, 2 CPUs, Linux 6, Python 3.11.7" in text
    assert "onnxruntime 1.32.0" in text
    forest = next(line for line in text.splitlines() if line.startswith("| random_forest | 4.00"))
    assert forest.endswith("| 4.00 / 1.50 **FAIL** |")
    boosting = next(
        line for line in text.splitlines() if line.startswith("| hist_gradient_boosting | 4.00")
    )
    assert "FAIL" not in boosting and boosting.count("**pass**") == len(run.TARGETS)


def test_a_cell_with_errors_fails_its_target_whatever_its_figures() -> None:
    results = full_results()
    for r in results:
        if r["family"] == "logistic_regression" and r["workload"] == "predict-1":
            r["errors"] = 3
    targets = run.score(results)["logistic_regression"]["targets"]
    assert not targets["rps_1row"]["passed"] and not targets["cpu_1row"]["passed"]
    assert not targets["p99_1row"]["passed"] and targets["rows_1000"]["passed"]


def test_a_reference_server_that_exits_at_start_is_reported_at_once_with_its_log(
    tmp_path: Path,
) -> None:
    argv = [sys.executable, "-c", "import sys; print('no such app'); sys.exit(3)"]
    log = tmp_path / "server.log"
    with (
        pytest.raises(NotReadyError) as raised,
        run.process_target("broken", argv, {}, log, free_port(), "/", signal.SIGINT),
    ):
        pass
    first, *rest = str(raised.value).splitlines()
    assert first.startswith("the broken server at http://127.0.0.1:")
    assert first.endswith(": broken exited with status 3 before it was ready")
    assert rest == ["--- server.log", "no such app"]


def test_the_cost_of_the_drift_signals_is_the_stack_on_against_off_in_the_same_run() -> None:
    results = full_results()
    for c in run.CONCURRENCY:
        results.append(
            row(
                run.COST_FAMILY,
                run.MONITORING_OFF,
                "predict-1",
                c,
                rps=5000.0,
                cpu_us_per_request=100,
            )
        )
    cost = run.monitoring_cost(results)
    assert list(cost) == ["predict-1"]  # only what both were measured on
    assert cost["predict-1"]["c16"] == {
        "cpu_us_on": 120,
        "cpu_us_off": 100,
        "cpu_us_added": 20,
        "rps_on": 4000.0,
        "rps_off": 5000.0,
        "rps_on_over_off": 0.8,
    }
    assert set(run.score(results)) == set(models.FAMILIES)  # the cost cells score nothing
    report = {
        "started": "2026-11-28T12:00:00Z",
        "duration_s": 5,
        "loadavg_before": "1 1 1",
        "loadavg_after": "2 2 2",
        "machine": {
            "cpu_model": "",
            "cpus": 2,
            "kernel": "Linux 6",
            "python": "3.11",
            "libraries": {},
        },
        "results": results,
        "scores": {},
        "monitoring_cost": cost,
    }
    assert "| predict-1 | 16 | 120 | 100 | 20 | 4000 | 5000 | 0.80 |" in run.markdown(report)


@pytest.mark.e2e  # a real Nginx + uWSGI stack
def test_a_partial_run_of_the_cost_cells_measures_the_stack_with_the_signals_on_and_off(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    need_nginx()
    out = tmp_path / "out"
    family = run.COST_FAMILY
    cells = f"{family}/stack:predict-1,{family}/{run.MONITORING_OFF}:predict-1"
    assert run.main(["--out", str(out), "--duration", "1", "--only", cells]) == 0
    (report_path,) = out.glob("only-*.json")
    report = json.loads(report_path.read_text())
    assert sorted(report["monitoring_cost"]["predict-1"]) == ["c1", "c16", "c64"]
    assert all(r["requests"] > 0 and r["errors"] == 0 for r in report["results"])
    assert (
        "Drift signals on (the default) against off" in report_path.with_suffix(".md").read_text()
    )
    capsys.readouterr()
