"""Through real Nginx and uWSGI on loopback: endpoints, Nginx's own errors, logs, metrics."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
import requests
from conftest import PROVENANCE, start_stack
from serving_testkit import (
    HANG_SENTINEL,
    MODEL_NAME,
    RAISE_SENTINEL,
    FailingModel,
    TinyModel,
    build_model,
)

from devstack import stack as stack_module
from devstack.stack import Stack, group_members
from serving.errors import CODES
from serving.pipeline import INTERNAL
from serving.provenance import HEADER, provenance_id

pytestmark = pytest.mark.e2e
ERROR_KEYS = {"error", "code", "status", "field", "request_id"}
#: What the short-timeout stacks below set NGINX_CLIENT_TIMEOUT and NGINX_UWSGI_TIMEOUT to (s),
#: in place of the config's 10 s and 30 s.
CLIENT_TIMEOUT = 1
UPSTREAM_TIMEOUT = 2


def assert_error(response: requests.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert set(body) == ERROR_KEYS and body["status"] == status
    assert body["request_id"] == response.headers["X-Request-ID"]
    return body


def test_every_endpoint_answers_through_nginx(stack: Stack, tiny_model: TinyModel) -> None:
    url = stack.url
    assert requests.get(f"{url}/v2/health/live", timeout=5).json() == {"live": True}
    assert requests.get(f"{url}/v2/health/ready", timeout=5).json() == {"ready": True}
    assert requests.get(f"{url}/v2", timeout=5).json()["extensions"] == []
    meta = requests.get(f"{url}/v2/models/{MODEL_NAME}", timeout=5).json()
    assert meta["parameters"]["git_commit"] == "0123456789abcdef0123456789abcdef01234567"
    assert meta["parameters"]["image_digest"] == "sha256:" + "d16e5700" * 8
    assert meta["parameters"]["version"] == "v1.2.0"
    ready = requests.get(f"{url}/v2/models/{MODEL_NAME}/ready", timeout=5)
    assert ready.json() == {"name": MODEL_NAME, "ready": True}
    assert requests.get(f"{url}/openapi.json", timeout=5).json()["openapi"].startswith("3.")

    response = requests.post(
        f"{url}/predict", json={"instances": [tiny_model.record(3)]}, timeout=5
    )
    assert response.status_code == 200
    assert response.headers["Server"] == "nginx"  # server_tokens off: no version
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])
    assert response.headers[HEADER] == meta["parameters"]["provenance_id"]
    assert response.headers[HEADER] == provenance_id(meta["parameters"])
    assert response.json()["model_version"] == "v1.2.0"
    expected = tiny_model.pipeline.predict_proba(tiny_model.x_test[3:4])
    np.testing.assert_allclose(response.json()["probabilities"], expected, atol=1e-12)


def test_v2_infer_round_trip(stack: Stack, tiny_model: TinyModel) -> None:
    x = tiny_model.x_test[:8]
    request = {
        "id": "round-trip",
        "inputs": [
            {"name": "input-0", "shape": [8, 30], "datatype": "FP64", "data": x.ravel().tolist()}
        ],
    }
    response = requests.post(f"{stack.url}/v2/models/{MODEL_NAME}/infer", json=request, timeout=5)
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == "round-trip" and body["model_name"] == MODEL_NAME
    proba = next(o for o in body["outputs"] if o["name"] == "predict_proba")
    got = np.reshape(proba["data"], proba["shape"])
    np.testing.assert_allclose(got, tiny_model.pipeline.predict_proba(x), atol=1e-12)
    meta = requests.get(f"{stack.url}/v2/models/{MODEL_NAME}", timeout=5).json()
    assert meta["parameters"]["model_sha256"] == tiny_model.metadata["model_sha256"]
    assert response.headers[HEADER] == provenance_id(meta["parameters"])


def test_nginx_refuses_large_bodies_and_other_methods_as_json(stack: Stack) -> None:
    big = b'{"instances": [' + b" " * (10 * 1024 * 1024 + 1) + b"]}"
    body = assert_error(requests.post(f"{stack.url}/predict", data=big, timeout=30), 413)
    assert body["code"] == "payload_too_large"
    for method in ("PUT", "DELETE", "PATCH", "OPTIONS"):
        response = requests.request(method, f"{stack.url}/predict", timeout=5)
        assert assert_error(response, 405)["code"] == "method_not_allowed"
        assert response.headers["Allow"] == "GET, HEAD, POST"


def test_app_errors_pass_through_nginx(stack: Stack, tiny_model: TinyModel) -> None:
    url = stack.url
    assert_error(requests.post(f"{url}/predict", data=b"{", timeout=5), 400)
    row = tiny_model.record()
    row.pop("mean_radius")
    body = assert_error(requests.post(f"{url}/predict", json={"instances": [row]}, timeout=5), 422)
    assert body["field"] == "instances[0].mean_radius"
    assert_error(requests.get(f"{url}/predict", timeout=5), 405)
    assert_error(requests.get(f"{url}/nowhere", timeout=5), 404)
    assert_error(requests.get(f"{url}/v2/models/other/ready", timeout=5), 404)
    too_many = {"instances": [tiny_model.record()] * 10_001}
    assert (
        assert_error(requests.post(f"{url}/predict", json=too_many, timeout=30), 413)["code"]
        == "too_many_rows"
    )


def _logged(path: Any, request_id: str) -> list[dict[str, Any]]:
    lines = []
    for line in path.read_text().splitlines():
        if request_id in line and line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def test_one_json_log_line_per_request_with_the_request_id(
    stack: Stack, tiny_model: TinyModel
) -> None:
    request_id = f"trace-{time.monotonic_ns()}"
    response = requests.post(
        f"{stack.url}/predict",
        json={"instances": [tiny_model.record()]},
        headers={"X-Request-ID": request_id},
        timeout=5,
    )
    assert response.headers["X-Request-ID"] == request_id
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not _logged(stack.nginx_log, request_id):
        time.sleep(0.05)
    (app_line,) = _logged(stack.uwsgi_log, request_id)
    assert app_line["event"] == "request" and app_line["status"] == 200
    assert app_line["path"] == "/predict" and app_line["duration_ms"] >= 0
    (nginx_line,) = _logged(stack.nginx_log, request_id)
    assert nginx_line["source"] == "nginx" and nginx_line["status"] == 200
    log_text = stack.uwsgi_log.read_text()
    assert "Traceback" not in log_text


def _metric(text: str, prefix: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)
    )


def _request_pids(stack: Stack, skip: int = 0) -> set[int]:
    """PIDs of the workers that logged a request, after the first ``skip`` bytes of the log."""
    return {
        json.loads(line)["pid"]
        for line in stack.uwsgi_log.read_bytes()[skip:].decode().splitlines()
        if line.startswith('{"time"') and '"event":"request"' in line
    }


def test_metrics_are_merged_across_workers(stack: Stack, tiny_model: TinyModel) -> None:
    ok = 'modelops_requests_total{endpoint="/predict",status="200"}'
    before = requests.get(f"{stack.url}/metrics", timeout=5).text
    log_size = stack.uwsgi_log.stat().st_size
    body = {"instances": [tiny_model.record(i) for i in range(3)]}

    def send(_: int) -> int:
        with requests.Session() as session:
            return session.post(f"{stack.url}/predict", json=body, timeout=10).status_code

    sent = 0
    with ThreadPoolExecutor(8) as pool:
        # until both workers have answered some of them (the point of the test)
        while sent < 2000 and len(_request_pids(stack, log_size)) < 2:
            statuses = list(pool.map(send, range(80)))
            assert statuses == [200] * 80
            sent += 80
    assert len(_request_pids(stack, log_size)) >= 2
    after = requests.get(f"{stack.url}/metrics", timeout=5).text
    assert _metric(after, ok) - _metric(before, ok) == sent
    classes = "modelops_predictions_total{"
    assert _metric(after, classes) - _metric(before, classes) == 3 * sent
    assert 'modelops_request_duration_seconds_count{endpoint="/predict"}' in after
    assert "modelops_model_info{" in after


def _raw_exchange(stack: Stack, request: bytes, limit: float = 60) -> bytes:
    """Send REQUEST on one connection and read until Nginx closes it: every byte it answered."""
    with socket.create_connection(("127.0.0.1", stack.port), timeout=limit) as connection:
        connection.sendall(request)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
        return received


def _nginx_status(stack: Stack, request_id: str) -> int:
    """The status Nginx logged for the request whose X-Request-ID is REQUEST_ID."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not _logged(stack.nginx_log, request_id):
        time.sleep(0.05)
    (line,) = _logged(stack.nginx_log, request_id)
    status: int = line["status"]
    return status


def test_nginx_refuses_an_over_long_request_line_and_headers_as_json_414(stack: Stack) -> None:
    """8 KiB buffers (large_client_header_buffers): a longer URI is a 414, a header too large a
    494, which the same JSON page answers as 414."""
    long_uri = assert_error(requests.get(f"{stack.url}/v2/{'x' * 9000}", timeout=5), 414)
    assert long_uri["code"] == "uri_too_long"
    huge_header = requests.get(f"{stack.url}/v2", headers={"X-Big": "y" * 9000}, timeout=5)
    assert assert_error(huge_header, 414)["code"] == "uri_too_long"


def test_nginx_answers_a_request_line_it_cannot_parse_with_json_400(stack: Stack) -> None:
    """A request with no URI still gets the JSON page (a named location could not serve it)."""
    answer = _raw_exchange(stack, b"NOT A REQUEST\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), answer[:300]
    assert b"application/json" in head
    error = json.loads(body)
    assert set(error) == ERROR_KEYS and (error["status"], error["code"]) == (400, "bad_request")


def test_nginx_answers_its_own_probes_without_the_app(tiny_model: TinyModel) -> None:
    """/nginx/health/{live,ready} (the Nginx container's probes) are Nginx's alone: they answer
    200 with the app gone, and readiness turns 503 once the preStop hook marks the drain."""
    private = start_stack(tiny_model.directory)
    try:
        assert private.uwsgi is not None and private.run_dir is not None
        os.killpg(private.uwsgi.pid, signal.SIGKILL)
        private.uwsgi.wait(10)
        assert requests.get(f"{private.url}/nginx/health/live", timeout=5).json() == {"live": True}
        ready = requests.get(f"{private.url}/nginx/health/ready", timeout=5)
        assert (ready.status_code, ready.json()) == (200, {"ready": True})
        (private.run_dir / "nginx" / "draining").touch()  # what nginx-start.sh stop does first
        ready = requests.get(f"{private.url}/nginx/health/ready", timeout=5)
        assert (ready.status_code, ready.json()) == (503, {"ready": False})
        assert requests.get(f"{private.url}/nginx/health/live", timeout=5).status_code == 200
    finally:
        private.stop()
        private.cleanup()


def test_nginx_answers_json_502_when_the_app_is_gone(tiny_model: TinyModel) -> None:
    private = start_stack(tiny_model.directory)
    try:
        assert private.uwsgi is not None
        os.killpg(private.uwsgi.pid, signal.SIGKILL)  # master and workers, as an OOM kill would
        private.uwsgi.wait(10)
        assert private.socket_path.exists(), "a killed uWSGI leaves its socket behind"
        body = assert_error(requests.get(f"{private.url}/v2/health/ready", timeout=10), 502)
        assert body["code"] == "bad_gateway"
    finally:
        private.stop()
        private.cleanup()


def test_nginx_answers_json_504_when_the_app_outlasts_its_read_timeout(
    failing_model: TinyModel,
) -> None:
    """Nginx's uwsgi_read_timeout (30 s; NGINX_UWSGI_TIMEOUT shortens it here to 2 s) runs out
    on a request that hangs; harakiri (20 s) normally ends such a request first (a 502,
    tests/serving/test_serving_lifecycle.py): here it is raised above, so Nginx's timeout is
    what the client meets. Stopping the stack with that worker still stuck leaves no process of
    it behind (its master is killed after the timeout, and its workers with it)."""
    private = start_stack(
        failing_model.directory, NGINX_UWSGI_TIMEOUT=f"{UPSTREAM_TIMEOUT}s", UWSGI_HARAKIRI="60"
    )
    assert private.uwsgi is not None
    group = private.uwsgi.pid
    try:
        row = failing_model.record(0)
        row[failing_model.features[0]] = HANG_SENTINEL
        started = time.monotonic()
        response = requests.post(f"{private.url}/predict", json={"instances": [row]}, timeout=60)
        elapsed = time.monotonic() - started
        assert assert_error(response, 504)["code"] == "gateway_timeout"
        assert UPSTREAM_TIMEOUT <= elapsed < UPSTREAM_TIMEOUT + 10, elapsed
    finally:
        private.stop(timeout=2)
        private.cleanup()
    assert group_members(group) == [], "a uWSGI process outlived the stopped stack"


def test_a_request_id_nginx_cannot_write_into_json_is_replaced_by_its_own(stack: Stack) -> None:
    """Nginx's error pages write the request id as it is: a client's id with a quote would make
    them invalid JSON, so Nginx uses its own id instead (a plain one passes through)."""
    response = requests.put(f"{stack.url}/predict", headers={"X-Request-ID": 'a"b'}, timeout=5)
    body = assert_error(response, 405)
    assert re.fullmatch(r"[0-9a-f]{32}", body["request_id"])
    response = requests.put(f"{stack.url}/predict", headers={"X-Request-ID": "a-1.b"}, timeout=5)
    assert assert_error(response, 405)["request_id"] == "a-1.b"


def test_a_stack_finds_nginx_in_sbin_with_a_path_that_lacks_it(
    tiny_model: TinyModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A non-root user's default PATH has no /usr/sbin, where Debian installs nginx: the stack
    looks there after PATH (devstack.stack.server_path), as need_nginx does."""
    path = os.environ["PATH"].split(os.pathsep)
    monkeypatch.setenv("PATH", os.pathsep.join(d for d in path if d not in stack_module.SBIN))
    # the defect's premise: Debian's nginx (make serving-prereqs) is only in an sbin directory
    assert shutil.which("nginx") is None, "nginx outside sbin: this PATH does not lack it"
    assert stack_module.missing_servers() is None
    with Stack(tiny_model.directory, env=PROVENANCE) as running:
        assert requests.get(running.url + "/v2/health/ready", timeout=5).status_code == 200


def test_server_path_appends_only_the_sbin_directories_path_lacks() -> None:
    assert stack_module.server_path("/a:/usr/sbin") == "/a:/usr/sbin:/usr/local/sbin:/sbin"
    assert stack_module.server_path("/usr/local/sbin:/usr/sbin:/sbin") == (
        "/usr/local/sbin:/usr/sbin:/sbin"
    )


# --- the app's own 500 and the client timeouts, on a stack with short timeouts ------------------


@pytest.fixture(scope="module")
def failing_model(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    """A model that raises on RAISE_SENTINEL and hangs on HANG_SENTINEL (serving_testkit)."""
    return build_model(tmp_path_factory.mktemp("failing") / "model", estimator=FailingModel())


@pytest.fixture(scope="module")
def short_timeouts(failing_model: TinyModel) -> Iterator[Stack]:
    """The failing model behind Nginx whose client timeouts are CLIENT_TIMEOUT seconds."""
    private = start_stack(failing_model.directory, NGINX_CLIENT_TIMEOUT=f"{CLIENT_TIMEOUT}s")
    yield private
    private.stop()
    private.cleanup()


def test_the_apps_own_500_reaches_the_client_through_nginx_as_json(
    short_timeouts: Stack, failing_model: TinyModel
) -> None:
    """A model that raises inside a worker: the app's JSON 500 (its own message, not Nginx's
    500 page), the request id in header and body, and one unhandled_error line in uWSGI's log."""
    row = failing_model.record(0)
    row[failing_model.features[0]] = RAISE_SENTINEL
    request_id = f"raises-{time.monotonic_ns()}"
    response = requests.post(
        f"{short_timeouts.url}/predict",
        json={"instances": [row]},
        headers={"X-Request-ID": request_id},
        timeout=10,
    )
    body = assert_error(response, 500)
    assert (body["code"], body["error"], body["field"]) == (CODES[500], INTERNAL, None)
    assert body["request_id"] == request_id
    (logged,) = [
        line for line in _logged(short_timeouts.uwsgi_log, request_id) if line["level"] == "error"
    ]
    assert logged["event"] == "unhandled_error"
    assert logged["error"] == "RuntimeError: FailingModel fails on demand"
    assert _nginx_status(short_timeouts, request_id) == 500
    # the worker lives on: the next request is answered
    assert requests.post(
        f"{short_timeouts.url}/predict", json={"instances": [failing_model.record(1)]}, timeout=10
    ).ok


def _timed_exchange(stack: Stack, request: bytes) -> tuple[bytes, float]:
    started = time.monotonic()
    answer = _raw_exchange(stack, request, limit=30)
    return answer, time.monotonic() - started


def _stalled(kind: str, request_id: str) -> bytes:
    """A request that stops short: in its headers, or in its body."""
    head = (
        "POST /predict HTTP/1.1\r\nHost: model\r\nContent-Type: application/json\r\n"
        f"X-Request-ID: {request_id}\r\nContent-Length: 100\r\n"
    )
    return (head + ("\r\n" + '{"instances"' if kind == "body" else "X-Partial: 1")).encode()


@pytest.mark.parametrize("kind", ["headers", "body"])
def test_a_client_that_stalls_is_cut_off_after_the_client_timeout_with_no_answer(
    short_timeouts: Stack, kind: str
) -> None:
    """client_header_timeout and client_body_timeout (10 s; NGINX_CLIENT_TIMEOUT, 1 s here):
    Nginx never answers its own client timeouts (its 408 closes the connection): the client
    gets no byte at all, neither HTML nor JSON, and the access log says 408. That is why the
    config has no 408 page."""
    request_id = f"stalled-{kind}-{time.monotonic_ns()}"
    answer, elapsed = _timed_exchange(short_timeouts, _stalled(kind, request_id))
    assert answer == b""
    assert CLIENT_TIMEOUT <= elapsed < CLIENT_TIMEOUT + 5, elapsed  # not the 10 s default
    assert _nginx_status(short_timeouts, request_id) == 408


def test_a_connection_that_never_sends_is_closed_after_the_header_timeout_unlogged(
    short_timeouts: Stack,
) -> None:
    """A connection on which no byte ever comes: closed after client_header_timeout, no answer,
    and no access-log line (Nginx has no request to log)."""
    lines = short_timeouts.nginx_log.read_text().count("\n")
    answer, elapsed = _timed_exchange(short_timeouts, b"")
    assert answer == b""
    assert CLIENT_TIMEOUT <= elapsed < CLIENT_TIMEOUT + 5, elapsed  # not the 10 s default
    time.sleep(0.2)
    assert short_timeouts.nginx_log.read_text().count("\n") == lines


def test_the_timeouts_left_unset_are_the_configs_own(tiny_model: TinyModel) -> None:
    """A stack started without NGINX_CLIENT_TIMEOUT or NGINX_UWSGI_TIMEOUT runs Nginx with the
    config's 10 s and 30 s: the pod sets neither."""
    with Stack(tiny_model.directory) as plain:
        assert plain.run_dir is not None
        conf = (plain.run_dir / "nginx" / "nginx.conf").read_text()
    for directive, value in [
        ("client_header_timeout", "10s"),
        ("client_body_timeout", "10s"),
        ("uwsgi_send_timeout", "30s"),
        ("uwsgi_read_timeout", "30s"),
    ]:
        assert f"{directive} {value};" in conf, directive


def test_nginx_error_log_lines_never_overwrite_its_access_log(tiny_model: TinyModel) -> None:
    """Nginx writes its error log to stderr and its access log to /dev/stdout, which it opens
    anew: both land in one file (devstack's nginx.log), which must be opened for appending, or
    the error lines overwrite access-log lines from a stale offset (the seeded fuzz's count of
    logged request ids met that)."""
    private = start_stack(tiny_model.directory)
    try:
        ids = [f"kept-{index}-{time.monotonic_ns()}" for index in range(3)]
        for request_id in ids[:2]:
            requests.get(f"{private.url}/v2", headers={"X-Request-ID": request_id}, timeout=5)
        big = b" " * (10 * 1024 * 1024 + 1)  # Nginx's 413: an error-log line on stderr
        assert requests.post(f"{private.url}/predict", data=big, timeout=30).status_code == 413
        requests.get(f"{private.url}/v2", headers={"X-Request-ID": ids[2]}, timeout=5)
        time.sleep(0.2)
        text = private.nginx_log.read_text(errors="replace")
    finally:
        private.stop()
        private.cleanup()
    assert "client intended to send too large body" in text
    logged = set()
    for line in text.splitlines():
        # each line whole: an access-log line (JSON) or an error-log line (it starts with a date)
        assert line.startswith('{"time"') or re.match(r"\d{4}/\d\d/\d\d ", line), line
        if line.startswith("{"):
            logged.add(json.loads(line)["request_id"])
    assert set(ids) <= logged
