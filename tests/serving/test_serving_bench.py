"""The benchmark's pieces (`make bench`, bench/): its models, its reference, its cells, its
scoring and its report. Nothing here is timed: the figures are the benchmark's business."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
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


@pytest.mark.e2e  # a real Nginx + uWSGI stack and MLServer (make mlserver)
def test_mlserver_answers_the_stacks_v2_bodies_as_the_stack_does_and_another_model_disagrees(
    built: dict[str, models.BenchModel],
) -> None:
    need_nginx()
    loads = run.workloads(built["logistic_regression"].features)
    with (
        tempfile.TemporaryDirectory() as tmp,
        run.mlserver_target(built["logistic_regression"], Path(tmp)) as (mlserver_url, _),
    ):
        with run.stack_target(built["logistic_regression"].served) as (stack_url, _):
            for workload in ("infer-1", "infer-1000"):
                assert run.v2_disagreement(stack_url, mlserver_url, loads[workload].body) is None
            # The body the cells send, as is: MLServer's runtime answers its labels.
            answer = run.post_json(mlserver_url + loads["infer-1"].path, loads["infer-1"].body)
            assert [o["name"] for o in answer["outputs"]] == ["predict"]
        # The check fails on a reference that serves another model.
        with run.stack_target(built["random_forest"].served) as (forest_url, _):
            problem = run.v2_disagreement(forest_url, mlserver_url, loads["infer-1"].body)
            assert problem is not None and problem.startswith("probabilities differ by up to")
            targets: dict[str, run.Started] = {
                "stack": (forest_url, []),
                "mlserver": (mlserver_url, []),
            }
            with pytest.raises(RuntimeError, match=r"^random_forest: the stack and mlserver "):
                run.check_agreement("random_forest", targets, loads)


def test_a_missing_mlserver_venv_is_named_with_the_make_target(
    built: dict[str, models.BenchModel], tmp_path: Path
) -> None:
    with (
        pytest.raises(RuntimeError, match=r"mlserver not found: run `make mlserver`$"),
        run.mlserver_target(built["logistic_regression"], tmp_path, venv=tmp_path / "none"),
    ):
        pass


@pytest.mark.e2e  # a real Nginx + uWSGI stack and MLServer
def test_a_short_partial_run_measures_its_cells_and_writes_only_its_own_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    need_nginx()
    out = tmp_path / "out"
    cells = (
        "logistic_regression/stack:predict-1,logistic_regression/mlserver:infer-1,"
        "floor:pipeline-constant-1"
    )
    assert run.main(["--out", str(out), "--duration", "1", "--only", cells]) == 0
    (report_path,) = out.glob("only-*.json")
    report = json.loads(report_path.read_text())
    assert report["goals"] == {} and not (out / "latest.json").exists()
    measured = {
        (r["family"], r["target"], r["workload"], r["concurrency"]) for r in report["results"]
    }
    assert measured == {
        *(("logistic_regression", "stack", "predict-1", c) for c in run.CONCURRENCY),
        *(("logistic_regression", "mlserver", "infer-1", c) for c in run.CONCURRENCY),
        *(("", "floor", "pipeline-constant-1", c) for c in run.CONCURRENCY),
    }
    assert all(r["requests"] > 0 and r["errors"] == 0 for r in report["results"])
    assert report["machine"]["cpus"] and report["machine"]["libraries"]["onnxruntime"]
    assert "no goals scored" in (out / report_path.with_suffix(".md").name).read_text()
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
    assert run.main([*argv, "--mlserver-workers", "-1"]) == 2
    assert capsys.readouterr().err == "--mlserver-workers must be 0 or more, got -1\n"


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
    """Every cell of a full run, each family meeting every goal: 4x FastAPI's one-row req/s
    (3x for the tree families, 1.5x for the linear model), 6x MLServer's (one row) and 4x (1,000
    rows), a third of MLServer's p99, 1.2x the floor's CPU, 4x and 5x FastAPI's 1,000 records as
    records and as a tensor."""
    results = []
    for c in run.CONCURRENCY:
        for workload in run.SHARED_CELLS["floor"]:
            results.append(row("", "floor", workload, c))
        results.append(row("", "ceiling", "constant-1", c, rps=20_000.0))
        for family in models.FAMILIES:
            results.append(row(family, "stack", "predict-1", c, rps=4000.0, cpu_us_per_request=120))
            results.append(row(family, "stack", "infer-1", c, rps=6000.0, p99_ms=1.0))
            results.append(row(family, "stack", "predict-1000", c, rps=40.0, rows_per_s=40_000))
            results.append(row(family, "stack", "infer-1000", c, rps=50.0, rows_per_s=50_000))
            results.append(row(family, "mlserver", "infer-1", c, p99_ms=3.0))
            results.append(row(family, "mlserver", "infer-1000", c, rps=12.5, rows_per_s=12_500))
            results.append(row(family, "fastapi", "predict-1", c))
            results.append(row(family, "fastapi", "predict-1000", c, rps=10.0, rows_per_s=10_000))
        for workload in run.COST_CELLS[run.MONITORING_OFF]:
            results.append(
                row(run.COST_FAMILY, run.MONITORING_OFF, workload, c, cpu_us_per_request=90)
            )
    return results


def goals_of(results: list[dict[str, Any]]) -> dict[str, Any]:
    return run.score(run.ratios(results), run.monitoring_cost(results))


def cell(
    results: list[dict[str, Any]], family: str, target: str, workload: str, c: int
) -> dict[str, Any]:
    key = (family, target, workload, c)
    return next(
        r for r in results if (r["family"], r["target"], r["workload"], r["concurrency"]) == key
    )


def test_a_full_run_scores_every_goal_for_every_family_and_a_missed_goal_fails() -> None:
    results = full_results()
    goals = goals_of(results)
    assert goals["passed"] and list(goals["families"]) == list(models.FAMILIES)
    assert all(len(g) == len(run.GOALS) for g in goals["families"].values())
    assert goals["families"]["random_forest"]["rps_1row_vs_mlserver"] == {
        "title": "one-row req/s ÷ MLServer",
        "ratio": "rps_1row_vs_mlserver",
        "measured": {"c16": 6.0, "c64": 6.0},
        "threshold": 5,
        "at_least": True,
        "passed": True,
    }
    linear = goals["families"]["logistic_regression"]["rps_1row_vs_fastapi"]
    assert (
        linear["threshold"],
        goals["families"]["random_forest"]["rps_1row_vs_fastapi"]["threshold"],
    ) == (1.5, 3)
    assert goals["families"]["hist_gradient_boosting"]["p99_1row_vs_mlserver"]["measured"] == {
        "c1": 1 / 3
    }
    assert goals["drift_signals"]["measured"]["predict-1"] == {"c1": 30, "c16": 30, "c64": 30}

    # Each goal missed once, in the cells it reads: only that goal fails, for that family.
    misses = {
        "rps_1row_vs_mlserver_c1": (("mlserver", "infer-1", 1), "rps", 2500.0),  # 2.4x < 3x
        "rps_1row_vs_mlserver": (("mlserver", "infer-1", 64), "rps", 1500.0),  # 4x < 5x
        "p99_1row_vs_mlserver": (("mlserver", "infer-1", 1), "p99_ms", 1.9),  # 0.53 > 0.5
        "rps_1row_vs_fastapi": (("fastapi", "predict-1", 16), "rps", 1400.0),  # 2.9x < 3x
        "cpu_1row_vs_floor": (("stack", "predict-1", 16), "cpu_us_per_request", 180.0),  # 1.8x
        "rows_1000_tensor_vs_fastapi": (  # 1.92x < 2x (records: 1.54x >= 1.3x)
            ("fastapi", "predict-1000", 64),
            "rows_per_s",
            26_000.0,
        ),
        "rows_1000_records_vs_fastapi": (("stack", "predict-1000", 16), "rows_per_s", 12_000.0),
        "rows_1000_tensor_vs_mlserver": (("mlserver", "infer-1000", 16), "rows_per_s", 20_000.0),
    }
    assert set(misses) == {goal.key for goal in run.GOALS}
    for key, ((target, workload, c), field, value) in misses.items():
        missed = full_results()
        cell(missed, "random_forest", target, workload, c)[field] = value
        goals = goals_of(missed)
        failed = {
            (family, goal)
            for family, entries in goals["families"].items()
            for goal, entry in entries.items()
            if not entry["passed"]
        }
        assert failed == {("random_forest", key)} and not goals["passed"], key

    # The linear model's lower bar against FastAPI: 2x passes it, and fails a tree family's.
    lower = full_results()
    for family in ("logistic_regression", "random_forest"):
        cell(lower, family, "fastapi", "predict-1", 16)["rps"] = 2000.0
    families = goals_of(lower)["families"]
    assert families["logistic_regression"]["rps_1row_vs_fastapi"]["passed"]
    assert not families["random_forest"]["rps_1row_vs_fastapi"]["passed"]

    # The drift signals' cost not measured at every concurrency: that goal fails.
    unmeasured = [
        r
        for r in full_results()
        if (r["target"], r["workload"], r["concurrency"]) != (run.MONITORING_OFF, "infer-1", 64)
    ]
    goals = goals_of(unmeasured)
    assert not goals["drift_signals"]["passed"] and not goals["passed"]


def test_the_report_shows_each_goals_ratios_threshold_and_verdict_per_family() -> None:
    results = full_results()
    cell(results, "random_forest", "stack", "predict-1000", 64)["rows_per_s"] = 12_000.0
    measured = run.ratios(results)
    cost = run.monitoring_cost(results)
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
        "monitoring_cost": cost,
        "ratios": measured,
        "goals": run.score(measured, cost),
    }
    text = run.markdown(report)
    assert "Machine: Test CPU, 2 CPUs, Linux 6, Python 3.11.7" in text
    assert "onnxruntime 1.32.0" in text and "Goals (some goals FAIL)" in text
    records = next(line for line in text.splitlines() if "`rows_1000_vs_reference`" in line)
    assert records.startswith("| 1,000 rows, records, rows/s ÷ FastAPI records | ")
    assert (
        "| 16/64 | ≥ 1.3 | 4.00 / 4.00 **pass** | 4.00 / 4.00 **pass** | 4.00 / 1.20 **FAIL** |"
        in records
    )
    fastapi = next(
        line
        for line in text.splitlines()
        if "`rps_1row_vs_reference`" in line and "÷ FastAPI" in line
    )
    assert "| ≥ 3 or ≥ 1.5 |" in fastapi and "4.00 / 4.00 **pass** (≥ 1.5)" in fastapi
    assert "Drift signals' cost reported (on against off): **pass**" in text
    assert "| random_forest | rps_1row_vs_mlserver | 6.00 | 6.00 | 6.00 |" in text


def test_a_cell_with_errors_fails_every_goal_it_feeds_whatever_its_figures() -> None:
    results = full_results()
    for r in results:
        if r["family"] == "logistic_regression" and r["workload"] == "predict-1":
            r["errors"] = 3
    goals = goals_of(results)["families"]["logistic_regression"]
    failed = {key for key, entry in goals.items() if not entry["passed"]}
    assert failed == {"rps_1row_vs_fastapi", "cpu_1row_vs_floor"}


def test_answers_that_differ_in_a_label_or_beyond_the_tolerance_disagree() -> None:
    stack = (["benign", "malignant"], [0.25, 0.75, 0.9, 0.1])
    assert run.compare(stack, (["benign", "malignant"], [0.25, 0.75, 0.9 + 5e-7, 0.1])) is None
    assert run.compare(stack, (["benign", "benign"], stack[1])) == (
        "labels ['benign', 'malignant'] (stack) against ['benign', 'benign'] (reference)"
    )
    off = run.compare(stack, (stack[0], [0.25, 0.75, 0.9 + 2e-6, 0.1]))
    assert off is not None and off.startswith("probabilities differ by up to 2e-06")


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


def test_a_server_that_ignores_its_stop_signal_is_killed_with_its_children() -> None:
    stubborn = (
        "import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "subprocess.Popen([sys.executable, '-c', 'import signal, time; "
        "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)']); "
        "print('up', flush=True); time.sleep(60)"
    )
    process = subprocess.Popen([sys.executable, "-c", stubborn], stdout=subprocess.PIPE)
    assert process.stdout is not None
    with process.stdout:
        assert process.stdout.readline() == b"up\n"
    (child,) = [pid for pid in run.process_tree(process.pid) if pid != process.pid]
    run.stop_tree(process, signal.SIGTERM, grace=0.5)
    assert process.returncode == -signal.SIGKILL
    for _ in range(50):  # the child, reparented, is reaped by init
        if not Path(f"/proc/{child}").exists() or "Z" in stat_state(child):
            break
        time.sleep(0.1)
    assert not Path(f"/proc/{child}").exists() or "Z" in stat_state(child)


def stat_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "Z"


def test_the_cost_of_the_drift_signals_is_the_stack_on_against_off_in_the_same_run() -> None:
    results = [r for r in full_results() if r["target"] != run.MONITORING_OFF]
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
    assert set(run.ratios(results)) == set(models.FAMILIES)  # the cost cells are no ratio
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
        "monitoring_cost": cost,
        "ratios": {},
        "goals": {},
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
