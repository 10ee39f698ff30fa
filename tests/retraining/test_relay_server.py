"""The relay through its real server (uWSGI with retraining/relay_uwsgi.ini on loopback, what the
pod runs) against the stand-in for GitHub's API: bad tokens, an oversized body, a client that
stalls in its body, and a burst of concurrent deliveries. Each check is a function; each is shown
once to fail on the relay with the defect it guards against (tests/retraining/relay_defects.py, or
the relay's own variables set wrong), so a passing check means something.

Run under the heavy lock (uWSGI): ``flock /tmp/modelops-heavy.lock .venv/bin/pytest ...``.
"""

from __future__ import annotations

import collections
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.retraining.relay_server import RELAY_TOKEN, RelayServer, relay_server
from tests.workflows.act.github_api import GitHubApi
from training.params import load_artifact

pytestmark = pytest.mark.integration  # real servers (uWSGI from the venv; no root)

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
#: The limits of the relay under test: a small body limit and a short socket timeout keep the
#: checks quick; the defects below set them otherwise.
LIMITS = {"RELAY_MAX_BODY_BYTES": "4096", "RELAY_SOCKET_TIMEOUT": "2"}
SOCKET_TIMEOUT = 2
MODEL = load_artifact().name  # the alerts' model label (the chart's model.name)
#: The burst: GROUPS alert groups (one namespace each), two notifications each (one drift alert,
#: then two), each notification delivered COPIES times, all at once.
GROUPS = 5
COPIES = 5


def webhook(namespace: str, *features: str) -> dict[str, Any]:
    """A firing notification of the alert group of NAMESPACE, one ModelInputDrift per feature."""
    return {
        "version": "4",
        "status": "firing",
        "receiver": "retrain",
        "groupKey": f'{{}}/{{}}:{{model="{MODEL}", namespace="{namespace}"}}',
        "alerts": [
            {
                "status": "firing",
                "labels": {
                    "alertname": "ModelInputDrift",
                    "model": MODEL,
                    "namespace": namespace,
                    "feature": feature,
                },
                "annotations": {"psi": "0.3"},
            }
            for feature in features
        ],
    }


def post(url: str, body: bytes, token: str | None = RELAY_TOKEN) -> tuple[int, Any]:
    """POST BODY to the relay's /alertmanager; status and JSON answer (None when not JSON)."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url + "/alertmanager", data=body, headers=headers)
    try:
        with _OPENER.open(request, timeout=30) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, None


# --- the checks ------------------------------------------------------------------------------


def check_bad_tokens_are_refused(server: RelayServer, github: GitHubApi) -> None:
    """No token or a wrong one: 401/403 with a JSON error, and nothing reaches GitHub."""
    before = len(github.received())
    body = json.dumps(webhook("modelops-tokens", "mean_radius")).encode()
    for token in (None, "not-the-relay-token"):
        status, answer = post(server.url, body, token)
        assert status in (401, 403), f"token {token!r}: answered {status} {answer}"
        assert isinstance(answer, dict) and "error" in answer, answer
    assert len(github.received()) == before, "a delivery without the token was dispatched"


def check_an_oversized_body_is_a_413(server: RelayServer, github: GitHubApi) -> None:
    """A firing webhook padded to one byte over the limit: 413 with a JSON error, not sent."""
    before = len(github.received())
    body = json.dumps(webhook("modelops-oversized", "mean_radius")).encode()
    body += b" " * (int(LIMITS["RELAY_MAX_BODY_BYTES"]) + 1 - len(body))
    status, answer = post(server.url, body)
    assert status == 413, f"a body of {len(body)} bytes answered {status} {answer}"
    assert isinstance(answer, dict) and "error" in answer, answer
    assert len(github.received()) == before, "an oversized body was dispatched"


def check_a_stalled_body_does_not_tie_up_the_server(server: RelayServer) -> None:
    """A client sends its headers and 4 of 200 body bytes, then stalls: meanwhile another request
    is answered within a second, and the stalled one is answered 408 (or closed) within the
    socket timeout and 2 s more."""
    stalled = socket.create_connection(("127.0.0.1", server.port), timeout=SOCKET_TIMEOUT + 2)
    try:
        start = time.monotonic()
        stalled.sendall(
            b"POST /alertmanager HTTP/1.1\r\nHost: relay\r\n"
            + f"Authorization: Bearer {RELAY_TOKEN}\r\n".encode()
            + b'Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{"a"'
        )
        time.sleep(0.2)  # the stalled request holds its thread now
        try:
            with _OPENER.open(server.url + "/healthz", timeout=1) as response:
                assert response.status == 200
        except OSError as error:
            raise AssertionError(f"the server is tied up by one stalled client: {error}") from None
        try:
            answer = stalled.recv(4096)
        except TimeoutError:
            raise AssertionError(
                f"the stalled client is still held after {time.monotonic() - start:.1f} s"
            ) from None
        assert answer == b"" or answer.startswith(b"HTTP/1.1 408 "), answer
        if answer:
            assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"], answer
    finally:
        stalled.close()


def check_a_burst_dispatches_each_delivery_once(server: RelayServer, github: GitHubApi) -> None:
    """GROUPS alert groups, two notifications each (mean_radius; then mean_radius and
    mean_texture), each delivered COPIES times, all posted at once: every post answered 200 or 202,
    and GitHub receives each group's each notification exactly once (none lost, none twice)."""
    before = len(github.received())
    bodies = [
        json.dumps(webhook(f"modelops-burst-{group}", *features)).encode()
        for group in range(GROUPS)
        for features in (("mean_radius",), ("mean_radius", "mean_texture"))
        for _ in range(COPIES)
    ]
    start = threading.Barrier(len(bodies))

    def deliver(body: bytes) -> tuple[int, Any]:
        start.wait(10)
        return post(server.url, body)

    with ThreadPoolExecutor(len(bodies)) as pool:
        answers = list(pool.map(deliver, bodies))
    statuses = collections.Counter(status for status, _ in answers)
    assert set(statuses) <= {200, 202}, f"answers {dict(statuses)}"
    received = collections.Counter(
        (
            request["body"]["client_payload"]["alerts"][0]["namespace"],
            tuple(a["feature"] for a in request["body"]["client_payload"]["alerts"]),
        )
        for request in github.received()[before:]
    )
    expected = {
        (f"modelops-burst-{group}", features): 1
        for group in range(GROUPS)
        for features in (("mean_radius",), ("mean_radius", "mean_texture"))
    }
    lost = sorted(expected.keys() - received.keys())
    twice = sorted(key for key, count in received.items() if count > 1)
    assert not lost, f"deliveries never dispatched: {lost}"
    assert not twice, f"deliveries dispatched more than once: {twice}"
    assert received == expected
    assert statuses[202] == len(expected), f"answers {dict(statuses)}"


# --- the relay as shipped passes every check --------------------------------------------------


@pytest.fixture(scope="module")
def github() -> Iterator[GitHubApi]:
    with GitHubApi() as api:
        yield api


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory, github: GitHubApi) -> Iterator[RelayServer]:
    with relay_server(tmp_path_factory.mktemp("relay"), github.url, LIMITS) as server:
        yield server


def test_the_relay_refuses_a_missing_or_wrong_token_with_a_json_401(
    relay: RelayServer, github: GitHubApi
) -> None:
    check_bad_tokens_are_refused(relay, github)


def test_the_relay_refuses_an_oversized_body_with_a_json_413(
    relay: RelayServer, github: GitHubApi
) -> None:
    check_an_oversized_body_is_a_413(relay, github)


def test_a_client_stalling_in_its_body_is_answered_408_while_others_are_served(
    relay: RelayServer,
) -> None:
    check_a_stalled_body_does_not_tie_up_the_server(relay)


def test_a_burst_of_50_deliveries_dispatches_each_alert_groups_notification_exactly_once(
    relay: RelayServer, github: GitHubApi
) -> None:
    check_a_burst_dispatches_each_delivery_once(relay, github)
    # Alertmanager's retry of a delivery already dispatched: answered, not dispatched again.
    status, answer = post(
        relay.url, json.dumps(webhook("modelops-burst-0", "mean_radius")).encode()
    )
    assert (status, answer["dispatched"]) == (200, False)
    assert "dispatched within the last 3600 s" in answer["reason"]


def test_the_relays_log_is_one_json_line_a_request_and_no_traceback(relay: RelayServer) -> None:
    lines = [
        json.loads(line)
        for line in relay.log.read_text().splitlines()
        if line.startswith('{"method"')
    ]
    assert lines and {"method", "path", "status"} <= lines[0].keys()
    assert "Traceback" not in relay.log.read_text()


# --- each check fails on its defect ------------------------------------------------------------


def defective(
    tmp_path: Path, github: GitHubApi, defect: str | None = None, **environment: str
) -> Any:
    """A relay with one defect: a defective module (RELAY_DEFECT) or variables set wrong."""
    module = None
    if defect is not None:
        module = "tests.retraining.relay_defects:application"
        environment["RELAY_DEFECT"] = defect
    return relay_server(tmp_path / "relay", github.url, {**LIMITS, **environment}, module)


def test_the_token_check_fails_on_a_relay_that_does_not_check_the_token(
    tmp_path: Path, github: GitHubApi
) -> None:
    with (
        defective(tmp_path, github, "no-auth") as server,
        pytest.raises(AssertionError, match="answered 202"),
    ):
        check_bad_tokens_are_refused(server, github)


def test_the_body_limit_check_fails_on_a_relay_that_reads_any_body(
    tmp_path: Path, github: GitHubApi
) -> None:
    with (
        defective(tmp_path, github, RELAY_MAX_BODY_BYTES=str(1024 * 1024)) as server,
        pytest.raises(AssertionError, match="answered 202"),
    ):
        check_an_oversized_body_is_a_413(server, github)


def test_the_stall_check_fails_on_a_single_threaded_server_without_a_short_timeout(
    tmp_path: Path, github: GitHubApi
) -> None:
    """The relay as wsgiref served it before: one request at a time, no timeout to speak of."""
    with (
        defective(tmp_path, github, UWSGI_THREADS="1", RELAY_SOCKET_TIMEOUT="30") as server,
        pytest.raises(AssertionError, match="tied up by one stalled client"),
    ):
        check_a_stalled_body_does_not_tie_up_the_server(server)


def test_the_burst_check_fails_on_a_relay_that_does_not_deduplicate(
    tmp_path: Path, github: GitHubApi
) -> None:
    with (
        defective(tmp_path, github, RELAY_DEDUP_SECONDS="0") as server,
        pytest.raises(AssertionError, match="dispatched more than once"),
    ):
        check_a_burst_dispatches_each_delivery_once(server, github)


def test_the_burst_check_fails_on_a_relay_that_deduplicates_by_alert_group_alone(
    tmp_path: Path, github: GitHubApi
) -> None:
    with (
        defective(tmp_path, github, "group-key-only") as server,
        pytest.raises(AssertionError, match="never dispatched"),
    ):
        check_a_burst_dispatches_each_delivery_once(server, github)
