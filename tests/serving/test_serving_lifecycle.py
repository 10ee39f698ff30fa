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
    HANG_SENTINEL,
    LOAD_SECONDS,
    SLOW_SECONDS,
    SLOW_SENTINEL,
    HangingModel,
    SlowLoadingModel,
    SlowModel,
    TinyModel,
    build_model,
)

from devstack.stack import NGINX_START, UWSGI_PRESTOP, Stack
from serving.readiness import NotReadyError

pytestmark = pytest.mark.e2e
GRACE_SECONDS = 15.0
# Nginx's stop delay in these tests (the chart's is nginx.stopDelaySeconds, 5 s)
STOP_DELAY = 1.0


class Load:
    """Threads posting one-row predictions in a loop over keep-alive sessions, recording each
    outcome: (start time, status or exception name, the answer's Connection header).

    ``remove_endpoint()`` plays the Service dropping a terminating pod: the threads start no
    new request (a request under way goes on); in a cluster they would go to another pod."""

    def __init__(self, url: str, body: dict[str, Any], threads: int = 4) -> None:
        self.url, self.body = url, body
        self.results: list[tuple[float, int | str, str]] = []
        self._stop = threading.Event()
        self._removed = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        self._lock = threading.Lock()

    def _run(self) -> None:
        with requests.Session() as session:
            while not self._stop.is_set() and not self._removed.is_set():
                started = time.monotonic()
                connection = ""
                try:
                    response = session.post(self.url + "/predict", json=self.body, timeout=10)
                    outcome: int | str = response.status_code
                    connection = response.headers.get("Connection", "")
                except requests.RequestException as exc:
                    outcome = type(exc).__name__
                    session.close()
                with self._lock:
                    self.results.append((started, outcome, connection))

    def remove_endpoint(self) -> None:
        self._removed.set()

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
    outcomes = [outcome for _, outcome, _ in load.results]
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
        outcomes = [outcome for _, outcome, _ in load.results]
        assert len(outcomes) > 400 and set(outcomes) == {200}, set(outcomes)
    finally:
        stack.stop()
        stack.cleanup()


def test_a_pod_stop_under_load_fails_no_request(tmp_path: Path) -> None:
    """The pod's stop, played as the kubelet plays it (Stack.drain: both preStop hooks of
    charts/model at once, then each container's SIGTERM), under load on keep-alive connections
    and with a slow request in flight: every request gets its answer.

    While Nginx's stop delay runs, every answer says "Connection: close", so each client leaves
    its connection after its answer; the Service then drops the pod (``remove_endpoint``, a
    quarter into the delay, well before Nginx closes its listener); Nginx stops gracefully and
    waits for the slow request; uWSGI gets its SIGTERM only once Nginx has exited (its lock,
    uwsgi-prestop.sh)."""
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

        worker = threading.Thread(target=slow_request)
        with Load(stack.url, {"instances": [slow.record(1)]}, threads=4) as load:
            time.sleep(1.0)
            worker.start()
            time.sleep(0.3)  # the slow request is inside a worker, and outlasts the stop delay
            signalled = time.monotonic()
            removal = threading.Timer(STOP_DELAY / 4, load.remove_endpoint)
            removal.start()
            codes = stack.drain(STOP_DELAY, timeout=GRACE_SECONDS)
            removal.join()
            worker.join(5)
        assert codes == {"nginx": 0, "uwsgi": 0}
        assert slow_result.get("status") == 200, slow_result
        assert slow_result["body"]["labels"][0] in ("malignant", "benign")
        outcomes = [outcome for _, outcome, _ in load.results]
        assert outcomes.count(200) > 50
        assert [o for o in outcomes if o != 200] == [], "a request failed during the stop"
        during = [connection for started, _, connection in load.results if started > signalled]
        assert during and during[-1] == "close", "clients were told to leave while draining"
        uwsgi_log = stack.uwsgi_log.read_text()
        assert "graceful shutdown triggered" in uwsgi_log
    finally:
        stack.stop()
        stack.cleanup()


def test_sigterm_to_uwsgi_alone_finishes_the_request_in_flight(tmp_path: Path) -> None:
    """The fallback when Nginx never says it stopped (uwsgi-prestop.sh gives up): uWSGI's own
    graceful shutdown still answers what a worker is running."""
    slow = build_model(tmp_path / "slow", estimator=SlowModel())
    stack = start_stack(slow.directory)
    try:
        slow_row = slow.record(0)
        slow_row[slow.features[0]] = SLOW_SENTINEL
        result: dict[str, Any] = {}

        def slow_request() -> None:
            response = requests.post(
                stack.url + "/predict", json={"instances": [slow_row]}, timeout=30
            )
            result["status"] = response.status_code

        worker = threading.Thread(target=slow_request)
        worker.start()
        time.sleep(0.5)  # the slow request is now inside a worker
        assert stack.uwsgi is not None
        signalled = time.monotonic()
        stack.uwsgi.send_signal(signal.SIGTERM)
        code = stack.uwsgi.wait(GRACE_SECONDS)
        stopped = time.monotonic() - signalled
        worker.join(5)
        assert result.get("status") == 200, result
        assert code == 0
        assert stopped >= SLOW_SECONDS - 0.6, "uWSGI waited for the in-flight request"
    finally:
        stack.stop()
        stack.cleanup()


def test_a_hung_request_is_killed_by_harakiri_and_its_worker_replaced(tmp_path: Path) -> None:
    """harakiri (20 s in uwsgi.ini, lowered here through UWSGI_HARAKIRI as a pod could) kills a
    worker whose request does not end: the client gets Nginx's JSON 502, the master forks a
    fresh worker, and the stack goes on answering."""
    hanging = build_model(tmp_path / "hanging", estimator=HangingModel())
    stack = start_stack(hanging.directory, UWSGI_HARAKIRI="2")
    try:
        before = wait_for_workers(stack, 2)
        row = hanging.record(0)
        row[hanging.features[0]] = HANG_SENTINEL
        response = requests.post(stack.url + "/predict", json={"instances": [row]}, timeout=30)
        assert response.status_code == 502, response.text
        assert response.json()["code"] == "bad_gateway"
        log = stack.uwsgi_log.read_text()
        assert "HARAKIRI ON WORKER" in log, log[-2000:]
        after = wait_for_workers(stack, 2)
        while set(after) == set(before):  # the respawn follows the kill within the master's cycle
            time.sleep(0.1)
            after = wait_for_workers(stack, 2)
        assert len(after) == 2 and len(set(before) - set(after)) == 1, (before, after)
        for row_index in range(1, 5):
            ok = requests.post(
                stack.url + "/predict", json={"instances": [hanging.record(row_index)]}, timeout=10
            )
            assert ok.status_code == 200
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
    with (built.directory / built.metadata["model_file"]).open("ab") as handle:
        handle.write(b"\0")
    _, line = _refused(built.directory)
    assert "sha256 mismatch" in line and built.metadata["model_sha256"] in line


def test_pinned_checksum_and_missing_model_refuse_to_start(
    tmp_path: Path, tiny_model: TinyModel
) -> None:
    _, line = _refused(tiny_model.directory, MODELOPS_MODEL_SHA256="f" * 64)
    assert "the pin (MODELOPS_MODEL_SHA256) is ffff" in line
    _, line = _refused(tmp_path / "absent")
    assert "model metadata not found" in line


def _lock_is_free(lock: Path) -> bool:
    return subprocess.run(["flock", "-n", str(lock), "true"], check=False).returncode == 0


def test_worker_count_from_env_and_the_nginx_prestop_hook(tiny_model: TinyModel) -> None:
    stack = start_stack(tiny_model.directory, UWSGI_PROCESSES="3")
    try:
        assert len(wait_for_workers(stack, 3)) == 3
        assert stack.nginx is not None and stack.run_dir is not None
        lock = stack.run_dir / "nginx.lock"
        assert not _lock_is_free(lock), "Nginx holds its lock beside the socket while it runs"
        env = {
            **os.environ,
            "NGINX_PREFIX": str(stack.run_dir / "nginx") + "/",
            "MODELOPS_SOCKET": str(stack.socket_path),
            "NGINX_STOP_DELAY": "0",
        }
        hook = subprocess.run(
            ["sh", str(NGINX_START), "stop"], env=env, capture_output=True, text=True, timeout=30
        )
        assert hook.returncode == 0, hook.stderr
        assert stack.nginx.wait(5) == 0, "the hook returns once Nginx has exited"
        assert _lock_is_free(lock), "and the lock went with it"
        with pytest.raises(requests.ConnectionError):
            requests.get(stack.url + "/v2/health/live", timeout=2)
    finally:
        stack.stop()
        stack.cleanup()


def test_the_app_prestop_hook_waits_for_nginx_and_gives_up_after_its_limit(
    tiny_model: TinyModel,
) -> None:
    """uwsgi-prestop.sh returns once it can take Nginx's lock; while Nginx runs it gives up
    after MODELOPS_PRESTOP_WAIT seconds, saying so, and still succeeds (uWSGI stops anyway)."""
    stack = start_stack(tiny_model.directory)
    try:
        assert stack.nginx is not None
        env = {**os.environ, "MODELOPS_SOCKET": str(stack.socket_path)}
        waited = subprocess.run(
            ["sh", str(UWSGI_PRESTOP)],
            env={**env, "MODELOPS_PRESTOP_WAIT": "1"},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert waited.returncode == 0
        assert waited.stderr == (
            "uwsgi-prestop.sh: Nginx still runs after 1 s; uWSGI stops anyway\n"
        ), "Nginx was running: the hook waited its limit"
        stack.nginx.send_signal(signal.SIGQUIT)
        assert stack.nginx.wait(10) == 0
        done = subprocess.run(
            ["sh", str(UWSGI_PRESTOP)], env=env, capture_output=True, text=True, timeout=30
        )
        assert (done.returncode, done.stderr) == (0, ""), "Nginx gone: the hook returns at once"
        alone = subprocess.run(
            ["sh", str(UWSGI_PRESTOP)],
            env={**env, "MODELOPS_SOCKET": str(stack.run_dir / "elsewhere" / "uwsgi.sock")},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert (alone.returncode, alone.stderr) == (0, ""), "no Nginx ever: nothing to wait for"
    finally:
        stack.stop()
        stack.cleanup()
