"""The gates' evidence: check runs on GitHub written by the evidence App, verified by app id.

Role: ``gitops.smoke --record`` writes the result of a smoke test here, and the ``smoke`` gate of
``gitops.gates`` reads it back. A record is a GitHub check run named ``smoke/<env>`` on the commit
that last changed the environment's rendered file on its branch (:func:`rendered_commit`), with
the release it found in ``output.text`` (JSON: the rendered blob, the image digest, the model
version and sha256, the git commit). GitHub sets a check run's ``app`` from the token that created
it, and only a GitHub App's token can create one: a contributor's own token cannot (GitHub answers
403), and the workflows' ``GITHUB_TOKEN`` creates them as the GitHub Actions app, whatever the
workflow file says. The gate accepts only check runs of the App named in ``evidence.toml`` on the
target's protected branch, whose key is in the GitHub environment ``evidence`` (deployment
branches: the environment branches only); and
check runs cannot be deleted, so the newest one of that App decides (a pass followed by a failure
is a failure). docs/workflow.md, "Evidence", gives the reasons.

Contract: :func:`verify` returns the record when the newest check run of the App on the rendered
commit passed and names exactly the release (blob, digest, model sha256, git commit), and raises
:class:`~gitops.cli.ToolError` with one line naming what is wrong otherwise. The API is
``GITHUB_API_URL`` (default GitHub's), the repository ``GITHUB_REPOSITORY`` (OWNER/NAME), the token
``GH_TOKEN`` or ``GITHUB_TOKEN``.

usage: python -m gitops.evidence app-id [--ref REF]   (prints ``app_id=<id>``, for the workflows)
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

from gitops import environments, rendered
from gitops.cli import OneLineParser, ToolError, run_main
from gitops.git import git, rev, show

#: The file naming the evidence App, read from the protected branch the gate guards.
FILE = "evidence.toml"
DEFAULT_API = "https://api.github.com"
#: Check runs asked for per page (GitHub's most).
PAGE = 100
#: The record's provenance fields, each the rendered release's attribute it must equal.
PROVENANCE = {
    "digest": "digest",
    "model_version": "model_version",
    "model_sha256": "model_sha256",
    "git_commit": "git_commit",
}


def check_name(env: environments.Environment) -> str:
    """The check run's name for ENV's smoke test."""
    return f"smoke/{env.name}"


def app_id(ref: str) -> int:
    """The evidence App's id, from evidence.toml at REF; ToolError when missing or unset."""
    text = show(ref, FILE)
    if text is None:
        raise ToolError(f"{ref} has no {FILE}: the gates accept no evidence without it")
    try:
        found = tomllib.loads(text).get("app", {}).get("id")
    except tomllib.TOMLDecodeError as error:
        raise ToolError(f"{FILE} on {ref} is not valid TOML ({error})") from None
    if not isinstance(found, int) or isinstance(found, bool) or found <= 0:
        raise ToolError(
            f"{FILE} on {ref}: app.id must be the evidence GitHub App's id (a positive integer), "
            f"got {found!r}: docs/workflow.md, Evidence"
        )
    return found


def rendered_commit(env: environments.Environment, ref: str) -> tuple[str, str]:
    """(commit, blob): the commit of REF's first-parent history that last changed ENV's rendered
    file, and that file's blob at REF. The smoke record and the gate both name the release so."""
    path = rendered.path(env)
    blob = rev(f"{ref}:{path}")
    if blob is None:
        raise ToolError(f"{ref} has no {path}: nothing is deployed to {env.name}")
    commit = git("log", "-1", "--first-parent", "--format=%H", ref, "--", path).strip()
    return commit, blob


class GitHub:
    """GitHub's REST API for one repository (OWNER/NAME), with a token from the environment."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.url = (env.get("GITHUB_API_URL") or DEFAULT_API).rstrip("/")
        self.repository = env.get("GITHUB_REPOSITORY", "")
        self.token = env.get("GH_TOKEN") or env.get("GITHUB_TOKEN") or ""
        if self.repository.count("/") != 1:
            raise ToolError(
                f"GITHUB_REPOSITORY must be OWNER/NAME (where the evidence is), "
                f"got {self.repository!r}"
            )

    def call(self, method: str, path: str, body: object = None) -> Any:
        """METHOD PATH (under repos/OWNER/NAME) with BODY as JSON; the answer's JSON."""
        url = f"{self.url}/repos/{self.repository}/{path}"
        headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data, headers, method=method)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 (GitHub)
                return json.load(answer)
        except urllib.error.HTTPError as error:
            try:
                message = json.load(error).get("message", "")
            except (ValueError, AttributeError):
                message = ""
            raise ToolError(
                f"GitHub answered {error.code} to {method} {path.split('?')[0]}: {message}"
            ) from None
        except (urllib.error.URLError, OSError, ValueError) as error:
            why = f"GitHub at {self.url} did not answer {method} {path}: {error}"
            raise ToolError(why) from None

    def check_runs(self, commit: str, name: str) -> list[dict[str, Any]]:
        """Every check run named NAME on COMMIT, of every app (GitHub's ``filter=all``), every
        page of them."""
        found: list[dict[str, Any]] = []
        for page in range(1, 100):
            query = {"check_name": name, "filter": "all", "per_page": PAGE, "page": page}
            path = f"commits/{commit}/check-runs?{urllib.parse.urlencode(query)}"
            answer = self.call("GET", path)
            runs = list(answer.get("check_runs", []))
            found += runs
            if len(runs) < PAGE or len(found) >= int(answer.get("total_count", 0)):
                break
        return found


def record(
    env: environments.Environment,
    ref: str,
    release: rendered.Release,
    result: dict[str, Any],
    api: GitHub | None = None,
) -> dict[str, Any]:
    """Create the check run of RESULT (a smoke test of ENV's rendered file at REF, which holds
    RELEASE) with the token of the environment; the record it carries."""
    commit, blob = rendered_commit(env, ref)
    passed = bool(result.get("passed"))
    evidence = {
        **result,
        "environment": env.name,
        "commit": commit,
        "blob": blob,
        "image": release.image,
        **{field: getattr(release, attribute) for field, attribute in PROVENANCE.items()},
        "passed": passed,
    }
    summary = (
        f"{env.name} served {release.summary()}"
        if passed
        else f"{env.name}: {result.get('reason', 'failed')}"
    )
    (api or GitHub()).call(
        "POST",
        "check-runs",
        {
            "name": check_name(env),
            "head_sha": commit,
            "external_id": blob,
            "status": "completed",
            "conclusion": "success" if passed else "failure",
            "output": {
                "title": f"smoke {'passed' if passed else 'failed'}",
                "summary": summary,
                "text": json.dumps(evidence, sort_keys=True),
            },
        },
    )
    return evidence


def _who(run: Mapping[str, Any]) -> str:
    app = run.get("app") or {}
    return f"{app.get('slug', '?')} (app {app.get('id', '?')})"


def verify(
    env: environments.Environment,
    ref: str,
    release: rendered.Release,
    trusted: int,
    api: GitHub | None = None,
) -> dict[str, Any]:
    """The smoke record of ENV's rendered file at REF, holding RELEASE, by the App TRUSTED; the
    newest such check run decides. ToolError naming what is missing or wrong."""
    commit, blob = rendered_commit(env, ref)
    name = check_name(env)
    runs = (api or GitHub()).check_runs(commit, name)
    own = [r for r in runs if (r.get("app") or {}).get("id") == trusted and r.get("name") == name]
    where = f"{rendered.path(env)} on {env.branch} (commit {commit[:12]})"
    if not own:
        others = sorted({_who(r) for r in runs})
        by = f"; check runs {name} by {', '.join(others)} are not evidence" if others else ""
        raise ToolError(f"{where} has no check run {name} by the evidence App {trusted}{by}")
    newest = max(own, key=lambda r: int(r.get("id", 0)))
    try:
        found = json.loads((newest.get("output") or {}).get("text") or "")
    except ValueError:
        found = None
    if not isinstance(found, dict):
        raise ToolError(f"the newest check run {name} on {commit[:12]} holds no smoke record")
    if newest.get("conclusion") != "success" or found.get("passed") is not True:
        raise ToolError(
            f"the newest smoke test of {where} failed: {found.get('reason', 'no reason given')}"
        )
    wanted = {"environment": env.name, "blob": blob}
    wanted.update({field: getattr(release, attribute) for field, attribute in PROVENANCE.items()})
    for field, value in wanted.items():
        if found.get(field) != value:
            raise ToolError(
                f"the newest smoke record of {where} names {field} {found.get(field)!r}, "
                f"but {env.name} runs {value!r}"
            )
    return found


def main(argv: Sequence[str]) -> int:
    parser = OneLineParser(prog="python -m gitops.evidence", description=__doc__)
    parser.add_argument("what", choices=["app-id"], help="app-id: the evidence App's id")
    parser.add_argument("--ref", default="HEAD", help="where to read evidence.toml (HEAD)")
    args = parser.parse_args(argv)
    print(f"app_id={app_id(args.ref)}")
    return 0


if __name__ == "__main__":
    run_main(main)
