"""serving.readiness, the one wait for a server: against scripted HTTP servers on loopback and
exited processes (unit tier), and the real stack with a model that is slow to load (e2e)."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from conftest import HERE, PROVENANCE, ROOT, need_nginx, start_stack, wait_until_loading
from serving_testkit import LOAD_SECONDS_ENV, LOADING_MARKER, SlowLoadingModel, build_model

from devstack.stack import READY_PATH, Stack, free_port
from serving import readiness
from serving.readiness import NotReadyError

PROBE_TIMEOUT = 0.5  # the scripted servers' tests shorten each probe
HANG_SECONDS = 3 * PROBE_TIMEOUT


class Scripted(http.server.ThreadingHTTPServer):
    """An HTTP server on 127.0.0.1 that answers its GETs by a script, one step a request:
    "hang" (accept, never answer within a probe's timeout), "close" (close without an answer),
    "garbage" (not HTTP), or a status code; after the script, 200. ``served`` lists the steps
    taken, in order."""

    daemon_threads = True

    def __init__(self, script: list[str | int]) -> None:
        self.script = list(script)
        self.served: list[str | int] = []
        self.lock = threading.Lock()
        self.running = False
        super().__init__(("127.0.0.1", 0), Handler, bind_and_activate=False)
        self.server_bind()  # bound, not listening: connections are refused until start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/ready"

    def next_step(self) -> str | int:
        with self.lock:
            step = self.script.pop(0) if self.script else 200
            self.served.append(step)
            return step

    def start(self) -> None:
        self.server_activate()
        self.running = True
        threading.Thread(target=self.serve_forever, daemon=True).start()


class Handler(http.server.BaseHTTPRequestHandler):
    server: Scripted

    def do_GET(self) -> None:
        step = self.server.next_step()
        if step == "hang":
            time.sleep(HANG_SECONDS)
            self.close_connection = True
        elif step == "close":
            self.close_connection = True
        elif step == "garbage":
            self.wfile.write(b"NOT HTTP AT ALL\r\n\r\n")
            self.close_connection = True
        else:
            body = b'{"ready": true}' if step == 200 else b'{"error": "not ready"}'
            self.send_response(int(step))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def scripted(script: list[str | int], start_after: float = 0.0) -> Iterator[Scripted]:
    server = Scripted(script)
    timer = threading.Timer(start_after, server.start)
    timer.start()
    try:
        yield server
    finally:
        timer.cancel()
        timer.join()
        if server.running:
            server.shutdown()
        server.server_close()


def test_a_server_that_refuses_hangs_breaks_and_answers_503_before_200_is_waited_for() -> None:
    script: list[str | int] = ["hang", "close", "garbage", "hang", 503, 503, 502, 503]
    with scripted(script, start_after=1.0) as server:
        readiness.wait_ready(server.url, 60, "the scripted server", probe_timeout=PROBE_TIMEOUT)
        assert server.served == [*script, 200]


def test_a_server_never_ready_raises_after_its_limit_naming_url_limit_and_log() -> None:
    with scripted([503] * 1000) as server:
        server.start()
        started = time.monotonic()
        with pytest.raises(NotReadyError) as raised:
            readiness.wait_ready(
                server.url,
                2,
                "the scripted server",
                log_tail=lambda: "--- server.log\nloading the model\nstill loading",
                probe_timeout=PROBE_TIMEOUT,
            )
        elapsed = time.monotonic() - started
    first, *rest = str(raised.value).splitlines()
    assert first == (
        f"the scripted server at {server.url}: not ready after 2 s (last probe: HTTP 503)"
    )
    assert rest == ["--- server.log", "loading the model", "still loading"]
    assert raised.value.headline == first
    assert 2 <= elapsed < 30
    assert isinstance(raised.value, RuntimeError)


def test_a_server_that_never_answers_is_given_up_on_at_the_limit_not_a_probe_later() -> None:
    """Each probe gets at most the time left: a limit shorter than one probe's timeout holds."""
    with scripted(["hang"] * 100) as server:
        server.start()
        started = time.monotonic()
        with pytest.raises(NotReadyError, match=r"not ready after 1 s \(last probe: no answer"):
            readiness.wait_ready(server.url, 1, "the hanging server")
        assert time.monotonic() - started < readiness.PROBE_TIMEOUT


def test_a_process_that_has_exited_is_reported_at_once_with_its_status() -> None:
    process = subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(3)"])
    process.wait(30)
    url = f"http://127.0.0.1:{free_port()}/ready"
    started = time.monotonic()
    with pytest.raises(NotReadyError) as raised:
        readiness.wait_ready(
            url,
            300,
            "the exiting server",
            exited=readiness.first_exit({"the fake server": process}),
            log_tail=lambda: "--- fake.log\nbye",
        )
    assert time.monotonic() - started < 60, "reported at once, not after the limit"
    first, *rest = str(raised.value).splitlines()
    assert first == (
        f"the exiting server at {url}: the fake server exited with status 3 before it was ready"
    )
    assert rest == ["--- fake.log", "bye"]


def test_one_probe_turns_every_network_failure_into_words_not_an_exception() -> None:
    closed = f"http://127.0.0.1:{free_port()}/ready"
    assert readiness.http_probe(closed)(1.0) == "connection refused"
    with scripted(["close", "garbage", 503, 200]) as server:
        server.start()
        probe = readiness.http_probe(server.url)
        outcomes = [probe(5.0) for _ in range(4)]
    assert outcomes[0] == "connection closed without an answer"
    assert outcomes[1] is not None and outcomes[1].startswith("BadStatusLine")
    assert outcomes[2:] == ["HTTP 503", None]
    assert all("\n" not in o for o in outcomes if o)


def test_log_tails_keep_the_last_lines_of_each_file_under_its_name(tmp_path: Path) -> None:
    log = tmp_path / "uwsgi.log"
    log.write_text("".join(f"line {n}\n" for n in range(100)))
    tail = readiness.file_tails(log, tmp_path / "absent.log", lines=3)
    assert tail.splitlines() == [
        "--- uwsgi.log",
        "line 97",
        "line 98",
        "line 99",
        "--- absent.log",
        "(unreadable: No such file or directory)",
    ]


# --- the stack's wait, end to end ------------------------------------------------------------


@pytest.mark.e2e
def test_a_stack_whose_model_loads_longer_than_a_probe_waits_through_hung_probes(
    tmp_path: Path,
) -> None:
    """uWSGI binds its socket, then loads the model before any worker exists: Nginx passes the
    probe on and it hangs. The wait takes that as "not yet" (Nginx logs the abandoned probe as
    499) and returns once the model is loaded."""
    slow = build_model(tmp_path / "slow-load", estimator=SlowLoadingModel())
    seconds = readiness.PROBE_TIMEOUT + 3
    stack = start_stack(slow.directory, **{LOAD_SECONDS_ENV: str(seconds)})
    try:
        assert requests.get(stack.url + READY_PATH, timeout=5).json() == {"ready": True}
        probes = [line for line in stack.nginx_log.read_text().splitlines() if READY_PATH in line]
        assert any('"status":499' in line for line in probes), probes
    finally:
        stack.stop()
        stack.cleanup()


@pytest.mark.e2e
def test_a_stack_still_loading_at_its_limit_raises_with_url_limit_and_the_uwsgi_log(
    tmp_path: Path,
) -> None:
    need_nginx()
    slow = build_model(tmp_path / "slow-load", estimator=SlowLoadingModel())
    stack = Stack(slow.directory, env={"PYTHONPATH": str(HERE), **PROVENANCE}).spawn()
    try:
        wait_until_loading(stack)  # a minute of loading ahead
        with pytest.raises(NotReadyError) as raised:
            stack.wait_ready(2)
    finally:
        stack.stop()
        stack.cleanup()
    first = str(raised.value).splitlines()[0]
    assert first.startswith(f"the serving stack at {stack.url}{READY_PATH}: not ready after 2 s")
    assert "(last probe: no answer within" in first, "the probe hung: a worker was missing"
    log = raised.value.log.splitlines()
    assert log[0] == "--- uwsgi.log" and LOADING_MARKER in log
    assert "--- nginx.log" in log


@pytest.mark.e2e
def test_a_stack_that_does_not_come_up_is_stopped_and_removed_by_start(tmp_path: Path) -> None:
    need_nginx()
    built = build_model(tmp_path / "m")
    with (built.directory / built.metadata["model_file"]).open("ab") as handle:
        handle.write(b"\0")  # a tampered model: uWSGI refuses it and exits
    stack = Stack(built.directory)
    with pytest.raises(NotReadyError, match="uWSGI exited with status 1 before it was ready"):
        stack.start()
    assert stack.nginx is not None and stack.nginx.poll() is not None, "Nginx stopped too"
    assert stack.run_dir is not None and not stack.run_dir.exists()


@pytest.mark.e2e
def test_the_stack_runner_prints_one_error_line_and_the_log_when_uwsgi_exits(
    tmp_path: Path,
) -> None:
    need_nginx()
    built = build_model(tmp_path / "m")
    with (built.directory / built.metadata["model_file"]).open("ab") as handle:
        handle.write(b"\0")  # a tampered model: uWSGI refuses it and exits
    argv = ["--model-dir", str(built.directory), "--port", str(free_port())]
    done = subprocess.run(
        [sys.executable, "-m", "devstack.stack", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    first, *rest = done.stderr.splitlines()
    assert first.startswith("error: the serving stack at http://127.0.0.1:")
    assert first.endswith(": uWSGI exited with status 1 before it was ready")
    assert any("sha256 mismatch" in line for line in rest)
    assert "Traceback" not in done.stderr
