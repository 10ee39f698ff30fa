"""The benchmark's cell selection (`python -m bench.run --only`) and its reference servers'
start-up: no wrk run."""

from __future__ import annotations

import shutil
import signal
import sys
from pathlib import Path

import pytest
from serving_testkit import TinyModel

from bench import run
from devstack.stack import free_port
from serving.readiness import NotReadyError


def test_only_refuses_an_unknown_cell_in_one_line(
    tiny_model: TinyModel, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if shutil.which("wrk") is None:
        pytest.skip("wrk not installed: run `make serving-prereqs`")
    argv = ["--model-dir", str(tiny_model.directory), "--out", str(tmp_path / "out")]
    assert run.main([*argv, "--only", "stack:predict-1000,stack:nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("unknown cell 'stack:nope' in --only")
    assert "stack:predict-1000" in err and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_partial_report_has_no_ratio_table() -> None:
    row = {
        "target": "stack",
        "workload": "predict-1000",
        "concurrency": 16,
        "rps": 400.0,
        "rows_per_s": 400000.0,
        "p50_ms": 39.0,
        "p99_ms": 55.0,
        "cpu_us_per_request": 4300.0,
        "errors": 0,
    }
    report = {
        "started": "2026-11-26T19:00:00Z",
        "duration_s": 5,
        "machine": {"cpus": 2, "loadavg_before": "1 1 1", "loadavg_after": "2 2 2"},
        "results": [row],
        "ratios": {},
    }
    text = run.markdown(report)
    assert "| stack | predict-1000 | 16 | 400 | 400000 | 39.00 | 55.00 | 4300 | 0 |" in text
    assert "no ratios" in text and "| ratio |" not in text


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
