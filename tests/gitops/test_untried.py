"""Settings that ran nowhere before (issue 21, point 3): the prod 8Mi memory / UWSGI_PROCESSES 64 /
minReplicas 0 change replayed as a pull request into main. Its per-environment rendered diff
(gitops.rendered --diff, the step of rendered-diff.yml) shows prod's change; the promotion to prod
lists it under "Ran nowhere before" and gate untried refuses it without the acknowledgement
label, accepts it with it, and so does the verify step of environments.yml, by the pull request's
labels. The same pull request changes argocd/: the app of apps' branch (production) has it only
once prod's promotion merged (issue 21, point 5).

The walk is on a repository of tests/gitops/test_promotion.py (real git, GTO and kustomize); what
prod ran before is, before its first release, what its overlay on production renders, and after
it, its rendered file (the second case on this checkout's renderings).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gitops import environments, gates, rendered
from tests.gitops.test_promotion import forked, merge, refused, smoke_passed, tool
from tests.gitops.test_promotion import github as github  # the API stand-in the smoke gate reads
from tests.gitops.test_promotion import template as template  # the fixture forked() copies
from tests.workflows.workflow_helpers import REPO, git, run_step, run_tool, tool_env

pytestmark = pytest.mark.integration  # real git, GTO and kustomize

DEV, STAGING, PROD = environments.load()
STEP = "Each environment's rendered diff, base against head"
VERIFY = "Rebuild the pull request from the protected branches and compare"

#: The change of the issue, as the lines of kustomize/overlays/prod it edits.
EDITS = {
    "resources.yaml": [("memory: 768Mi", "memory: 8Mi"), ('value: "4"', 'value: "64"')],
    "scaling.yaml": [("minReplicas: 3", "minReplicas: 0")],
}
#: The settings it changes, as gitops.rendered.untried names them: nothing else of prod's own
#: (its cpu, its maxReplicas, its spread) is new, since prod ran those before.
UNTRIED = {
    "Deployment/model spec.template.spec.containers[app].env[UWSGI_PROCESSES].value": "64",
    "Deployment/model spec.template.spec.containers[app].resources.limits.memory": "8Mi",
    "Deployment/model spec.template.spec.containers[app].resources.requests.memory": "8Mi",
    "HorizontalPodAutoscaler/model spec.minReplicas": 0,
}

REFUSAL = (
    "error: gate untried: prod would run Deployment/model spec.template.spec.containers[app]"
    ".env[UWSGI_PROCESSES].value 64 (staging: 3, prod ran: 4) and 3 more, which ran "
    f"nowhere before: the pull request needs the label {gates.ACKNOWLEDGE_LABEL} "
    "(python -m gitops.promote prod --acknowledge)"
)


#: The same pull request changes Argo CD's own configuration (argocd/), which the app of apps
#: applies from production only.
APPSET = "argocd/applicationset.yaml"
ARGOCD_EDIT = ("limit: 5", "limit: 7")


def prod_change(repo: Path) -> tuple[str, str]:
    """The pull request into main that sets prod's memory, workers and replicas and changes
    argocd/, merged: (main before, main after)."""
    git(repo, "switch", "-q", "main")
    before = git(repo, "rev-parse", "HEAD").strip()
    for name, edits in EDITS.items():
        path = repo / PROD.overlay / name
        text = path.read_text()
        for old, new in edits:
            assert old in text
            text = text.replace(old, new)
        path.write_text(text)
    appset = repo / APPSET
    assert ARGOCD_EDIT[0] in appset.read_text()
    appset.write_text(appset.read_text().replace(*ARGOCD_EDIT))
    git(repo, "commit", "-qam", "prod: 8Mi, 64 workers, down to 0 replicas")
    git(repo, "push", "-q", "origin", "main")
    return before, git(repo, "rev-parse", "HEAD").strip()


def edited(text: str) -> str:
    """TEXT (prod's overlay file or rendering) with the issue's change."""
    for edits in EDITS.values():
        for old, new in edits:
            text = text.replace(old, new)
    return text


def argocd_on(repo: Path, branch: str) -> str:
    """The argocd/ the app of apps would apply if BRANCH were its revision (what it reads)."""
    return git(repo, "show", f"origin/{branch}:{APPSET}")


def test_a_prod_change_shows_in_its_prod_diff_needs_the_label_and_argocd_waits_for_the_promotion(
    template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = forked(template, tmp_path)  # v0.1.0 runs in dev; staging and prod run nothing yet
    app = yaml.safe_load((repo / "argocd" / "application.yaml").read_text())
    revision = app["spec"]["source"]["targetRevision"]  # the app of apps' branch
    assert (revision, app["spec"]["source"]["path"]) == (PROD.branch, "argocd")
    shipped = argocd_on(repo, revision)
    before, after = prod_change(repo)
    assert argocd_on(repo, "main") != shipped and argocd_on(repo, revision) == shipped

    # The pull request into main: the step of rendered-diff.yml, with the base's tools, on the
    # head as refs/pull/1/head in the origin (what GitHub serves).
    git(repo, "push", "-q", "origin", f"{after}:refs/pull/1/head")
    summary = tmp_path / "summary.md"
    env = tool_env(
        BASE_SHA=before, HEAD_SHA=after, PR_NUMBER="1", RUNNER_TEMP=str(tmp_path),
        GITHUB_STEP_SUMMARY=str(summary),
    )  # fmt: skip
    done = run_step("rendered-diff.yml", STEP, repo, env)
    assert done.returncode == 0, done.stderr
    report = summary.read_text()
    assert done.stdout == report
    sections = dict(part.split("\n", 1) for part in report.split("\n### ")[1:])
    assert sorted(sections) == ["dev: no change", "prod: 8 lines change", "staging: no change"]
    prod_diff = sections["prod: 8 lines change"]
    for line in ("-            memory: 768Mi", "+            memory: 8Mi", '+          value: "64"',
                 "-  minReplicas: 3", "+  minReplicas: 0"):  # fmt: skip
        assert f"\n{line}\n" in prod_diff

    # The promotions: staging's rendering is unchanged; prod's carries the change. Prod ran
    # nothing yet: what it would have run is its overlay on production (prod ran: 4, and only
    # the four changed settings are listed, not every setting of prod's own).
    smoke_passed(repo, DEV, monkeypatch)
    merge(repo, tool(repo, "promote", "staging"), STAGING)
    assert argocd_on(repo, "staging") != shipped and argocd_on(repo, revision) == shipped
    smoke_passed(repo, STAGING, monkeypatch)
    staging_text = git(repo, "show", f"origin/staging:{rendered.path(STAGING)}")
    origin = git(repo, "ls-remote", "origin")
    line = refused(repo, "promote", "prod")
    assert line == REFUSAL
    assert git(repo, "ls-remote", "origin") == origin  # a refusal leaves nothing behind
    assert argocd_on(repo, revision) == shipped

    body = tmp_path / "body.md"
    outputs = tool(repo, "promote", "prod", "--acknowledge", "--body-file", str(body))
    text = body.read_text()
    heading = "### Ran nowhere before: 4 settings of prod"
    assert heading in text and text.index(heading) < text.index("```diff")
    listed = text.split(heading)[1].split("###")[0]
    rows = [row for row in listed.splitlines() if row.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == sorted(UNTRIED)
    assert [row.split("`")[3] for row in rows] == [str(UNTRIED[key]) for key in sorted(UNTRIED)]
    argocd_diff = text.split("### `argocd/`: Argo CD's own configuration changes")[1]
    assert "the app of apps (argocd/application.yaml) applies it" in argocd_diff
    assert "-          limit: 5\n+          limit: 7\n" in argocd_diff
    figure = f"4 settings ran nowhere before, acknowledged ({gates.ACKNOWLEDGE_LABEL})"
    assert f"| untried | {figure} |" in text
    # The manifests gate alone let it through: only environment fields differ (the issue).
    prod_text = git(repo, "show", f"{outputs['commit']}:{rendered.path(PROD)}")
    assert rendered.differences(staging_text, prod_text) == []

    # verify: the step of environments.yml, with the labels of the pull request's event.
    commit = outputs["commit"]
    git(repo, "push", "-q", "origin", f"{commit}:refs/pull/2/head")
    event = {
        "BASE_REF": PROD.branch, "HEAD_REF": outputs["branch"], "HEAD_SHA": commit,
        "PR_NUMBER": "2",
    }  # fmt: skip
    for labels, status in (('["documentation"]', 1), (f'["{gates.ACKNOWLEDGE_LABEL}"]', 0)):
        done = run_step("environments.yml", VERIFY, repo, tool_env(LABELS=labels, **event))
        assert done.returncode == status, done.stderr
    assert done.stdout.startswith(f"ok: {commit[:12]} promotes staging's release to prod")
    refusal = refused(repo, "promote", "prod", "--verify", commit, "--labels", "null")
    assert refusal == line
    bad = run_tool("promote", "prod", "--verify", commit, "--labels", "{}", cwd=repo, check=False)
    assert (bad.returncode, bad.stderr.count("\n")) == (2, 1)
    assert "--labels must be a JSON list of label names" in bad.stderr
    mixed = run_tool("promote", "prod", "--verify", commit, "--acknowledge", cwd=repo, check=False)
    assert (mixed.returncode, mixed.stderr.count("\n")) == (2, 1)

    # Merged (the fast-forward alone), the app of apps' branch has the argocd/ change only now.
    git(repo, "push", "-q", "origin", f"{commit}:refs/heads/{PROD.branch}")
    git(repo, "fetch", "-q", "origin")
    assert argocd_on(repo, revision) == argocd_on(repo, "main") != shipped


def test_once_prod_ran_a_release_its_rendered_file_is_what_it_ran() -> None:
    staging, prod = (rendered.render(REPO, env) for env in (STAGING, PROD))
    changed = edited(prod)
    assert changed.count("memory: 8Mi") == 2 and "minReplicas: 0" in changed
    found = rendered.untried(staging, changed, prod)
    assert {u.setting: u.value for u in found} == UNTRIED
    memory = next(u for u in found if u.setting.endswith("limits.memory"))
    assert (memory.source, memory.ran) == ("512Mi", "768Mi")
    # prod's standing settings (cpu 2, maxReplicas 10, DoNotSchedule) ran there: not listed,
    # though they differ from staging's; with nothing to compare, all of them would be.
    assert rendered.untried(staging, prod, prod) == []
    assert len(rendered.untried(staging, changed, None)) > len(UNTRIED)
    # a setting the target drops is listed as such
    dropped = rendered.untried(staging, changed.replace("  minReplicas: 0\n", ""), prod)
    assert [(u.setting, u.value) for u in dropped if "minReplicas" in u.setting] == [
        ("HorizontalPodAutoscaler/model spec.minReplicas", rendered.ABSENT)
    ]
