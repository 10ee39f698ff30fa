"""The uWSGI entry point's start-up checks, and how the metrics directory reaches the workers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from serving.metrics import shared_directory_problem
from serving.monitoring import _Counts

ROOT = Path(__file__).resolve().parents[2]


def test_several_workers_without_a_metrics_directory_are_refused_in_one_line() -> None:
    problem = shared_directory_problem(2, None)
    assert problem is not None and problem.startswith("PROMETHEUS_MULTIPROC_DIR must be set for 2")
    assert "\n" not in problem
    assert shared_directory_problem(1, None) is None
    assert shared_directory_problem(2, "/tmp/metrics") is None


def test_uwsgi_ini_sets_no_environment_variable() -> None:
    """pyuwsgi starts Python before it reads uwsgi.ini: an ``env =`` option sets the C
    environment after os.environ was copied, so the app never sees it. Such settings come from
    the image's ENV and the chart's env instead."""
    lines = (ROOT / "serving" / "config" / "uwsgi.ini").read_text().splitlines()
    assert [line for line in lines if line.replace(" ", "").startswith("env=")] == []
    dockerfile = (ROOT / "serving" / "Dockerfile").read_text()
    assert "PROMETHEUS_MULTIPROC_DIR=/tmp/modelops-metrics" in dockerfile
    chart = (ROOT / "charts" / "model" / "templates" / "deployment.yaml").read_text()
    assert "- name: PROMETHEUS_MULTIPROC_DIR" in chart


def test_counts_without_a_directory_go_on_in_a_forked_process() -> None:
    counts = _Counts(4, None, "test")
    counts.array()[1] += 1
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: count on, report, leave at once
        try:
            counts.array()[2] += 1
            os.write(write, counts.totals().tobytes())
        finally:
            os._exit(0)
    os.close(write)
    child = os.read(read, 64)
    os.waitpid(pid, 0)
    assert np.frombuffer(child, dtype=np.float64).tolist() == [0.0, 1.0, 1.0, 0.0]
    assert counts.totals().tolist() == [0.0, 1.0, 0.0, 0.0]
