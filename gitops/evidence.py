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
``GH_TOKEN`` or ``GITHUB_TOKEN`` (:class:`gitops.github.GitHub`, the tools' one client; the App's
id in evidence.toml is read by :func:`gitops.github.app_id`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from gitops import environments, rendered
from gitops.cli import ToolError
from gitops.git import git, rev
from gitops.github import EVIDENCE_FILE as FILE
from gitops.github import PAGE, GitHub, app_id

__all__ = ["FILE", "PAGE", "GitHub", "app_id", "check_name", "record", "rendered_commit", "verify"]
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


def rendered_commit(env: environments.Environment, ref: str) -> tuple[str, str]:
    """(commit, blob): the commit of REF's first-parent history that last changed ENV's rendered
    file, and that file's blob at REF. The smoke record and the gate both name the release so."""
    path = rendered.path(env)
    blob = rev(f"{ref}:{path}")
    if blob is None:
        raise ToolError(f"{ref} has no {path}: nothing is deployed to {env.name}")
    commit = git("log", "-1", "--first-parent", "--format=%H", ref, "--", path).strip()
    return commit, blob


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
    (api or GitHub.from_environ()).repo(
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
    runs = (api or GitHub.from_environ()).check_runs(commit, name)
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
