"""Process behaviour of the real stack: a killed worker, recycling and SIGTERM under load, a
tampered model."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import HERE, PROVENANCE, need_nginx, start_stack, wait_until_loading
from serving_testkit import (
    LOAD_SECONDS,
    SLOW_SECONDS,
    SLOW_SENTINEL,
    SlowLoadingModel,
    SlowModel,
    TinyModel,
    build_model,
)

from devstack.stack import NGINX_START, Stack
from serving.readiness import NotReadyError

pytestmark = pytest.mark.e2e
GRACE_SECONDS = 15.0


class Load:
    """Threads posting one-row predictions in a loop, recording each outcome."""

    def __init__(self, url: str, body: dict[str, Any], threads: int = 4) -> None:
        self.url, self.body = url, body
        self.results: list[tuple[float, int | str]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        self._lock = threading.Lock()

    def _run(self) -> None:
        with requests.Session() as session:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    outcome: int | str = session.post(
                        self.url + "/predict", json=self.body, timeout=10
                    ).status_code
                except requests.RequestException as exc:
                    outcome = type(exc).__name__
                    session.close()
                with self._lock:
                    self.results.append((started, outcome))

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)


def wait_for_workers(stack: Stack, count: int, timeout: float = 15) -> list[int]:
    """The worker PIDs once ``count`` are up (readiness needs only one of them)."""
    deadline = time.monotonic() + timeout
    while True:
        pids = stack.worker_pids()
        if len(pids) == count or time.monotonic() > deadline:
            return pids
        time.sleep(0.1)


@pytest.fixture
def private_stack(tiny_model: TinyModel) -> Iterator[Stack]:
    stack = start_stack(tiny_model.directory)
    yield stack
    stack.stop()
    stack.cleanup()


def test_a_killed_worker_is_respawned_and_requests_keep_succeeding(
    private_stack: Stack, tiny_model: TinyModel
) -> None:
    before = wait_for_workers(private_stack, 2)
    assert len(before) == 2
    with Load(private_stack.url, {"instances": [tiny_model.record()]}) as load:
        time.sleep(1.0)
        os.kill(before[0], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            after = private_stack.worker_pids()
            if len(after) == 2 and before[0] not in after:
                break
            time.sleep(0.1)
        time.sleep(1.0)
    assert before[0] not in after and len(after) == 2, "the master respawns the worker"
    outcomes = [outcome for _, outcome in load.results]
    failures = [outcome for outcome in outcomes if outcome != 200]
    assert outcomes.count(200) > 50
    assert len(failures) <= 1, f"only the request in flight may fail: {failures}"
    assert "respawned uwsgi worker" in private_stack.uwsgi_log.read_text().lower()


def test_workers_recycle_under_load_without_failing_a_request(tiny_model: TinyModel) -> None:
    """max-requests (lowered here through the environment, as a pod could) recycles each worker
    gracefully: it finishes its request, exits, and the master forks a fresh one."""
    stack = start_stack(
        tiny_model.directory,
        UWSGI_MAX_REQUESTS="150",
        UWSGI_MAX_REQUESTS_DELTA="50",
        UWSGI_MIN_WORKER_LIFETIME="1",
    )
    try:
        first = wait_for_workers(stack, 2)
        with Load(stack.url, {"instances": [tiny_model.record()]}) as load:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if stack.uwsgi_log.read_text().count("is done. Seeya!") >= 3:
                    break
                time.sleep(0.2)
        log = stack.uwsgi_log.read_text()
        assert log.count("is done. Seeya!") >= 3, "workers recycle after max-requests"
        assert not set(first) & set(wait_for_workers(stack, 2)), "both workers were replaced"
        outcomes = [outcome for _, outcome in load.results]
        assert len(outcomes) > 400 and set(outcomes) == {200}, set(outcomes)
    finally:
        stack.stop()
        stack.cleanup()


def test_sigterm_under_load_drains_in_flight_requests(tmp_path: Path) -> None:
    slow = build_model(tmp_path / "slow", estimator=SlowModel())
    stack = start_stack(slow.directory)
    try:
        slow_row = slow.record(0)
        slow_row[slow.features[0]] = SLOW_SENTINEL
        slow_result: dict[str, Any] = {}

        def slow_request() -> None:
            response = requests.post(
                stack.url + "/predict", json={"instances": [slow_row]}, timeout=30
            )
            slow_result["status"] = response.status_code
            slow_result["body"] = response.json()

        with Load(stack.url, {"instances": [slow.record(1)]}, threads=2) as load:
            worker = threading.Thread(target=slow_request)
            worker.start()
            time.sleep(0.5)  # the slow request is now inside a worker
            signalled = time.monotonic()
            stack.signal_stop()  # SIGTERM to the uWSGI master, SIGQUIT to Nginx (the pod's stop)
            assert stack.uwsgi is not None and stack.nginx is not None
            uwsgi_code = stack.uwsgi.wait(GRACE_SECONDS)
            nginx_code = stack.nginx.wait(GRACE_SECONDS)
            stopped = time.monotonic() - signalled
            worker.join(5)
        assert slow_result.get("status") == 200, slow_result
        assert slow_result["body"]["labels"][0] in ("malignant", "benign")
        assert stopped >= SLOW_SECONDS - 0.6, "uWSGI waited for the in-flight request"
        assert stopped < GRACE_SECONDS
        assert (uwsgi_code, nginx_code) == (0, 0)
        before_signal = [outcome for started, outcome in load.results if started < signalled - 0.2]
        assert before_signal and set(before_signal) == {200}
        answered = {outcome for _, outcome in load.results if isinstance(outcome, int)}
        assert answered <= {200, 502}, answered
        assert "graceful shutdown triggered" in stack.uwsgi_log.read_text()
    finally:
        stack.stop()
        stack.cleanup()


def _refused(model_dir: Path, **env: str) -> tuple[str, str]:
    with pytest.raises(NotReadyError) as raised:
        start_stack(model_dir, **env)
    message = str(raised.value)
    assert "uWSGI exited with status 1" in message
    assert "Traceback" not in message
    errors = [line for line in message.splitlines() if '"level":"error"' in line]
    assert len(errors) == 1, message
    return message, errors[0]


def test_sigterm_while_the_model_loads_stops_at_once(tmp_path: Path) -> None:
    """Before the master loop nothing is in flight: SIGTERM ends start-up (uWSGI 2.0 would
    otherwise drop it and go on to serve)."""
    need_nginx()
    slow = build_model(tmp_path / "slow-load", estimator=SlowLoadingModel())
    stack = Stack(slow.directory, env={"PYTHONPATH": str(HERE), **PROVENANCE}).spawn()
    try:
        assert stack.uwsgi is not None
        wait_until_loading(stack)
        stack.uwsgi.send_signal(signal.SIGTERM)
        try:
            code = stack.uwsgi.wait(LOAD_SECONDS / 4)
        except subprocess.TimeoutExpired:
            pytest.fail("uWSGI ignored SIGTERM while loading the model")
        assert code != 0, "start-up was cut short, not completed"
        assert "model_loaded" not in stack.uwsgi_log.read_text()
        assert not stack.socket_path.exists(), "vacuum removed the socket"
    finally:
        stack.stop()
        stack.cleanup()


def test_tampered_model_refuses_to_start_naming_the_checksum(tmp_path: Path) -> None:
    built = build_model(tmp_path / "m")
    with (built.directory / "model.pkl").open("ab") as handle:
        handle.write(b"\0")
    _, line = _refused(built.directory)
    assert "model checksum mismatch" in line and built.metadata["model_sha256"] in line


def test_pinned_checksum_and_missing_model_refuse_to_start(
    tmp_path: Path, tiny_model: TinyModel
) -> None:
    _, line = _refused(tiny_model.directory, MODELOPS_MODEL_SHA256="f" * 64)
    assert "MODELOPS_MODEL_SHA256 pins ffff" in line
    _, line = _refused(tmp_path / "absent")
    assert "model metadata not found" in line


def test_worker_count_from_env_and_nginx_prestop_hook(tiny_model: TinyModel) -> None:
    stack = start_stack(tiny_model.directory, UWSGI_PROCESSES="3")
    try:
        assert len(wait_for_workers(stack, 3)) == 3
        assert stack.nginx is not None and stack.run_dir is not None
        env = {
            **os.environ,
            "NGINX_PREFIX": str(stack.run_dir / "nginx") + "/",
            "NGINX_STOP_DELAY": "0",
        }
        hook = subprocess.run(
            ["sh", str(NGINX_START), "stop"], env=env, capture_output=True, text=True, timeout=30
        )
        assert hook.returncode == 0, hook.stderr
        assert stack.nginx.wait(5) == 0
        with pytest.raises(requests.ConnectionError):
            requests.get(stack.url + "/v2/health/live", timeout=2)
    finally:
        stack.stop()
        stack.cleanup()
