"""The workflow files themselves, run by act (tests/workflows/act_harness.py) in sandbox clones.

Each walk runs the unmodified .github/workflows file with its `${{ }}` expressions, step outputs,
`if:` conditions and GITHUB_OUTPUT, on a pull_request or push event, in a sandbox clone of HEAD
with a bare origin. GitHub's API answers through the gh stand-in (tests/workflows/act/), which
also records each call. No root: the integration tier.
"""

import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from act_harness import TOKEN, ActRun, Sandbox, pull_request_payload, run_act, step_outputs
from workflow_helpers import git

pytestmark = pytest.mark.integration  # act running real git, DVC and GTO in sandbox clones

ENV_STEP = "Stage of this branch, and the configuration"
BUILD_STEP = "Build the image (serving/Dockerfile) and push it, tagged with the commit SHA"
QUICK_TIER_STEP = "make lint test-unit"
CML_STEP = "Install CML"
IMAGE_LINK = re.compile(r"!\[[^\]]*\]\(([^)]+)\)")


def open_pull_request(
    sandbox: Sandbox,
    head: str,
    base: str,
    changes: dict[str, str],
    *,
    head_repo: str = "acme/modelops",
    number: int = 7,
) -> dict[str, object]:
    """Commit CHANGES (path: text) on a new branch HEAD off origin's BASE; the gh stand-in will
    list the files the pull request changes as GitHub does (base...head). Return the payload."""
    base_sha = git(sandbox.work, "rev-parse", f"origin/{base}").strip()
    git(sandbox.work, "switch", "-q", "-C", head, base_sha)
    for path, text in changes.items():
        (sandbox.work / path).parent.mkdir(parents=True, exist_ok=True)
        (sandbox.work / path).write_text(text)
        git(sandbox.work, "add", path)
    git(sandbox.work, "commit", "-qm", f"change {', '.join(changes)}")
    head_sha = git(sandbox.work, "rev-parse", "HEAD").strip()
    git(sandbox.work, "switch", "-q", "--detach", base_sha)
    sandbox.pr_files.write_text(git(sandbox.work, "diff", "--name-only", base_sha, head_sha))
    return pull_request_payload(
        number=number,
        head_ref=head,
        base_ref=base,
        head_sha=head_sha,
        base_sha=base_sha,
        head_repo=head_repo,
    )


def run_pull_request(sandbox: Sandbox, payload: dict[str, object], **options: Any) -> ActRun:
    path = sandbox.root / "event.json"
    path.write_text(json.dumps(payload))
    return run_act(sandbox, "pull_request", payload=path, **options)


def guard_lines(run: ActRun) -> list[str]:
    """The lines gitops.check_pr_order printed, as act shows a step's output."""
    return re.findall(r"\| ((?:ok|error): .*)", run.output)


# --- pr-guard.yml ---------------------------------------------------------------------------


def test_pr_guard_passes_an_experiment_pull_request_into_main(pr_sandbox: Sandbox) -> None:
    payload = open_pull_request(pr_sandbox, "experiment/deeper", "main", {"docs/notes.md": "x\n"})
    run = run_pull_request(pr_sandbox, payload, workflow="pr-guard.yml")
    assert run.returncode == 0, run.output
    order = "experiment/* -> main -> staging -> production"
    assert guard_lines(run) == [f"ok: experiment/deeper -> main keeps the order {order}"]
    assert [call["argv"] for call in pr_sandbox.calls()] == [
        ["pr", "diff", "7", "--repo", "acme/modelops", "--name-only"]
    ]


def test_pr_guard_fails_a_deploy_pull_request_that_also_changes_the_server(
    pr_sandbox: Sandbox,
) -> None:
    sha = git(pr_sandbox.work, "rev-parse", "origin/main").strip()
    changes = {
        "kustomize/overlays/dev/kustomization.yaml": "# the new tag\n",
        "serving/app.py": "# and something else\n",
    }
    payload = open_pull_request(pr_sandbox, f"deploy/dev/{sha}", "main", changes)
    run = run_pull_request(pr_sandbox, payload, workflow="pr-guard.yml")
    assert run.returncode == 1, run.output
    [line] = guard_lines(run)
    assert line.startswith(f"error: deploy/dev/{sha} may change only kustomize/overlays/dev/")
    assert "but changes serving/app.py: open another pull request" in line


def test_pr_guard_fails_a_forks_branch_named_like_a_promotion_into_production(
    pr_sandbox: Sandbox,
) -> None:
    head = "promote/prod/0123456789ab"
    payload = open_pull_request(
        pr_sandbox, head, "production", {"README.md": "x\n"}, head_repo="mallory/modelops"
    )
    run = run_pull_request(pr_sandbox, payload, workflow="pr-guard.yml")
    assert run.returncode == 1, run.output
    [line] = guard_lines(run)
    assert line.startswith(
        "error: a pull request from the fork mallory/modelops may only come from an experiment/*"
        f" branch, not from {head}"
    )


# --- ci.yml, job unit: which heavy tiers a pull request needs ---------------------------------
# The whole unit job (make lint test-unit) takes minutes; the walk stops it when that step starts,
# after the tier step's outputs are set.


@pytest.mark.parametrize(
    ("changes", "integration", "e2e"),
    [
        ({"docs/notes.md": "x\n"}, "false", "false"),
        ({"serving/app.py": "# x\n"}, "false", "true"),
    ],
    ids=["docs-only", "serving"],
)
def test_ci_asks_for_the_heavy_tiers_a_pull_requests_files_need(
    pr_sandbox: Sandbox, changes: dict[str, str], integration: str, e2e: str
) -> None:
    payload = open_pull_request(pr_sandbox, "experiment/tiers", "main", changes)
    run = run_pull_request(
        pr_sandbox, payload, workflow="ci.yml", job="unit", stop_before=QUICK_TIER_STEP
    )
    assert run.stopped_before == QUICK_TIER_STEP, run.output
    outputs = step_outputs(run)
    assert (outputs["integration"], outputs["e2e"]) == (integration, e2e), run.output
    assert outputs["python-version"].startswith("3.11")
    assert pr_sandbox.calls()[0]["env"]["GH_TOKEN"] == TOKEN


# --- promote.yml on a push to main -------------------------------------------------------------


def test_promote_stops_before_tagging_when_the_repository_is_not_configured(
    new_sandbox: Callable[[str], Sandbox],
) -> None:
    sandbox = new_sandbox("promote-unconfigured")
    run = run_act(sandbox, "push", workflow="promote.yml")
    assert run.returncode == 1, run.output
    assert f"❌  Failure - Main {ENV_STEP}" in run.output
    assert "::error::set the variable IMAGE_REGISTRY and the secret DVC_CONFIG" in run.output
    assert not run.step_started("GTO register (if the model changed); push the tag")
    assert sandbox.origin_refs("refs/tags/") == []


def test_promote_registers_the_model_in_the_origin_and_reaches_the_image_build(
    dvc_remote_sandbox: tuple[Sandbox, str],
) -> None:
    sandbox, dvc_config = dvc_remote_sandbox
    run = run_act(
        sandbox,
        "push",
        workflow="promote.yml",
        variables={"IMAGE_REGISTRY": "127.0.0.1:5999/acme"},
        secrets={"DVC_CONFIG": dvc_config},
        stop_before=BUILD_STEP,  # it needs a container engine and a registry
    )
    assert run.stopped_before == BUILD_STEP, run.output
    outputs = step_outputs(run)
    assert outputs["stage"] == "dev"
    # registered, no stage yet: the stage follows once dev runs it (environments.yml, stage)
    assert outputs["model_ref"] == "diagnosis-classifier@v0.1.0"
    assert outputs["assigned"] == "false"
    assert sandbox.origin_refs("refs/tags/") == ["refs/tags/diagnosis-classifier@v0.1.0"]
    head = git(sandbox.work, "rev-parse", "HEAD").strip()
    tagged = git(sandbox.origin, "rev-list", "-n1", "diagnosis-classifier@v0.1.0").strip()
    assert tagged == head
    assert "no login needed for 127.0.0.1:5999" in run.output  # the registry host output
    assert [call["argv"] for call in sandbox.calls()] == [["auth", "setup-git"]]


# --- training-report.yml on a pull request that changes a hyper-parameter ----------------------
# The walk stops where CML is installed (npm, the network): the report and its artifact are made.


def test_training_report_keeps_the_report_and_its_plots_as_the_runs_artifact(
    report_sandbox: tuple[Sandbox, str],
) -> None:
    sandbox, dvc_config = report_sandbox
    params = (sandbox.work / "training/params.yaml").read_text()
    changed = params.replace("  C: 1.0 ", "  C: 0.05", 1)
    assert changed != params
    payload = open_pull_request(
        sandbox, "experiment/smaller-c", "main", {"training/params.yaml": changed}
    )
    run = run_pull_request(
        sandbox,
        payload,
        workflow="training-report.yml",
        secrets={"DVC_CONFIG": dvc_config},
        stop_before=CML_STEP,
    )
    assert run.stopped_before == CML_STEP, run.output
    pngs = ["confusion.png", "precision_recall.png", "roc.png"]
    assert sandbox.uploads() == [{"name": "training-report", "files": sorted([*pngs, "report.md"])}]
    artifact = sandbox.artifacts / "training-report"
    assert all((artifact / png).read_bytes().startswith(b"\x89PNG") for png in pngs)
    report = (artifact / "report.md").read_text()
    assert re.search(
        r"\| training/params\.yaml +\| train\.logistic_regression\.C +\| 1\.0 +\| 0\.05 +\|", report
    )
    run_url = "https://github.com/acme/modelops/actions/runs/"
    assert f"in the artifact `training-report` of [this workflow run]({run_url}" in report
    assert IMAGE_LINK.findall(report) == []
    assert [f"`{png}`" in report for png in pngs] == [True] * 3
