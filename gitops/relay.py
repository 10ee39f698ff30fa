"""The retraining relay: Alertmanager's webhook in, GitHub's repository dispatch out.

    python -m gitops.relay [--listen 0.0.0.0:9095]

Role: the one service between a firing drift alert and ``.github/workflows/retrain.yml``
(docs/monitoring.md, "From Alertmanager to GitHub: a relay"). Alertmanager's ``webhook_config``
POSTs its own JSON body and cannot shape the body GitHub's ``POST /repos/{owner}/{repo}/dispatches``
needs, nor should it hold a GitHub token; this relay does both. The translation is
``gitops.retrain.dispatch_body`` (the firing ``ModelInputDrift`` and ``ModelScoreDrift`` alerts
only); this module adds the HTTP service around it: authentication, the call to GitHub, answers
Alertmanager can act on.

Configuration, from the environment (no secret on the command line or in a file of the repository):

- ``RELAY_TOKEN_FILE``: a file holding the bearer token Alertmanager sends (its receiver's
  ``http_config.authorization.credentials_file``); required;
- ``GITHUB_DISPATCH_TOKEN_FILE``: a file holding the GitHub token (Contents: read and write on
  this repository only); required;
- ``GITHUB_REPOSITORY``: ``owner/name``; required;
- ``GITHUB_API_URL``: GitHub's REST API, ``https://api.github.com`` unless set (GitHub Enterprise
  Server: ``https://HOST/api/v3``; the tests point it at a local stand-in);
- ``RETRAIN_SNAPSHOT``: the snapshot source to name in the dispatch; unset, the workflow uses the
  repository variable of the same name.

Contract of ``POST /alertmanager`` (every answer a JSON object):

- no or a wrong bearer token: 401 ``{"error": ...}``; nothing is sent;
- a body that is not an Alertmanager webhook body: 400;
- no firing drift alert in it (resolved ones, other alerts): 200 ``{"dispatched": false,
  "reason": ...}``: nothing to do, and nothing for Alertmanager to retry;
- GitHub refuses or cannot be reached: 502 ``{"error": ...}`` naming GitHub's status: Alertmanager
  retries a 5xx;
- GitHub accepts (204): 202 ``{"dispatched": true, "alerts": N}``.

``GET /healthz`` answers 200 (the pod's probes). Anything else: 404 or 405, JSON. A body over
``MAX_BODY`` bytes: 413. Configuration missing at start: one line, ``error: ...``, exit status 1.
"""

from __future__ import annotations

import hmac
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from gitops.cli import OneLineParser, ToolError, run_main
from gitops.retrain import NotAWebhookError, check_source, dispatch_body

#: Alertmanager's webhook bodies are small; anything larger is refused before it is read.
MAX_BODY = 1024 * 1024
#: Seconds the call to GitHub may take (Alertmanager's own webhook timeout is longer by default).
GITHUB_TIMEOUT = 10
DEFAULT_API = "https://api.github.com"
DEFAULT_LISTEN = "0.0.0.0:9095"
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler())

StartResponse = Callable[..., Any]


@dataclass(frozen=True)
class Config:
    """What the relay needs; :meth:`from_environ` reads and checks it."""

    relay_token: str
    github_token: str
    repository: str
    api_url: str = DEFAULT_API
    snapshot: str = ""

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
        )


class Relay:
    """The WSGI application of the relay (module docstring: the contract)."""

    def __init__(self, config: Config) -> None:
        self.config = config

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method, path = environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", "")
        if path == "/healthz":
            if method not in ("GET", "HEAD"):
                return _answer(start_response, 405, {"error": "GET /healthz only"})
            return _answer(start_response, 200, {"status": "ok"})
        if path != "/alertmanager":
            return _answer(start_response, 404, {"error": f"no such path {path!r}"})
        if method != "POST":
            return _answer(start_response, 405, {"error": "POST /alertmanager only"})
        status, answer = self.alertmanager(environ)
        return _answer(start_response, status, answer)

    def alertmanager(self, environ: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        """One webhook delivery: authenticate, translate, dispatch (status and JSON answer)."""
        sent = str(environ.get("HTTP_AUTHORIZATION", ""))
        expected = f"Bearer {self.config.relay_token}"
        if not hmac.compare_digest(sent.encode(), expected.encode()):
            return 401, {"error": "missing or wrong bearer token"}
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return 400, {"error": "Content-Length is not a number"}
        if length > MAX_BODY:
            return 413, {"error": f"body of {length} bytes; at most {MAX_BODY}"}
        try:
            webhook = json.loads(environ["wsgi.input"].read(length) or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return 400, {"error": f"the body is not JSON: {exc}"}
        try:
            dispatch = dispatch_body(webhook, self.config.snapshot)
        except NotAWebhookError as exc:
            return 400, {"error": str(exc)}
        except ToolError as exc:
            return 200, {"dispatched": False, "reason": str(exc)}
        problem = self.send(dispatch)
        if problem:
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
            with _OPENER.open(request, timeout=GITHUB_TIMEOUT) as response:
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


class _QuietHandler(WSGIRequestHandler):
    """One JSON line per request on stderr, without the client's address."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        self.log_message("%s", json.dumps({"path": self.path, "status": code}))

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(format % args + "\n")


def serve(config: Config, listen: str) -> WSGIServer:
    """The relay's server on ``host:port`` (not yet serving: call ``serve_forever``)."""
    host, _, port = listen.rpartition(":")
    try:
        number = int(port)
    except ValueError:
        raise ToolError(f"--listen must be host:port, got {listen!r}") from None
    try:
        # every interface unless told: the relay runs in a pod, reached through its Service
        bind = host or "0.0.0.0"  # noqa: S104
        return make_server(bind, number, Relay(config), handler_class=_QuietHandler)
    except OSError as exc:
        raise ToolError(f"cannot listen on {listen}: {exc.strerror}") from None


def main(argv: Sequence[str]) -> int:
    parser = OneLineParser(prog="python -m gitops.relay", description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default=DEFAULT_LISTEN, help=f"host:port ({DEFAULT_LISTEN})")
    args = parser.parse_args(argv)
    config = Config.from_environ(os.environ)
    server = serve(config, args.listen)
    listening = f"{args.listen.rpartition(':')[0]}:{server.server_port}"
    print(json.dumps({"listening": listening, "repository": config.repository}), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    run_main(main)
