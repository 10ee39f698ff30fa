"""GitHub's REST API for the tools, and the evidence App's id: one client for all of them.

Role: :class:`GitHub` is the one HTTP client of the tools that talk to GitHub: ``gitops.evidence``
(the smoke records, as check runs), ``gitops.doctor`` (the repository's settings, read back) and
``gitops.smoke --record``. :func:`app_id` reads the evidence App's id from ``evidence.toml`` on a
protected branch: the gates take only that App's records, the workflows mint its token to post
the guards' commit statuses (``order``, ``verify``), and the rulesets ``gitops.doctor --rulesets``
prints pin those required checks to it (``integration_id``). Standard library only: pr-guard.yml
runs ``python3 -m gitops.github app-id`` with the runner's own Python.

Contract: :meth:`GitHub.call` answers the JSON of a request, or raises
:class:`~gitops.cli.ToolError` with one line naming the method, the path and GitHub's message;
:meth:`GitHub.get` answers None for a 404 (a setting that is not there). The API is
``GITHUB_API_URL`` (default GitHub's), the token ``GH_TOKEN`` or ``GITHUB_TOKEN``.

usage: python3 -m gitops.github app-id [--ref REF]   (prints ``app_id=<id>``, for GITHUB_OUTPUT)
"""

from __future__ import annotations

import json
import os
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

from gitops.cli import OneLineParser, ToolError, run_main
from gitops.git import show

DEFAULT_API = "https://api.github.com"
#: The file naming the evidence App, read from the protected branch a gate or a guard serves.
EVIDENCE_FILE = "evidence.toml"
#: The GitHub Actions app's id: the identity of the workflows' GITHUB_TOKEN.
GITHUB_ACTIONS_APP = 15368
#: Items asked for per page (GitHub's most).
PAGE = 100


def parse_app_id(text: str, where: str) -> int:
    """The evidence App's id in TEXT (evidence.toml, read at WHERE); ToolError when unset."""
    try:
        found = tomllib.loads(text).get("app", {}).get("id")
    except tomllib.TOMLDecodeError as error:
        raise ToolError(f"{EVIDENCE_FILE} on {where}: not valid TOML ({error})") from None
    if not isinstance(found, int) or isinstance(found, bool) or found <= 0:
        raise ToolError(
            f"{EVIDENCE_FILE} on {where}: app.id must be the evidence GitHub App's id (a positive "
            f"integer), got {found!r}: docs/workflow.md, Evidence"
        )
    return found


def app_id(ref: str) -> int:
    """The evidence App's id, from evidence.toml at REF; ToolError when missing or unset."""
    text = show(ref, EVIDENCE_FILE)
    if text is None:
        raise ToolError(f"{ref} has no {EVIDENCE_FILE}: the gates accept no evidence without it")
    return parse_app_id(text, ref)


class GitHub:
    """GitHub's REST API at URL with TOKEN; REPOSITORY (OWNER/NAME) for :meth:`repo`."""

    def __init__(self, url: str = DEFAULT_API, token: str = "", repository: str = "") -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.repository = repository

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> GitHub:
        """The API, token and repository the workflows give a step (GITHUB_API_URL, GH_TOKEN or
        GITHUB_TOKEN, GITHUB_REPOSITORY); ToolError when the repository is not OWNER/NAME."""
        env = os.environ if environ is None else environ
        repository = env.get("GITHUB_REPOSITORY", "")
        if repository.count("/") != 1:
            raise ToolError(
                f"GITHUB_REPOSITORY must be OWNER/NAME (where the evidence is), got {repository!r}"
            )
        token = env.get("GH_TOKEN") or env.get("GITHUB_TOKEN") or ""
        return cls(env.get("GITHUB_API_URL") or DEFAULT_API, token, repository)

    def call(self, method: str, path: str, body: object = None, *, token: str = "") -> Any:
        """METHOD PATH (from the API's root, e.g. ``/repos/O/N/rulesets``) with BODY as JSON, with
        TOKEN (default the client's); the answer's JSON (None when empty)."""
        headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
        if token or self.token:
            headers["Authorization"] = f"Bearer {token or self.token}"
        data = json.dumps(body).encode() if body is not None else None
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(f"{self.url}{path}", data, headers, method=method)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 (GitHub)
                raw = answer.read()
                return json.loads(raw) if raw else None
        except urllib.error.HTTPError as error:
            try:
                message = json.load(error).get("message", "")
            except (ValueError, AttributeError):
                message = ""
            raise HTTPError(error.code, method, path.split("?")[0], message) from None
        except (urllib.error.URLError, OSError, ValueError) as error:
            why = f"GitHub at {self.url} did not answer {method} {path.split('?')[0]}: {error}"
            raise ToolError(why) from None

    def get(self, path: str) -> Any:
        """GET PATH's JSON, or None when GitHub answers 404 (the setting is not there)."""
        try:
            return self.call("GET", path)
        except HTTPError as error:
            if error.status == 404:
                return None
            raise

    def repo(self, method: str, path: str, body: object = None) -> Any:
        """METHOD PATH under ``/repos/OWNER/NAME/`` of the client's repository."""
        return self.call(method, f"/repos/{self.repository}/{path}", body)

    def check_runs(self, commit: str, name: str) -> list[dict[str, Any]]:
        """Every check run named NAME on COMMIT, of every app (GitHub's ``filter=all``), every
        page of them."""
        found: list[dict[str, Any]] = []
        for page in range(1, 100):
            query = {"check_name": name, "filter": "all", "per_page": PAGE, "page": page}
            path = f"commits/{commit}/check-runs?{urllib.parse.urlencode(query)}"
            answer = self.repo("GET", path)
            runs = list(answer.get("check_runs", []))
            found += runs
            if len(runs) < PAGE or len(found) >= int(answer.get("total_count", 0)):
                break
        return found


class HTTPError(ToolError):
    """GitHub's answer STATUS (not 2xx) to METHOD PATH, with its MESSAGE."""

    def __init__(self, status: int, method: str, path: str, message: str) -> None:
        super().__init__(f"GitHub answered {status} to {method} {path}: {message}")
        self.status = status


def main(argv: Sequence[str]) -> int:
    parser = OneLineParser(prog="python3 -m gitops.github", description=__doc__)
    parser.add_argument("what", choices=["app-id"], help="app-id: the evidence App's id")
    parser.add_argument("--ref", default="HEAD", help=f"where to read {EVIDENCE_FILE} (HEAD)")
    args = parser.parse_args(argv)
    print(f"app_id={app_id(args.ref)}")
    return 0


if __name__ == "__main__":
    run_main(main)
