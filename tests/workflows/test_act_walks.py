"""The workflow files themselves, run by act (tests/workflows/act_harness.py) in sandbox clones.

Each walk runs the unmodified .github/workflows file with its `${{ }}` expressions, step outputs,
`if:` conditions and GITHUB_OUTPUT, on a pull_request, pull_request_target or push event, in a
sandbox clone of HEAD with a bare origin. GitHub's API answers through the gh stand-in
(tests/workflows/act/), which also records each call. A pull request is played as GitHub plays it
(the harness): its own workflow files under pull_request, the base branch's under
pull_request_target. No root: the integration tier.
"""

import json
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from act_harness import (
    TOKEN,
    ActRun,
    Sandbox,
    pull_request_payload,
    run_act,
    step_outputs,
    workflow_run_payload,
)
from workflow_helpers import git

from gitops import doctor
from tests.workflows.act.github_api import ACTIONS_APP, EVIDENCE_APP, EVIDENCE_KEY, GitHubApi
from training.params import load_artifact

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
    list the files the pull request changes as GitHub does (base...head). Return the payload; the
    sandbox clone is back where it was (the harness checks out what each event runs)."""
    base_sha = git(sandbox.work, "rev-parse", f"origin/{base}").strip()
    before = subprocess.run(
        ["git", "symbolic-ref", "-q", "--short", "HEAD"], cwd=sandbox.work, capture_output=True,
        text=True, check=False,
    ).stdout.strip() or git(sandbox.work, "rev-parse", "HEAD").strip()  # fmt: skip
    git(sandbox.work, "switch", "-q", "-C", head, base_sha)
    for path, text in changes.items():
        (sandbox.work / path).parent.mkdir(parents=True, exist_ok=True)
        (sandbox.work / path).write_text(text)
        git(sandbox.work, "add", path)
    git(sandbox.work, "commit", "-qm", f"change {', '.join(changes)}")
    head_sha = git(sandbox.work, "rev-parse", "HEAD").strip()
    git(sandbox.work, "switch", "-q", "--detach", before)
    sandbox.pr_files.write_text(git(sandbox.work, "diff", "--name-only", base_sha, head_sha))
    return pull_request_payload(
        number=number,
        head_ref=head,
        base_ref=base,
        head_sha=head_sha,
        base_sha=base_sha,
        head_repo=head_repo,
    )


#: GitHub's API in these walks (the stand-in, the evidence App installed), set by `github`.
API: list[GitHubApi] = []


@pytest.fixture(scope="module", autouse=True)
def github() -> Iterator[GitHubApi]:
    """The API stand-in the app-token stand-in mints the evidence App's tokens from, with the
    App whose id the sandbox's evidence.toml names; the run token is the GitHub Actions app's."""
    with GitHubApi() as api:
        api.add_app(EVIDENCE_APP["id"], EVIDENCE_APP["slug"], EVIDENCE_KEY)
        api.add_app_token(TOKEN, ACTIONS_APP)
        API[:] = [api]
        yield api
        API.clear()


def run_pull_request(
    sandbox: Sandbox, payload: dict[str, object], event: str = "pull_request", **options: Any
) -> ActRun:
    """act on EVENT for PAYLOAD, with the API stand-in and the evidence App's key (the secret of
    the environment `evidence`, which the harness gives no pull_request run)."""
    path = sandbox.root / "event.json"
    path.write_text(json.dumps(payload))
    secrets = {"EVIDENCE_APP_KEY": EVIDENCE_KEY, **options.pop("secrets", {})}
    return run_act(sandbox, event, payload=path, api=API[0].url, secrets=secrets, **options)


def guard_lines(run: ActRun) -> list[str]:
    """The lines gitops.check_pr_order printed, as act shows a step's output: in the job order
    (act prefixes each line with ``[WORKFLOW/JOB]``, padded; the job image prints its own)."""
    return re.findall(r"\[[^\]]*/order *\] *\| ((?:ok|error): .*)", run.output)


def image_lines(run: ActRun) -> list[str]:
    """The lines gitops.attestation printed in pr-guard's job image."""
    return re.findall(r"\[[^\]]*/image *\] *\| ((?:ok|error): .*)", run.output)


def statuses(sandbox: Sandbox) -> list[tuple[str, str, str, str]]:
    """The commit statuses the last run posted through the gh stand-in: (sha, context, state,
    the slug of the app whose token posted it, as the API stand-in knows the token)."""
    posted = [c for c in sandbox.calls() if "/statuses/" in " ".join(c["argv"])]
    return [
        (call["argv"][3].rsplit("/", 1)[1], fields["context"], fields["state"], app["slug"])
        for call in posted
        for fields in [dict(f.split("=", 1) for f in call["argv"][5::2])]
        for app in [(API[0].identities.get(call["env"]["GH_TOKEN"]) or {}).get("app") or {
            "slug": "unknown"}]
    ]  # fmt: skip


def required_check(sandbox: Sandbox, sha: str, context: str) -> str:
    """What GitHub's required check CONTEXT finds on SHA after the last run, pinned as the
    rulesets of gitops.doctor pin it (integration_id: the evidence App): the newest state of the
    statuses that app posted, or `pending` when it posted none."""
    (pinned,) = {
        check["integration_id"]
        for ruleset in doctor.rulesets(EVIDENCE_APP["id"])[:2]
        for check in ruleset["rules"][3]["parameters"]["required_status_checks"]
        if check["context"] == context
    }
    slug = {EVIDENCE_APP["id"]: EVIDENCE_APP["slug"], ACTIONS_APP["id"]: ACTIONS_APP["slug"]}
    states = [s[2] for s in statuses(sandbox) if s[:2] == (sha, context) and s[3] == slug[pinned]]
    return states[-1] if states else "pending"


def switched_off(sandbox: Sandbox, workflow: str, job: str, **checkout: object) -> str:
    """WORKFLOW as main has it, edited as a pull request that switches off its check JOB would:
    on pull_request (the trigger under which GitHub runs the pull request's own copy) and JOB's
    last step `true`; with CHECKOUT, JOB's checkout `with:` is that instead (checkout={} checks
    out what the event gives: under pull_request, the pull request's merge commit)."""
    text = git(sandbox.origin, "show", f"main:.github/workflows/{workflow}")
    document = yaml.safe_load(text)
    on = document.pop(True)  # `on:` loads as True
    on["pull_request"] = on.pop("pull_request_target")
    for each in document["jobs"].values():
        if "if" in each:
            each["if"] = each["if"].replace("'pull_request_target'", "'pull_request'")
    steps = document["jobs"][job]["steps"]
    if "checkout" in checkout:
        steps[0]["with"] = checkout["checkout"]
    else:  # the check: the last step but the one reading the evidence App's id
        [step for step in steps if "run" in step and "app-id" not in step["run"]][-1]["run"] = (
            "true"
        )
    return yaml.safe_dump({"name": document.pop("name"), "on": on, **document}, sort_keys=False)


# --- pr-guard.yml ---------------------------------------------------------------------------
# GitHub runs it on pull_request_target: the workflow file and the code as the base branch has
# them; the result is posted as the commit status `order` on the pull request's head.

PR_GUARD_EVENT = "pull_request_target"


def test_pr_guard_passes_an_experiment_pull_request_into_main(pr_sandbox: Sandbox) -> None:
    payload = open_pull_request(pr_sandbox, "experiment/deeper", "main", {"docs/notes.md": "x\n"})
    run = run_pull_request(pr_sandbox, payload, PR_GUARD_EVENT, workflow="pr-guard.yml")
    assert run.returncode == 0, run.output
    order = "experiment/* -> main -> staging -> production"
    assert guard_lines(run) == [f"ok: experiment/deeper -> main keeps the order {order}"]
    head = payload["pull_request"]["head"]["sha"]  # type: ignore[index]
    assert [call["argv"][:2] for call in pr_sandbox.calls()] == [
        ["pr", "diff"],
        ["api", "--method"],
    ]
    assert pr_sandbox.calls()[0]["argv"] == [
        "pr",
        "diff",
        "7",
        "--repo",
        "acme/modelops",
        "--name-only",
    ]
    assert statuses(pr_sandbox) == [(head, "order", "success", EVIDENCE_APP["slug"])]


def test_pr_guard_fails_an_experiment_pull_request_that_pins_an_image_digest(
    pr_sandbox: Sandbox,
) -> None:
    """The defect of issue 21, point 4: an experiment put any digest into the dev overlay (and
    its rendered file), promote.yml skipped the build for it, and promotions carried it on."""
    overlay, render = "kustomize/overlays/dev/kustomization.yaml", "rendered/dev/manifests.yaml"
    theirs = "sha256:" + "ee" * 32
    changes = {
        path: re.sub(r"sha256:0{64}", theirs, git(pr_sandbox.origin, "show", f"main:{path}"))
        for path in (overlay, render)
    }
    assert all(theirs in text for text in changes.values())
    payload = open_pull_request(pr_sandbox, "experiment/pin", "main", changes)
    run = run_pull_request(pr_sandbox, payload, PR_GUARD_EVENT, workflow="pr-guard.yml")
    assert run.returncode == 1, run.output
    [line] = guard_lines(run)
    assert line.startswith(
        "error: experiment/pin changes the image pin (digest) of kustomize/overlays/dev: only the "
        "deploy pull request of promote.yml sets it"
    )
    head = payload["pull_request"]["head"]["sha"]  # type: ignore[index]
    assert statuses(pr_sandbox) == [(head, "order", "failure", EVIDENCE_APP["slug"])]


def test_pr_guard_fails_a_deploy_pull_request_that_also_changes_the_server(
    pr_sandbox: Sandbox,
) -> None:
    sha = git(pr_sandbox.work, "rev-parse", "origin/main").strip()
    changes = {
        "kustomize/overlays/dev/kustomization.yaml": "# the new tag\n",
        "serving/app.py": "# and something else\n",
    }
    payload = open_pull_request(pr_sandbox, f"deploy/dev/{sha}", "main", changes)
    run = run_pull_request(pr_sandbox, payload, PR_GUARD_EVENT, workflow="pr-guard.yml")
    assert run.returncode == 1, run.output
    [line] = guard_lines(run)
    assert line.startswith(f"error: deploy/dev/{sha} may change only kustomize/overlays/dev/")
    assert "but changes serving/app.py: open another pull request" in line
    head = payload["pull_request"]["head"]["sha"]  # type: ignore[index]
    assert statuses(pr_sandbox) == [(head, "order", "failure", EVIDENCE_APP["slug"])]


def test_pr_guard_fails_a_forks_branch_named_like_a_promotion_into_production(
    pr_sandbox: Sandbox,
) -> None:
    head = "promote/prod/0123456789ab"
    payload = open_pull_request(
        pr_sandbox, head, "production", {"README.md": "x\n"}, head_repo="mallory/modelops"
    )
    run = run_pull_request(pr_sandbox, payload, PR_GUARD_EVENT, workflow="pr-guard.yml")
    assert run.returncode == 1, run.output
    [line] = guard_lines(run)
    assert line.startswith(
        "error: a pull request from the fork mallory/modelops may only come from an experiment/*"
        f" branch, not from {head}"
    )


def test_a_pull_request_that_switches_off_the_order_check_in_its_own_tree_is_still_refused(
    pr_sandbox: Sandbox,
) -> None:
    """A promote/prod/* branch into staging (it skips the order) whose tree runs pr-guard.yml on
    pull_request with the check replaced by `true`, and pins a digest no environment ran in
    rendered/prod. GitHub plays it on pull_request_target, from the base's file: refused. Played on
    pull_request, the trigger the guard had before, the pull request's own copy runs and passes:
    the defect the move to pull_request_target fixes (and proof that the harness runs the pull
    request's workflow file under pull_request)."""
    head = "promote/prod/0123456789ab"
    dev = git(pr_sandbox.origin, "show", "main:rendered/dev/manifests.yaml")
    pinned = re.sub(r"@sha256:0{64}", "@sha256:" + "ee" * 32, dev)
    assert pinned != dev
    changes = {
        ".github/workflows/pr-guard.yml": switched_off(pr_sandbox, "pr-guard.yml", "order"),
        "rendered/prod/manifests.yaml": pinned,
    }
    payload = open_pull_request(pr_sandbox, head, "staging", changes)
    sha = payload["pull_request"]["head"]["sha"]  # type: ignore[index]

    run = run_pull_request(pr_sandbox, payload, "pull_request_target", workflow="pr-guard.yml")
    assert run.returncode == 1, run.output
    [line] = guard_lines(run)
    assert line.startswith("error: staging accepts pull requests only from promote/staging/*")
    assert statuses(pr_sandbox) == [(sha, "order", "failure", EVIDENCE_APP["slug"])]
    assert required_check(pr_sandbox, sha, "order") == "failure"

    # Its own copy on pull_request: the check passes (`true`), but GitHub gives a pull_request
    # run (refs/pull/N/merge) no job of the environment `evidence`: no App token, no status.
    run = run_pull_request(pr_sandbox, payload, "pull_request", workflow="pr-guard.yml")
    assert run.returncode == 1, run.output
    assert guard_lines(run) == []
    assert "A token of the evidence App" in run.output
    assert statuses(pr_sandbox) == []

    # Its own copy posting with the workflow token (statuses: write), as the guard did before:
    # the status is GitHub Actions', which the required check, pinned to the App, does not take.
    document = yaml.safe_load(changes[".github/workflows/pr-guard.yml"])
    status = document["jobs"]["status"]
    del status["environment"]
    status["permissions"] = {"statuses": "write"}
    status["steps"] = status["steps"][1:]
    status["steps"][0]["env"]["GH_TOKEN"] = "${{ github.token }}"  # noqa: S105 - an expression
    changes[".github/workflows/pr-guard.yml"] = yaml.safe_dump(document, sort_keys=False)
    payload = open_pull_request(pr_sandbox, head, "staging", changes)
    sha = payload["pull_request"]["head"]["sha"]  # type: ignore[index]
    run = run_pull_request(pr_sandbox, payload, "pull_request", workflow="pr-guard.yml")
    assert run.returncode == 0, run.output
    assert statuses(pr_sandbox) == [(sha, "order", "success", ACTIONS_APP["slug"])]
    assert required_check(pr_sandbox, sha, "order") == "pending"


def test_the_code_of_a_pull_request_never_runs_in_the_order_check(pr_sandbox: Sandbox) -> None:
    """The pull request's gitops/check_pr_order.py and Makefile write a marker and pass; under
    pull_request_target the base's check runs and refuses, and no marker is written. The marker
    does catch its code running: the same pull request with its own pr-guard.yml on pull_request,
    checking out what that event gives (the merge commit), writes it."""
    marker = pr_sandbox.root / "the-pull-requests-code-ran"
    marker.unlink(missing_ok=True)
    sha = git(pr_sandbox.work, "rev-parse", "origin/main").strip()
    changes = {
        "gitops/check_pr_order.py": "from pathlib import Path\n"
        f"Path({str(marker)!r}).write_text('check_pr_order')\nprint('ok: trust me')\n",
        "Makefile": f"venv tools:\n\techo make > {marker}\n",
    }
    payload = open_pull_request(pr_sandbox, f"deploy/dev/{sha}", "main", changes)
    run = run_pull_request(pr_sandbox, payload, "pull_request_target", workflow="pr-guard.yml")
    assert run.returncode == 1, run.output
    [line] = guard_lines(run)
    assert line.startswith(f"error: deploy/dev/{sha} may change only kustomize/overlays/dev/")
    assert "but changes Makefile and 1 more" in line
    # the job image ran too (a deploy/* pull request), with the base's Makefile and tools
    [checked] = image_lines(run)
    base = payload["pull_request"]["base"]["sha"]  # type: ignore[index]
    assert checked.startswith("error: image ") and checked.endswith(
        f"cannot be checked: evidence.toml on {base} names no image signing key ([images] "
        "public_key; python -m gitops.attestation keygen, docs/workflow.md)"
    )
    assert not marker.exists()

    changes[".github/workflows/pr-guard.yml"] = switched_off(
        pr_sandbox, "pr-guard.yml", "order", checkout={"persist-credentials": False}
    )
    payload = open_pull_request(pr_sandbox, f"deploy/dev/{sha}", "main", changes)
    run = run_pull_request(pr_sandbox, payload, "pull_request", workflow="pr-guard.yml")
    assert run.returncode == 1, run.output  # its status job gets no App key on pull_request
    assert guard_lines(run) == ["ok: trust me"]
    assert marker.read_text() == "check_pr_order"


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
    name = load_artifact().name  # the sandbox is a clone of HEAD
    assert outputs["model_ref"] == f"{name}@v0.1.0"
    assert outputs["assigned"] == "false"
    assert sandbox.origin_refs("refs/tags/") == [f"refs/tags/{name}@v0.1.0"]
    head = git(sandbox.work, "rev-parse", "HEAD").strip()
    tagged = git(sandbox.origin, "rev-list", "-n1", f"{name}@v0.1.0").strip()
    assert tagged == head
    assert "no login needed for 127.0.0.1:5999" in run.output  # the registry host output
    assert [call["argv"] for call in sandbox.calls()] == [["auth", "setup-git"]]


# --- training-report.yml on a pull request that changes a hyper-parameter, then ----------------
# training-comment.yml on the workflow_run of that run. The comment walk stops where CML is
# installed (npm, the network): the report it would post is fetched.


def test_training_report_keeps_the_report_and_its_plots_as_the_runs_artifact_for_the_comment(
    report_sandbox: tuple[Sandbox, str],
) -> None:
    sandbox, dvc_config = report_sandbox
    params = (sandbox.work / "training/params.yaml").read_text()
    changed = params.replace("  C: 1.0 ", "  C: 0.05", 1)
    assert changed != params
    payload = open_pull_request(
        sandbox, "experiment/smaller-c", "main", {"training/params.yaml": changed}
    )
    report_run = run_pull_request(
        sandbox, payload, workflow="training-report.yml", secrets={"DVC_CONFIG": dvc_config}
    )
    assert report_run.returncode == 0, report_run.output
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

    pull_request = payload["pull_request"]
    assert isinstance(pull_request, dict)
    finished = workflow_run_payload(
        report_run, workflow="training-report", pull_request=7, head_sha=pull_request["head"]["sha"]
    )
    comment_run = run_pull_request(
        sandbox, finished, event="workflow_run", workflow="training-comment.yml",
        stop_before=CML_STEP,
    )  # fmt: skip
    assert comment_run.stopped_before == CML_STEP, comment_run.output
    [download] = sandbox.downloads()
    assert download["name"] == "training-report" and download["run_id"] == str(report_run.number)
    assert download["files"] == sorted([*pngs, "report.md"])
    fetched = Path(download["path"])
    assert (fetched / "report.md").read_text() == report
    assert fetched.parent.name != "work" and not (fetched.parent / "training").exists()


def test_training_comment_posts_nothing_for_a_failed_report_or_a_forks_pull_request(
    report_sandbox: tuple[Sandbox, str],
) -> None:
    """The comment job's if: as GitHub evaluates it on the event: no artifact is fetched for a
    report run that failed, nor for a pull request from a fork (GitHub lists none for it)."""
    sandbox, _ = report_sandbox
    earlier = ActRun(0, "", number=0)
    head = git(sandbox.work, "rev-parse", "HEAD").strip()
    for case in (
        {"conclusion": "failure"},
        {"head_repo": "someone/modelops"},
        {"event": "push"},
    ):
        finished = workflow_run_payload(
            earlier, workflow="training-report", pull_request=7, head_sha=head, **case
        )
        run = run_pull_request(
            sandbox, finished, event="workflow_run", workflow="training-comment.yml"
        )
        assert run.returncode == 0, run.output
        assert not run.step_started("Fetch the report the pull request's run made"), case
        assert sandbox.downloads() == [], case
