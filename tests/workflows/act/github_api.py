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

Used by the relay's tests (tests/retraining/test_relay.py) and the alert loop.

The repository's settings, for ``gitops.doctor`` (tests/gitops/test_doctor.py): rulesets as
GitHub keeps them (``POST /repos/{owner}/{repo}/rulesets`` stores one and answers 201 with its
``id``; ``GET .../rulesets`` lists them, ``GET .../rulesets/{id}`` gives one, ``GET
.../rules/branches/{branch}`` the rules of the active branch rulesets whose ``ref_name``
conditions match the branch, each with its ``ruleset_id``), and any other ``GET`` answered from
``settings`` (path with its query string -> JSON), else 404. ``status_of_gets`` makes every GET
answer that status instead (a token without the rights).

Identities, for the gates' evidence (gitops/evidence.py, tests/gitops/test_evidence.py): each token
the stand-in knows belongs to a user (``add_user``: a contributor's own token) or to a GitHub App
(``add_app`` registers the App with its private key; ``add_app_token`` gives a token of an App
whose key the test does not play, e.g. the GitHub Actions app's ``GITHUB_TOKEN``). ``POST
/app/installation-token`` with ``{"app_id", "private_key"}`` answers 201 and a new token of that
App when the key is the App's, else 401: GitHub's exchange of a JWT signed with the App's key for
an installation token (``POST /app/installations/{id}/access_tokens``), with the key itself in
place of the signature; the act stand-in of actions/create-github-app-token calls it. ``POST
.../check-runs`` creates a check run as GitHub does: only with an App's token (a user's is 403,
none or an unknown one 401), ``app`` set from the token, never from the body, ids increasing;
``GET .../commits/{sha}/check-runs`` lists those on SHA, newest first (``check_name`` filters;
``filter=latest``, GitHub's default, keeps each app's newest of each name, ``all`` every one;
``per_page``, default 30, and ``page`` as GitHub pages them).
``POST .../statuses/{sha}`` takes a commit status from any known token, ``creator`` set from it;
``GET .../commits/{sha}/statuses`` lists them newest first. Nothing can delete either, as on
GitHub.
"""

from __future__ import annotations

import fnmatch
import json
import re
import threading
import urllib.parse
import urllib.request
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

RULESETS = re.compile(r"^/repos/[^/]+/[^/]+/rulesets$")
RULESET = re.compile(r"^/repos/[^/]+/[^/]+/rulesets/(?P<id>\d+)$")
BRANCH_RULES = re.compile(r"^/repos/[^/]+/[^/]+/rules/branches/(?P<branch>[^/?]+)$")
CHECK_RUNS = re.compile(r"^/repos/[^/]+/[^/]+/check-runs$")
COMMIT_CHECK_RUNS = re.compile(r"^/repos/[^/]+/[^/]+/commits/(?P<sha>[^/]+)/check-runs$")
STATUSES = re.compile(r"^/repos/[^/]+/[^/]+/statuses/(?P<sha>[0-9a-f]{40})$")
COMMIT_STATUSES = re.compile(r"^/repos/[^/]+/[^/]+/commits/(?P<sha>[^/]+)/statuses$")
INSTALLATION_TOKEN_ROUTE = "/app/installation-token"  # noqa: S105 - a route, not a token
#: The app GitHub creates the workflows' GITHUB_TOKEN check runs and statuses as.
ACTIONS_APP = {"id": 15368, "slug": "github-actions"}
#: The evidence App the tests set up, as a fork would (evidence.toml names its id), and its key.
EVIDENCE_APP = {"id": 424242, "slug": "modelops-evidence"}
EVIDENCE_KEY = "stand-in key of the evidence App"
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


def installation_token(url: str, app_id: int, key: str) -> str:
    """A token of the App APP_ID from the stand-in at URL, asked for with KEY."""
    body = json.dumps({"app_id": app_id, "private_key": key}).encode()
    request = urllib.request.Request(f"{url}{INSTALLATION_TOKEN_ROUTE}", body)
    with urllib.request.urlopen(request, timeout=10) as answer:
        return str(json.load(answer)["token"])


def _first(key: tuple[str, int], seen: set[tuple[str, int]]) -> bool:
    """Whether KEY was SEEN before; adds it."""
    found = key in seen
    seen.add(key)
    return found


class GitHubApi:
    """The stand-in server on ``127.0.0.1`` and a free port (``url``), started on ``with``."""

    def __init__(self, status: int = 204) -> None:
        self.status = status
        self.requests: list[dict[str, Any]] = []
        self.settings: dict[str, Any] = {}
        self.rulesets: list[dict[str, Any]] = []
        self.status_of_gets: int | None = None
        self.identities: dict[str, dict[str, Any]] = {}  # token -> user or app
        self.apps: dict[int, tuple[str, str]] = {}  # app id -> (slug, private key)
        self.check_runs: list[dict[str, Any]] = []
        self.statuses: list[dict[str, Any]] = []
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
                auth = self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
                evidence = stand_in.post_evidence(self.path, auth, raw)
                if evidence is not None:
                    self._answer(evidence[0], json.dumps(evidence[1]).encode())
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

    def add_user(self, login: str, token: str) -> None:
        """TOKEN is LOGIN's own token (a personal access token: a contributor's)."""
        self.identities[token] = {"login": login, "type": "User", "app": None}

    def add_app(self, app_id: int, slug: str, key: str) -> None:
        """A GitHub App installed on the repository, whose private key is KEY."""
        self.apps[app_id] = (slug, key)

    def add_app_token(self, token: str, app: dict[str, Any]) -> None:
        """TOKEN is an installation token of APP (``{"id", "slug"}``)."""
        identity = {"login": f"{app['slug']}[bot]", "type": "Bot", "app": dict(app)}
        self.identities[token] = identity

    def post_evidence(self, path: str, token: str, raw: bytes) -> tuple[int, Any] | None:
        """GitHub's answer (status, JSON) to POST PATH with TOKEN and body RAW on the evidence
        routes (installation token, check runs, statuses), or None for another route."""
        try:
            body = json.loads(raw or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        if path == INSTALLATION_TOKEN_ROUTE:
            app_id = body.get("app_id") if isinstance(body, dict) else None
            slug, key = self.apps.get(int(app_id), ("", "")) if str(app_id).isdigit() else ("", "")
            if not key or body.get("private_key") != key:
                return 401, {"message": "A JSON web token could not be decoded"}
            with self._lock:
                token = f"ghs_installation_{len(self.identities) + 1}"
            self.add_app_token(token, {"id": int(app_id), "slug": slug})
            return 201, {"token": token}
        check_runs, statuses = CHECK_RUNS.match(path), STATUSES.match(path)
        if not (check_runs or statuses):
            return None
        who = self.identities.get(token)
        if who is None:
            return 401, {"message": "Bad credentials"}
        if not isinstance(body, dict):
            return 400, {"message": "Problems parsing JSON"}
        with self._lock:
            if statuses:
                creator = {"login": who["login"], "type": who["type"]}
                status = {**body, "id": len(self.statuses) + 1, "creator": creator}
                self.statuses.append({**status, "sha": statuses["sha"]})
                return 201, status
            if who["app"] is None:
                return 403, {"message": "You must authenticate via a GitHub App."}
            if not body.get("name") or not re.fullmatch(r"[0-9a-f]{40}", body.get("head_sha", "")):
                return 422, {"message": "Invalid request: name and head_sha are required"}
            run = {**body, "id": len(self.check_runs) + 1, "app": dict(who["app"])}
            self.check_runs.append(run)
            return 201, run

    def get(self, path: str) -> Any:
        """GitHub's answer to GET PATH (a ruleset or evidence route, else ``settings``), None for
        a 404."""
        route, _, query = path.partition("?")
        params = dict(urllib.parse.parse_qsl(query))
        if match := COMMIT_CHECK_RUNS.match(route):
            runs = [r for r in reversed(self.check_runs) if r["head_sha"] == match["sha"]]
            runs = [r for r in runs if r["name"] == params.get("check_name", r["name"])]
            if params.get("filter", "latest") == "latest":
                seen: set[tuple[str, int]] = set()
                runs = [r for r in runs if not _first((r["name"], r["app"]["id"]), seen)]
            size, page = int(params.get("per_page", 30)), int(params.get("page", 1))
            return {"total_count": len(runs), "check_runs": runs[(page - 1) * size : page * size]}
        if match := COMMIT_STATUSES.match(route):
            return [s for s in reversed(self.statuses) if s["sha"] == match["sha"]]
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

    def installation_token(self, app_id: int, key: str) -> str:
        """A token of the App APP_ID, asked for over HTTP with KEY as its action does."""
        return installation_token(self.url, app_id, key)

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
