"""The retraining relay: Alertmanager's webhook in, GitHub's repository dispatch out.

    python -m retraining.relay [--listen 0.0.0.0:9095]  (checks the configuration, then runs uWSGI)
    uwsgi --ini retraining/relay_uwsgi.ini   (what the pod runs: kustomize/monitoring/relay)

Role: the one service between a firing drift alert and ``.github/workflows/retrain.yml``
(docs/monitoring.md, "From Alertmanager to GitHub: a relay"). Alertmanager's ``webhook_config``
POSTs its own JSON body and cannot shape the body GitHub's ``POST /repos/{owner}/{repo}/dispatches``
needs, nor should it hold a GitHub token; this relay does both. The translation is
``retraining.retrain.dispatch_body`` (the firing ``ModelInputDrift`` and ``ModelScoreDrift``
alerts only); this module adds the HTTP service around it: authentication, limits,
de-duplication, the call to GitHub, answers Alertmanager can act on. Its server is uWSGI (the
model server image's, ``retraining/relay_uwsgi.ini``: one process, several threads, a short socket
timeout), its WSGI entry point ``retraining.relay_wsgi:application``.

Configuration, from the environment (no secret on the command line or in a file of the repository):

- ``RELAY_TOKEN_FILE``: a file holding the bearer token Alertmanager sends (its receiver's
  ``http_config.authorization.credentials_file``); required;
- ``GITHUB_DISPATCH_TOKEN_FILE``: a file holding the GitHub token (Contents: read and write on
  this repository only); required;
- ``GITHUB_REPOSITORY``: ``owner/name``; required;
- ``GITHUB_API_URL``: GitHub's REST API, ``https://api.github.com`` unless set (GitHub Enterprise
  Server: ``https://HOST/api/v3``; the tests point it at a local stand-in);
- ``RETRAIN_SNAPSHOT``: the snapshot source to name in the dispatch; unset, the workflow uses the
  repository variable of the same name;
- ``RELAY_MAX_BODY_BYTES`` (1048576): the largest webhook body taken;
- ``RELAY_DEDUP_SECONDS`` (3600): how long one alert group's delivery of one set of alerts is
  dispatched at most once (0: never de-duplicated);
- ``RELAY_GITHUB_TIMEOUT_SECONDS`` (10): how long the call to GitHub may take.

Contract of ``POST /alertmanager`` (every answer a JSON object):

- no or a wrong bearer token: 401 ``{"error": ...}``; nothing is sent;
- a body over ``RELAY_MAX_BODY_BYTES``: 413, refused before it is read;
- a body that does not arrive within the server's socket timeout: 408 (or the connection closed);
- a body that is not an Alertmanager webhook body: 400;
- no firing drift alert in it (resolved ones, other alerts): 200 ``{"dispatched": false,
  "reason": ...}``: nothing to do, and nothing for Alertmanager to retry;
- the same alert group (``groupKey``) with the same firing drift alerts (alertname, model,
  namespace, feature; not the PSI) dispatched or being dispatched within ``RELAY_DEDUP_SECONDS``:
  200 ``{"dispatched": false, "reason": ...}`` (Alertmanager's replicas, its retries);
- GitHub refuses or cannot be reached: 502 ``{"error": ...}`` naming GitHub's status: Alertmanager
  retries a 5xx (the delivery is not remembered as dispatched);
- GitHub accepts (204): 202 ``{"dispatched": true, "alerts": N}``.

``GET /healthz`` answers 200 (the pod's probes). Anything else: 404 or 405, JSON. One JSON line
a request on stderr. Configuration missing at start: one line, ``error: ...``, exit status 1.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any, NoReturn

from gitops.cli import OneLineParser, ToolError, run_main
from retraining.retrain import NotAWebhookError, check_source, dispatch_body

#: Defaults of the limits (the module docstring names their variables).
MAX_BODY = 1024 * 1024
DEDUP_SECONDS = 3600
GITHUB_TIMEOUT = 10
DEFAULT_API = "https://api.github.com"
DEFAULT_LISTEN = "0.0.0.0:9095"
#: uWSGI's configuration of the relay: the one the pod and ``python -m retraining.relay`` run.
UWSGI_INI = Path(__file__).with_name("relay_uwsgi.ini")
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler())

StartResponse = Callable[..., Any]


def _number(environ: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    """The whole number in ``environ[name]`` (``default`` when unset); ToolError naming it."""
    text = environ.get(name, "")
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise ToolError(f"{name} must be a whole number >= {minimum}, got {text!r}")
    return value


@dataclass(frozen=True)
class Config:
    """What the relay needs; :meth:`from_environ` reads and checks it."""

    relay_token: str
    github_token: str
    repository: str
    api_url: str = DEFAULT_API
    snapshot: str = ""
    max_body: int = MAX_BODY
    dedup_seconds: int = DEDUP_SECONDS
    github_timeout: int = GITHUB_TIMEOUT

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Config:
        """The configuration in ``environ`` (module docstring); ToolError naming the first
        variable that is missing or wrong."""
        tokens = {}
        for name in ("RELAY_TOKEN_FILE", "GITHUB_DISPATCH_TOKEN_FILE"):
            path = environ.get(name, "")
            if not path:
                raise ToolError(f"{name} is not set: the file holding the token")
            try:
                token = Path(path).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ToolError(f"{name}: cannot read {path}: {exc.strerror}") from None
            if not token:
                raise ToolError(f"{name}: {path} is empty")
            tokens[name] = token
        repository = environ.get("GITHUB_REPOSITORY", "")
        owner, _, name = repository.partition("/")
        if not owner or not name or "/" in name:
            raise ToolError(f"GITHUB_REPOSITORY must be owner/name, got {repository!r}")
        api_url = environ.get("GITHUB_API_URL", "") or DEFAULT_API
        if not api_url.startswith(("https://", "http://127.0.0.1:", "http://localhost:")):
            raise ToolError(
                f"GITHUB_API_URL must be an https:// URL (or loopback http), got {api_url!r}"
            )
        snapshot = environ.get("RETRAIN_SNAPSHOT", "")
        if snapshot:
            check_source(snapshot)
        return cls(
            relay_token=tokens["RELAY_TOKEN_FILE"],
            github_token=tokens["GITHUB_DISPATCH_TOKEN_FILE"],
            repository=repository,
            api_url=api_url.rstrip("/"),
            snapshot=snapshot,
            max_body=_number(environ, "RELAY_MAX_BODY_BYTES", MAX_BODY, 1),
            dedup_seconds=_number(environ, "RELAY_DEDUP_SECONDS", DEDUP_SECONDS, 0),
            github_timeout=_number(environ, "RELAY_GITHUB_TIMEOUT_SECONDS", GITHUB_TIMEOUT, 1),
        )


def delivery_key(webhook: Mapping[str, Any], dispatch: Mapping[str, Any]) -> str:
    """What makes two deliveries the same: the alert group (Alertmanager's ``groupKey``) and the
    identities of its firing drift alerts in the dispatch (every label the dispatch keeps; the
    PSI, which moves between evaluations, left out). A group whose alerts change (a feature more)
    is a new delivery."""
    alerts = sorted(
        json.dumps({k: v for k, v in alert.items() if k != "psi"}, sort_keys=True)
        for alert in dispatch["client_payload"]["alerts"]
    )
    identity = json.dumps([str(webhook.get("groupKey", "")), alerts])
    return hashlib.sha256(identity.encode()).hexdigest()


class Deliveries:
    """The deliveries dispatched (or being dispatched) in the last ``seconds``: one process's
    memory, shared by its threads (relay_uwsgi.ini runs one process). Callers: ``Relay``."""

    def __init__(self, seconds: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.clock = clock
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def claim(self, key: str) -> bool:
        """True when KEY is not claimed now (and claim it); False for a duplicate."""
        if self.seconds == 0:
            return True
        with self._lock:
            now = self.clock()
            for old in [k for k, until in self._until.items() if until <= now]:
                del self._until[old]
            if key in self._until:
                return False
            self._until[key] = now + self.seconds
            return True

    def release(self, key: str) -> None:
        """Forget KEY (its dispatch failed: Alertmanager's retry must go through)."""
        with self._lock:
            self._until.pop(key, None)


class Relay:
    """The WSGI application of the relay (module docstring: the contract)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.deliveries = Deliveries(config.dedup_seconds)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method, path = environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", "")
        status, answer = self.route(method, path, environ)
        log = {"method": method, "path": path, "status": status}
        if "dispatched" in answer:
            log["dispatched"] = answer["dispatched"]
        sys.stderr.write(json.dumps(log) + "\n")
        return _answer(start_response, status, answer)

    def route(
        self, method: str, path: str, environ: Mapping[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        """Status and JSON answer of one request."""
        if path == "/healthz":
            if method not in ("GET", "HEAD"):
                return 405, {"error": "GET /healthz only"}
            return 200, {"status": "ok"}
        if path != "/alertmanager":
            return 404, {"error": f"no such path {path!r}"}
        if method != "POST":
            return 405, {"error": "POST /alertmanager only"}
        return self.alertmanager(environ)

    def alertmanager(self, environ: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        """One webhook delivery: authenticate, read, translate, de-duplicate, dispatch."""
        sent = str(environ.get("HTTP_AUTHORIZATION", ""))
        expected = f"Bearer {self.config.relay_token}"
        if not hmac.compare_digest(sent.encode(), expected.encode()):
            return 401, {"error": "missing or wrong bearer token"}
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return 400, {"error": "Content-Length is not a number"}
        if length > self.config.max_body:
            return 413, {"error": f"body of {length} bytes; at most {self.config.max_body}"}
        try:
            raw = environ["wsgi.input"].read(length) if length else b""
        except OSError as exc:  # uWSGI: the client stalled past the socket timeout, or left
            return 408, {"error": f"the body did not arrive: {exc}"}
        if len(raw) != length:
            return 408, {"error": f"the body ended after {len(raw)} of {length} bytes"}
        try:
            webhook = json.loads(raw or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return 400, {"error": f"the body is not JSON: {exc}"}
        try:
            dispatch = dispatch_body(webhook, self.config.snapshot)
        except NotAWebhookError as exc:
            return 400, {"error": str(exc)}
        except ToolError as exc:
            return 200, {"dispatched": False, "reason": str(exc)}
        key = delivery_key(webhook, dispatch)
        if not self.deliveries.claim(key):
            return 200, {
                "dispatched": False,
                "reason": "this alert group's alerts were dispatched within the last "
                f"{self.config.dedup_seconds} s",
            }
        problem = self.send(dispatch)
        if problem:
            self.deliveries.release(key)
            return 502, {"error": problem}
        return 202, {"dispatched": True, "alerts": len(dispatch["client_payload"]["alerts"])}

    def send(self, dispatch: Mapping[str, Any]) -> str | None:
        """POST the dispatch to GitHub; None when it is accepted, else why not (one line)."""
        url = f"{self.config.api_url}/repos/{self.config.repository}/dispatches"
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked in Config
            url,
            data=json.dumps(dispatch).encode(),
            method="POST",
            headers={
                "Authorization": f"Bearer {self.config.github_token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
                "Content-Type": "application/json",
                "User-Agent": "modelops-retrain-relay",
            },
        )
        try:
            with _OPENER.open(request, timeout=self.config.github_timeout) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            return f"GitHub answered {exc.code} {exc.reason} to POST {url}"
        except OSError as exc:
            return f"GitHub cannot be reached at {url}: {getattr(exc, 'reason', exc)}"
        if status != HTTPStatus.NO_CONTENT:
            return f"GitHub answered {status} to POST {url}; 204 expected"
        return None


def _answer(start_response: StartResponse, status: int, body: Mapping[str, Any]) -> list[bytes]:
    data = json.dumps(body).encode()
    phrase = HTTPStatus(status).phrase
    start_response(
        f"{status} {phrase}",
        [("Content-Type", "application/json"), ("Content-Length", str(len(data)))],
    )
    return [data]


def uwsgi_command() -> list[str]:
    """The uWSGI command line of the relay (relay_uwsgi.ini; it listens on ``RELAY_LISTEN``)."""
    beside = Path(sys.executable).with_name("uwsgi")
    binary = str(beside) if beside.exists() else shutil.which("uwsgi")
    if binary is None:
        raise ToolError("uwsgi not found: install the serving extra (pyuwsgi), `make venv`")
    return [binary, "--ini", str(UWSGI_INI)]


def main(argv: Sequence[str]) -> NoReturn:
    """Check the configuration (one line on error), then become uWSGI serving the relay."""
    parser = OneLineParser(prog="python -m retraining.relay", description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default=DEFAULT_LISTEN, help=f"host:port ({DEFAULT_LISTEN})")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        raise ToolError(f"--listen must be host:port, got {args.listen!r}")
    config = Config.from_environ(os.environ)  # one line now rather than a failing uWSGI worker
    command = uwsgi_command()
    print(json.dumps({"listening": args.listen, "repository": config.repository}), flush=True)
    root = str(Path(__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = f"{root}{os.pathsep}{path}" if path else root
    os.environ["RELAY_LISTEN"] = args.listen
    os.execv(command[0], command)  # noqa: S606 - uWSGI, with this interpreter's environment


if __name__ == "__main__":
    run_main(main)
