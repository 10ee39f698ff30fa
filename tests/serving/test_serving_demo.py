"""`make demo-serving` and `make serve`'s runner, against the tiny model."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from conftest import need_nginx
from serving_testkit import TinyModel

from devstack import demo
from devstack.stack import free_port
from serving import readiness

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def start_runner(model_dir: Path, port: int, stderr: int) -> subprocess.Popen[str]:
    """`make serve`'s runner (``python -m devstack.stack``) in the background."""
    command = ["-m", "devstack.stack", "--model-dir", str(model_dir), "--port", str(port)]
    return subprocess.Popen(
        [sys.executable, *command],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )


def wait_ready(runner: subprocess.Popen[str], port: int) -> None:
    """Wait until the runner's stack on PORT answers its readiness probe; ``NotReadyError`` (the
    test fails with it) after 60 s, or at once if the runner exits."""
    readiness.wait_ready(
        f"http://127.0.0.1:{port}/v2/health/ready",
        60,
        "make serve's runner",
        exited=readiness.first_exit({"the runner": runner}),
    )


def test_demo_prints_the_answer_and_its_provenance(
    tiny_model: TinyModel, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    need_nginx()
    env_file = tmp_path / "model.env"
    env_file.write_text(
        "MODELOPS_MODEL_DIR=/elsewhere\nMODELOPS_MODEL_VERSION=v0.0.7\nMODELOPS_MODEL_STAGE=dev\n"
        "MODELOPS_GIT_COMMIT=" + "a" * 40 + "\n"
    )
    assert demo.main(["--model-dir", str(tiny_model.directory), "--env-file", str(env_file)]) == 0
    out = capsys.readouterr().out
    assert "serving: label malignant" in out or "serving: label benign" in out
    for line in (
        "version=v0.0.7",
        "stage=dev",
        "git_commit=" + "a" * 40,
        "model_sha256=" + tiny_model.metadata["model_sha256"],
    ):
        assert line in out
    assert "stack stopped" in out


def test_demo_whose_stack_does_not_come_up_prints_one_error_line_and_the_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    need_nginx()
    from serving_testkit import build_model

    built = build_model(tmp_path / "m")
    with (built.directory / built.metadata["model_file"]).open("ab") as handle:
        handle.write(b"\0")  # a tampered model: uWSGI refuses it and exits
    assert demo.main(["--model-dir", str(built.directory)]) == 1
    first, *rest = capsys.readouterr().err.splitlines()
    assert first.startswith("error: the serving stack at http://127.0.0.1:")
    assert first.endswith("/v2/health/ready: uWSGI exited with status 1 before it was ready")
    assert "--- uwsgi.log" in rest and any("sha256 mismatch" in line for line in rest)


def test_demo_without_a_model_says_what_to_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert demo.main(["--model-dir", str(tmp_path)]) == 1
    assert "run `make demo-training` first" in capsys.readouterr().err


def test_serve_runs_in_the_foreground_and_ctrl_c_stops_both(tiny_model: TinyModel) -> None:
    need_nginx()
    port = free_port()
    runner = start_runner(tiny_model.directory, port, stderr=subprocess.PIPE)
    try:
        wait_ready(runner, port)
        os.kill(runner.pid, signal.SIGINT)  # what Ctrl-C sends
        _, err = runner.communicate(timeout=30)
    finally:
        if runner.poll() is None:
            runner.terminate()  # the runner stops its stack gracefully on SIGTERM too
            runner.communicate(timeout=30)
    assert runner.returncode == 0, err
    assert "stopped: {'nginx': 0, 'uwsgi': 0}" in err
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/v2/health/live", timeout=1)


def _servers_for(model_dir: Path) -> list[int]:
    """PIDs of processes started for ``model_dir`` (by their environment)."""
    needle = f"MODELOPS_MODEL_DIR={model_dir.resolve()}".encode()
    pids = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if needle in environ.read_bytes().split(b"\0"):
                pids.append(int(environ.parent.name))
        except OSError:
            continue
    return pids


def test_servers_die_with_a_killed_runner(tmp_path: Path) -> None:
    need_nginx()
    from serving_testkit import build_model

    built = build_model(tmp_path / "m")
    port = free_port()
    runner = start_runner(built.directory, port, stderr=subprocess.DEVNULL)
    assert runner.stdout is not None
    announced = runner.stdout.readline()  # "serving ... (logs in <run dir>); Ctrl-C stops"
    run_dir = Path(announced.split("(logs in ", 1)[1].split(")", 1)[0])
    wait_ready(runner, port)
    servers = [pid for pid in _servers_for(built.directory) if pid != runner.pid]
    assert servers, "uWSGI and Nginx run"
    runner.kill()
    runner.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _servers_for(built.directory):
        time.sleep(0.2)
    runner.stdout.close()
    assert _servers_for(built.directory) == [], "no orphaned uWSGI or Nginx"
    shutil.rmtree(run_dir)  # the killed runner could not remove it
