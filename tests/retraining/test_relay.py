"""retraining.relay: Alertmanager's webhook in, GitHub's repository dispatch out, against the
stand-in for GitHub's API (tests/workflows/act/github_api.py) on loopback; the relay served by its
real server (uWSGI with retraining/relay_uwsgi.ini, tests/retraining/relay_server.py; run under
the heavy lock) and, for its command line, as the process ``python -m retraining.relay`` (also
from the image's files alone). The limits, a stalled body and a burst of deliveries:
tests/retraining/test_relay_server.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gitops.cli import ToolError
from retraining import relay, retrain
from tests.retraining.relay_server import GITHUB_TOKEN, RELAY_TOKEN, REPOSITORY, relay_server
from tests.workflows.act.github_api import SENDER, GitHubApi, repository_dispatch_event
from training.params import load_artifact

ROOT = Path(__file__).resolve().parents[2]
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
MODEL = load_artifact().name  # the alerts' model label (the chart's model.name)


def webhook(*alerts: dict[str, Any]) -> dict[str, Any]:
    """An Alertmanager webhook body (version 4) holding ALERTS."""
    return {"version": "4", "status": "firing", "receiver": "retrain", "alerts": list(alerts)}


def alert(name: str, status: str = "firing", **labels: str) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": name, "model": MODEL, **labels},
        "annotations": {"psi": "0.42", "summary": "drift"},
    }


def environment(tmp_path: Path, api_url: str, **extra: str) -> dict[str, str]:
    relay_file, github_file = tmp_path / "relay-token", tmp_path / "github-token"
    relay_file.write_text(RELAY_TOKEN + "\n")
    github_file.write_text(GITHUB_TOKEN + "\n")
    return {
        "RELAY_TOKEN_FILE": str(relay_file),
        "GITHUB_DISPATCH_TOKEN_FILE": str(github_file),
        "GITHUB_REPOSITORY": REPOSITORY,
        "GITHUB_API_URL": api_url,
        **extra,
    }


@pytest.fixture(autouse=True)
def loopback_without_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The relay honours the environment's proxies (as a service should); the stand-in is on
    loopback, which a proxy of the machine running the tests must not see."""
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture(scope="module")
def github_api() -> Iterator[GitHubApi]:
    with GitHubApi() as api:
        yield api


@pytest.fixture
def github(github_api: GitHubApi) -> GitHubApi:
    """The module's stand-in for GitHub's API, emptied and answering 204 again."""
    github_api.requests.clear()  # between tests: the stand-in's server thread is idle
    github_api.status = 204
    return github_api


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, github_api: GitHubApi) -> Iterator[str]:
    """The relay's URL, served by uWSGI as the pod serves it (one server for the module)."""
    with relay_server(tmp_path_factory.mktemp("relay"), github_api.url) as server:
        yield server.url


def post(
    url: str, body: bytes, token: str | None = RELAY_TOKEN, method: str = "POST"
) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with _OPENER.open(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


@pytest.mark.integration  # served: the relay's uWSGI
def test_a_firing_drift_alert_becomes_githubs_repository_dispatch_with_the_dispatch_token(
    served: str, github: GitHubApi
) -> None:
    body = webhook(
        alert("ModelInputDrift", feature="mean_radius", namespace="modelops-prod"),
        alert("ModelInputDrift", status="resolved", feature="mean_texture"),
        alert("ModelErrorRate"),
    )
    status, answer = post(served + "/alertmanager", json.dumps(body).encode())

    assert (status, answer) == (202, {"dispatched": True, "alerts": 1})
    [sent] = github.received()
    assert sent["path"] == f"/repos/{REPOSITORY}/dispatches"
    assert sent["authorization"] == f"Bearer {GITHUB_TOKEN}"
    assert sent["accept"] == "application/vnd.github+json"
    assert sent["body"] == {
        "event_type": "model-drift",
        "client_payload": {
            "alerts": [
                {
                    "alertname": "ModelInputDrift",
                    "model": MODEL,
                    "namespace": "modelops-prod",
                    "feature": "mean_radius",
                    "psi": 0.42,
                }
            ]
        },
    }


def test_the_relay_names_its_configured_snapshot_in_the_dispatch(
    tmp_path: Path, github: GitHubApi
) -> None:
    source = "https://exports.example.com/diagnosis/latest.csv"
    config = relay.Config.from_environ(environment(tmp_path, github.url, RETRAIN_SNAPSHOT=source))
    status, _ = relay.Relay(config).alertmanager(
        delivery(json.dumps(webhook(alert("ModelScoreDrift"))).encode())
    )
    assert status == 202
    assert github.received()[0]["body"]["client_payload"]["snapshot"] == source


class _Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self, size: int) -> bytes:
        return self.data[:size]


def delivery(body: bytes) -> dict[str, Any]:
    """The WSGI environ of a delivery of BODY with the relay's token."""
    return {
        "HTTP_AUTHORIZATION": f"Bearer {RELAY_TOKEN}",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": _Body(body),
    }


def test_a_body_shorter_than_its_content_length_is_a_408(tmp_path: Path) -> None:
    config = relay.Config.from_environ(environment(tmp_path, "https://api.github.com"))
    environ = {**delivery(b'{"alerts": []}'), "CONTENT_LENGTH": "100"}
    status, answer = relay.Relay(config).alertmanager(environ)
    assert (status, answer) == (408, {"error": "the body ended after 14 of 100 bytes"})


@pytest.mark.integration  # served: the relay's uWSGI
@pytest.mark.parametrize(
    ("token", "why"),
    [(None, "no Authorization header"), ("not-the-token", "a wrong token")],
)
def test_a_delivery_without_the_relay_token_is_a_401_and_sends_nothing(
    served: str, github: GitHubApi, token: str | None, why: str
) -> None:
    body = json.dumps(webhook(alert("ModelInputDrift", feature="mean_radius"))).encode()
    status, answer = post(served + "/alertmanager", body, token=token)
    assert status == 401, why
    assert answer == {"error": "missing or wrong bearer token"}
    assert github.received() == []


@pytest.mark.integration  # served: the relay's uWSGI
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"{not json", "the body is not JSON"),
        (b'{"status": "firing"}', "not an Alertmanager webhook body (no alerts list)"),
        (b"[]", "not an Alertmanager webhook body (no alerts list)"),
    ],
)
def test_a_body_that_is_not_a_webhook_is_a_400_naming_why(
    served: str, github: GitHubApi, body: bytes, expected: str
) -> None:
    status, answer = post(served + "/alertmanager", body)
    assert status == 400
    assert answer["error"].startswith(expected)
    assert github.received() == []


@pytest.mark.integration  # served: the relay's uWSGI
def test_only_resolved_or_other_alerts_answer_200_and_dispatch_nothing(
    served: str, github: GitHubApi
) -> None:
    body = webhook(
        alert("ModelInputDrift", status="resolved", feature="mean_radius"), alert("ModelNotReady")
    )
    status, answer = post(served + "/alertmanager", json.dumps(body).encode())
    assert status == 200
    assert answer["dispatched"] is False
    assert "no firing ModelInputDrift or ModelScoreDrift alert" in answer["reason"]
    assert github.received() == []


@pytest.mark.integration  # served: the relay's uWSGI
def test_githubs_refusal_is_a_502_naming_its_status_so_alertmanager_retries(
    served: str, github: GitHubApi
) -> None:
    github.status = 404
    body = json.dumps(webhook(alert("ModelScoreDrift"))).encode()
    status, answer = post(served + "/alertmanager", body)
    assert status == 502
    assert answer["error"].startswith("GitHub answered 404")
    assert f"/repos/{REPOSITORY}/dispatches" in answer["error"]


@pytest.mark.integration  # served: the relay's uWSGI
def test_a_delivery_github_refused_is_dispatched_when_alertmanager_retries_it(
    served: str, github: GitHubApi
) -> None:
    body = json.dumps(webhook(alert("ModelInputDrift", feature="worst_area"))).encode()
    github.status = 502
    assert post(served + "/alertmanager", body)[0] == 502
    github.status = 204
    assert post(served + "/alertmanager", body) == (202, {"dispatched": True, "alerts": 1})
    assert post(served + "/alertmanager", body)[1]["dispatched"] is False, "then only once"
    assert len(github.received()) == 2


def test_a_delivery_is_claimed_once_a_window_and_again_after_it_or_after_a_release() -> None:
    now = [0.0]
    deliveries = relay.Deliveries(60, clock=lambda: now[0])
    assert deliveries.claim("group-a")
    assert not deliveries.claim("group-a")
    assert deliveries.claim("group-b")
    now[0] = 59.9
    assert not deliveries.claim("group-a")
    now[0] = 60.0
    assert deliveries.claim("group-a"), "the window has passed"
    deliveries.release("group-a")
    assert deliveries.claim("group-a"), "released after a failed dispatch"
    never = relay.Deliveries(0)
    assert never.claim("group-a") and never.claim("group-a"), "0 s: no de-duplication"


def test_a_delivery_is_its_alert_group_and_its_alerts_identities_not_their_psi() -> None:
    def key(group: str, *alerts: dict[str, Any]) -> str:
        body = {**webhook(*alerts), "groupKey": group}
        return relay.delivery_key(body, retrain.dispatch_body(body))

    radius = alert("ModelInputDrift", feature="mean_radius")
    texture = alert("ModelInputDrift", feature="mean_texture")
    moved = {**radius, "annotations": {"psi": "0.9"}}
    assert key("g", radius, texture) == key("g", texture, moved)
    assert key("g", radius) != key("g", radius, texture)
    assert key("g", radius) != key("h", radius)


def test_github_out_of_reach_is_a_502(tmp_path: Path) -> None:
    with GitHubApi() as gone:
        url = gone.url
    config = relay.Config.from_environ(environment(tmp_path, url))
    status, answer = relay.Relay(config).alertmanager(
        delivery(json.dumps(webhook(alert("ModelScoreDrift"))).encode())
    )
    assert status == 502
    assert answer["error"].startswith("GitHub cannot be reached at")


@pytest.mark.integration  # served: the relay's uWSGI
def test_health_unknown_paths_and_methods_answer_json(served: str) -> None:
    with _OPENER.open(served + "/healthz", timeout=10) as response:
        assert (response.status, json.load(response)) == (200, {"status": "ok"})
    assert post(served + "/elsewhere", b"{}")[0] == 404
    assert post(served + "/alertmanager", b"", method="PUT")[0] == 405


def test_a_body_over_the_limit_is_a_413_before_it_is_read(tmp_path: Path) -> None:
    config = relay.Config.from_environ(environment(tmp_path, "https://api.github.com"))
    status, answer = relay.Relay(config).alertmanager(
        {
            "HTTP_AUTHORIZATION": f"Bearer {RELAY_TOKEN}",
            "CONTENT_LENGTH": str(relay.MAX_BODY + 1),
            "wsgi.input": None,
        }
    )
    assert status == 413
    assert "at most" in answer["error"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"RELAY_TOKEN_FILE": ""}, "RELAY_TOKEN_FILE is not set"),
        ({"GITHUB_DISPATCH_TOKEN_FILE": "/nonexistent/token"}, "cannot read /nonexistent/token"),
        ({"GITHUB_REPOSITORY": "modelops"}, "GITHUB_REPOSITORY must be owner/name"),
        ({"GITHUB_API_URL": "http://api.example.com"}, "GITHUB_API_URL must be an https://"),
        ({"RETRAIN_SNAPSHOT": "s3://bucket/x.csv"}, "not s3://"),
        ({"RELAY_MAX_BODY_BYTES": "1MB"}, "RELAY_MAX_BODY_BYTES must be a whole number >= 1"),
        ({"RELAY_DEDUP_SECONDS": "-1"}, "RELAY_DEDUP_SECONDS must be a whole number >= 0"),
        ({"RELAY_GITHUB_TIMEOUT_SECONDS": "0"}, "RELAY_GITHUB_TIMEOUT_SECONDS must be a whole"),
    ],
)
def test_the_configuration_is_checked_at_start_naming_the_variable(
    tmp_path: Path, change: dict[str, str], expected: str
) -> None:
    env = {**environment(tmp_path, "https://api.github.com"), **change}
    with pytest.raises(ToolError, match=expected.replace("/", ".")):
        relay.Config.from_environ(env)


def test_an_empty_token_file_is_refused(tmp_path: Path) -> None:
    env = environment(tmp_path, "https://api.github.com")
    Path(env["RELAY_TOKEN_FILE"]).write_text("\n")
    with pytest.raises(ToolError, match=r"RELAY_TOKEN_FILE: .* is empty"):
        relay.Config.from_environ(env)


def test_the_command_without_its_configuration_prints_one_line_and_exits_1() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RELAY_", "GITHUB_"))}
    result = subprocess.run(
        [sys.executable, "-m", "retraining.relay", "--listen", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: RELAY_TOKEN_FILE is not set: the file holding the token"
    ]


def image_files(into: Path, dockerfile: str) -> None:
    """Copy into INTO the files of gitops/ and retraining/ that DOCKERFILE (serving/Dockerfile's
    text) copies into the model server image, where the pod runs the relay."""
    for line in dockerfile.splitlines():
        if not line.startswith("COPY ") or "--from=" in line:
            continue
        *sources, target = line.split()[1:]
        for source in sources:
            if source.partition("/")[0] not in ("gitops", "retraining"):
                continue
            where = into / target.removeprefix("/app/").rstrip("/")
            if (ROOT / source).is_dir():
                shutil.copytree(ROOT / source, where, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                where.mkdir(parents=True, exist_ok=True)
                shutil.copy(ROOT / source, where)


def test_the_command_from_the_images_files_alone_prints_one_line_and_exits_1(
    tmp_path: Path,
) -> None:
    """The image ships retraining/ and of gitops/ only what the Dockerfile copies (the commands'
    helpers): there too, no configuration is one line, not a traceback. Fails on the image's
    files before gitops.cli.run_main stopped needing gitops.environments."""
    image_files(tmp_path, (ROOT / "serving" / "Dockerfile").read_text())
    assert sorted(p.name for p in (tmp_path / "gitops").iterdir()) == ["__init__.py", "cli.py"]
    result = subprocess.run(
        [sys.executable, "-S", "-m", "retraining.relay"],  # -S: no site-packages, no checkout
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"]},
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: RELAY_TOKEN_FILE is not set: the file holding the token"
    ]


def test_a_run_main_that_needs_the_rest_of_gitops_fails_on_the_images_files(
    tmp_path: Path,
) -> None:
    """The check above, fed the defect it guards against: gitops/cli.py importing
    gitops.environments unguarded (as it did) crashes the relay's command in the image."""
    image_files(tmp_path, (ROOT / "serving" / "Dockerfile").read_text())
    cli = tmp_path / "gitops" / "cli.py"
    guarded = "    errors: tuple[type[Exception], ...] = (ToolError,)\n"
    assert guarded in cli.read_text()
    unguarded = "    from gitops.environments import EnvironmentsError  # noqa: F401\n"
    cli.write_text(cli.read_text().replace(guarded, unguarded + guarded))
    result = subprocess.run(
        [sys.executable, "-S", "-m", "retraining.relay"],
        cwd=tmp_path, capture_output=True, text=True, env={"PATH": os.environ["PATH"]},
        timeout=60, check=False,
    )  # fmt: skip
    assert "No module named 'gitops.environments'" in result.stderr


# --- the stand-in for GitHub's API itself ---------------------------------------------------


def dispatch_to(github: GitHubApi, body: bytes) -> int:
    """POST BODY to the stand-in's dispatch endpoint of REPOSITORY; the status it answers."""
    url = f"{github.url}/repos/{REPOSITORY}/dispatches"
    request = urllib.request.Request(url, data=body, method="POST")
    try:
        with _OPENER.open(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def test_the_github_stand_in_delivers_a_dispatch_as_githubs_repository_dispatch_event(
    github: GitHubApi,
) -> None:
    raw = b'{"event_type": "model-drift", "client_payload": {"alerts": [{"alertname": "A"}]}}'
    assert dispatch_to(github, raw) == 204
    [request] = github.received()
    assert request["raw"] == raw
    assert json.loads(repository_dispatch_event(request)) == {
        "action": "model-drift",
        "branch": "main",
        "client_payload": {"alerts": [{"alertname": "A"}]},
        "repository": {
            "name": "modelops",
            "full_name": REPOSITORY,
            "owner": {"login": "acme"},
            "default_branch": "main",
        },
        "sender": SENDER,
    }


@pytest.mark.parametrize(
    "body",
    [
        b"[]",
        b'{"client_payload": {}}',
        b'{"event_type": ""}',
        b'{"event_type": "model-drift", "client_payload": []}',
        json.dumps({"event_type": "x", "client_payload": dict.fromkeys("abcdefghijk", 1)}).encode(),
    ],
    ids=["not-object", "no-event-type", "empty-event-type", "payload-list", "eleven-keys"],
)
def test_the_github_stand_in_answers_422_to_a_dispatch_github_refuses_and_delivers_nothing(
    github: GitHubApi, body: bytes
) -> None:
    assert dispatch_to(github, body) == 422
    [request] = github.received()
    with pytest.raises(ValueError, match="GitHub delivers no event for this request"):
        repository_dispatch_event(request)


def third_party_imports(module: str) -> set[str]:
    """The top-level modules outside the standard library, gitops and retraining that importing
    MODULE loads, in a fresh interpreter."""
    code = (
        f"import sys\nbefore = set(sys.modules)\nimport {module}\n"
        "print(' '.join(sorted({name.partition('.')[0] for name in set(sys.modules) - before}"
        " - set(sys.stdlib_module_names) - {'gitops', 'retraining'})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        timeout=60,
        check=True,
    )
    return set(result.stdout.split())


def test_the_relay_needs_only_the_standard_library_so_the_model_server_image_runs_it() -> None:
    """The pod runs the relay on the model server image (kustomize/monitoring/relay), whose
    Python has the serving extra only: no PyYAML. The check finds PyYAML in a module that
    loads it (gitops.rendered)."""
    assert third_party_imports("retraining.relay") == set()
    assert "yaml" in third_party_imports("gitops.rendered")
