"""Stand-in for GitHub's REST API endpoint the retraining relay calls (README.md of this folder).

``POST /repos/{owner}/{repo}/dispatches``, GitHub's repository dispatch, on loopback: each request
is recorded (path, the ``Authorization`` and ``Accept`` headers, the JSON body) and answered
``status`` (204, GitHub's answer, unless a test sets another), so a test can read what the relay
would have sent GitHub. Any other path or method is a 404, as GitHub answers an unknown route.
Used by the relay's tests (tests/gitops/test_relay.py) and the alert-to-dispatch integration test
(tests/serving/test_serving_prometheus.py).

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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

RULESETS = re.compile(r"^/repos/[^/]+/[^/]+/rulesets$")
RULESET = re.compile(r"^/repos/[^/]+/[^/]+/rulesets/(?P<id>\d+)$")
BRANCH_RULES = re.compile(r"^/repos/[^/]+/[^/]+/rules/branches/(?P<branch>[^/?]+)$")
DISPATCHES = re.compile(r"^/repos/[^/]+/[^/]+/dispatches$")


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
                except json.JSONDecodeError:
                    body = None
                with stand_in._lock:
                    stand_in.requests.append(
                        {
                            "path": self.path,
                            "authorization": self.headers.get("Authorization", ""),
                            "accept": self.headers.get("Accept", ""),
                            "body": body,
                        }
                    )
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
