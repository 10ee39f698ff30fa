"""Stand-in for the endpoints of GitHub's REST API the project calls (README.md of this folder).

``POST /repos/{owner}/{repo}/dispatches``, GitHub's repository dispatch, on loopback: each request
is recorded (path, the ``Authorization`` and ``Accept`` headers, the body's exact bytes and its
JSON) and answered ``status`` (204, GitHub's answer, unless a test sets another); a body GitHub
would refuse (``dispatch_problem``) is answered 422 as GitHub answers it. Any other path or method
is a 404, as GitHub answers an unknown route.

``repository_dispatch_event`` is what GitHub then delivers to the repository's workflows: the
one place the suite wraps a dispatch request into a ``repository_dispatch`` event payload, the
way GitHub does. The act walk of retrain.yml (tests/workflows/test_act_retrain.py) runs on that
payload of the request the relay sent in the alert loop (tests/alert_loop/fixtures.py).

Used by the relay's tests (tests/gitops/test_relay.py) and the alert loop.

The repository's settings, for ``gitops.doctor`` (tests/gitops/test_doctor.py): rulesets as
GitHub keeps them (``POST /repos/{owner}/{repo}/rulesets`` stores one and answers 201 with its
``id``; ``GET .../rulesets`` lists them, ``GET .../rulesets/{id}`` gives one, ``GET
.../rules/branches/{branch}`` the rules of the active branch rulesets whose ``ref_name``
conditions match the branch, each with its ``ruleset_id``), and any other ``GET`` answered from
``settings`` (path with its query string -> JSON), else 404. ``status_of_gets`` makes every GET
answer that status instead (a token without the rights).
"""

from __future__ import annotations

import fnmatch
import json
import re
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

RULESETS = re.compile(r"^/repos/[^/]+/[^/]+/rulesets$")
RULESET = re.compile(r"^/repos/[^/]+/[^/]+/rulesets/(?P<id>\d+)$")
BRANCH_RULES = re.compile(r"^/repos/[^/]+/[^/]+/rules/branches/(?P<branch>[^/?]+)$")
DISPATCHES = re.compile(r"^/repos/(?P<owner>[^/]+)/(?P<name>[^/]+)/dispatches$")
#: GitHub's limits on a dispatch body: ``event_type`` a string of 1 to 100 characters,
#: ``client_payload`` (optional) an object of at most 10 top-level properties.
EVENT_TYPE_LIMIT = 100
CLIENT_PAYLOAD_KEYS = 10
#: The default branch of the repository the stand-in plays: GitHub runs a repository_dispatch's
#: workflows from it and names it in the event's ``branch``.
DEFAULT_BRANCH = "main"
#: The event's ``sender``: the owner of the dispatch token, a GitHub App's bot as
#: docs/monitoring.md advises (GitHub names the token's user or app here).
SENDER = {"login": "retrain-relay[bot]", "type": "Bot"}


def dispatch_problem(body: Any) -> str | None:
    """Why GitHub would answer 422 to the dispatch BODY (parsed JSON), or None when it takes it."""
    if not isinstance(body, dict):
        return "the body must be a JSON object"
    event_type = body.get("event_type")
    if not isinstance(event_type, str) or not 1 <= len(event_type) <= EVENT_TYPE_LIMIT:
        return f"event_type must be a string of 1 to {EVENT_TYPE_LIMIT} characters"
    payload = body.get("client_payload", {})
    if not isinstance(payload, dict) or len(payload) > CLIENT_PAYLOAD_KEYS:
        return f"client_payload must be an object of at most {CLIENT_PAYLOAD_KEYS} properties"
    return None


def repository_dispatch_event(request: Mapping[str, Any]) -> bytes:
    """The ``repository_dispatch`` event payload (JSON, what a workflow reads at
    $GITHUB_EVENT_PATH and act takes with ``-e``) GitHub delivers for one recorded dispatch
    REQUEST, as GitHub wraps it: ``action`` is the request's ``event_type``, ``client_payload`` the
    request's own, parsed from the bytes the stand-in received and otherwise untouched (``{}``
    when absent), ``branch`` the default branch, ``repository`` the one of the request's path,
    ``sender`` the token's owner. ValueError for a request GitHub would have refused (422)."""
    body = json.loads(request["raw"])
    problem = dispatch_problem(body)
    match = DISPATCHES.match(request["path"])
    if problem or match is None:
        raise ValueError(
            f"GitHub delivers no event for this request: {problem or 'not a dispatch'}"
        )
    owner, name = match["owner"], match["name"]
    event = {
        "action": body["event_type"],
        "branch": DEFAULT_BRANCH,
        "client_payload": body.get("client_payload", {}),
        "repository": {
            "name": name,
            "full_name": f"{owner}/{name}",
            "owner": {"login": owner},
            "default_branch": DEFAULT_BRANCH,
        },
        "sender": SENDER,
    }
    return json.dumps(event).encode()


def _ref_matches(ref_name: dict[str, Any], ref: str) -> bool:
    """Whether a ruleset's ``ref_name`` condition (fnmatch patterns, ``~ALL``) takes REF."""

    def hit(patterns: list[str]) -> bool:
        return any(p == "~ALL" or fnmatch.fnmatchcase(ref, p) for p in patterns)

    return hit(ref_name.get("include", [])) and not hit(ref_name.get("exclude", []))


class GitHubApi:
    """The stand-in server on ``127.0.0.1`` and a free port (``url``), started on ``with``."""

    def __init__(self, status: int = 204) -> None:
        self.status = status
        self.requests: list[dict[str, Any]] = []
        self.settings: dict[str, Any] = {}
        self.rulesets: list[dict[str, Any]] = []
        self.status_of_gets: int | None = None
        self._lock = threading.Lock()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                answer = stand_in.get(self.path)
                if stand_in.status_of_gets is not None:
                    self._answer(stand_in.status_of_gets, b'{"message": "Forbidden"}')
                elif answer is None:
                    self._answer(404, b'{"message": "Not Found"}')
                else:
                    self._answer(200, json.dumps(answer).encode())

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if RULESETS.match(self.path):
                    self._answer(201, json.dumps(stand_in.add_ruleset(json.loads(raw))).encode())
                    return
                if not DISPATCHES.match(self.path):
                    self._answer(404, b'{"message": "Not Found"}')
                    return
                try:
                    body = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    body = None
                with stand_in._lock:
                    stand_in.requests.append(
                        {
                            "path": self.path,
                            "authorization": self.headers.get("Authorization", ""),
                            "accept": self.headers.get("Accept", ""),
                            "raw": raw,
                            "body": body,
                        }
                    )
                problem = dispatch_problem(body)
                if problem:
                    message = {"message": f"Invalid request: {problem}"}
                    self._answer(422, json.dumps(message).encode())
                    return
                self._answer(stand_in.status, b"" if stand_in.status == 204 else b"{}")

            def _answer(self, status: int, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if data:
                    self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def add_ruleset(self, ruleset: dict[str, Any]) -> dict[str, Any]:
        """Keep RULESET as GitHub does (with an id, from this repository); the kept copy."""
        with self._lock:
            kept = {**ruleset, "id": len(self.rulesets) + 1, "source_type": "Repository"}
            self.rulesets.append(kept)
        return kept

    def get(self, path: str) -> Any:
        """GitHub's answer to GET PATH (a ruleset route, else ``settings``), None for a 404."""
        route = path.split("?", 1)[0]
        if RULESETS.match(route):
            return [
                {key: r[key] for key in ("id", "name", "target", "enforcement")}
                for r in self.rulesets
            ]
        if match := RULESET.match(route):
            return next((r for r in self.rulesets if r["id"] == int(match["id"])), None)
        if match := BRANCH_RULES.match(route):
            ref = f"refs/heads/{match['branch']}"
            return [
                {**rule, "ruleset_source_type": "Repository", "ruleset_id": r["id"]}
                for r in self.rulesets
                if r["target"] == "branch"
                and r["enforcement"] == "active"
                and _ref_matches(r.get("conditions", {}).get("ref_name", {}), ref)
                for rule in r["rules"]
            ]
        return self.settings.get(path)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def received(self) -> list[dict[str, Any]]:
        """The requests recorded so far, oldest first."""
        with self._lock:
            return list(self.requests)

    def __enter__(self) -> GitHubApi:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
