"""environments.yml run by act: a promotion proposed by hand (workflow_dispatch), its pull request
verified (pull_request into staging), and the stage job after the merge (push to staging).

The sandbox is a clone of HEAD with a bare origin holding main, staging and production, where dev
runs v0.1.0 as promote.yml's deploy pull request leaves it (gitops.set_image, gitops.rendered,
merged, gitops.assign_stage) and its rendered manifests passed a smoke test (the record gitops.smoke
--record writes; the check itself runs against a real server in tests/serving). The walks then run
the workflow file; after each one the test reads the origin: branches, tags, notes, and the pull
request the gh stand-in recorded.
"""

import json
from collections.abc import Callable

import pytest
from act_harness import Sandbox, pull_request_payload, run_act
from workflow_helpers import git, run_tool, tool_env

from gitops import environments, rendered, smoke

pytestmark = pytest.mark.integration  # act running real git, GTO and kustomize

NAME = "diagnosis-classifier"
DEV, STAGING, PROD = environments.load()
DIGEST = "sha256:" + "d1" * 32
MODEL_SHA256 = "5e" * 32


def sh(sandbox: Sandbox, *args: str) -> str:
    import subprocess

    done = subprocess.run(args, cwd=sandbox.work, env=tool_env(), capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(args)}: {done.stderr}"
    return done.stdout


def mirror_origin(sandbox: Sandbox) -> None:
    """The act checkouts clone the sandbox clone: give it every ref the origin has, as GitHub
    would serve them."""
    git(sandbox.work, "fetch", "-q", "--update-head-ok", "--tags", "--force", "origin",
        "+refs/heads/*:refs/heads/*", "+refs/notes/*:refs/notes/*")  # fmt: skip


@pytest.fixture(scope="module")
def dev_runs_a_release(
    new_sandbox: Callable[[str], Sandbox], monkeypatch_module: pytest.MonkeyPatch
) -> Sandbox:
    sandbox = new_sandbox("environments")
    work = sandbox.work
    git(work, "config", "user.name", "test")
    git(work, "config", "user.email", "test@example.org")
    git(work, "push", "-q", "origin", "HEAD:refs/heads/staging", "HEAD:refs/heads/production")
    sh(sandbox, "gto", "register", NAME, "HEAD", "--version", "v0.1.0")
    commit = git(work, "rev-parse", "HEAD").strip()
    for args in (
        ("set_image", "--digest", DIGEST, "--model-version", "v0.1.0",
         "--model-sha256", MODEL_SHA256, "dev", commit),
        ("rendered", "dev"),
    ):  # fmt: skip
        run_tool(*args, cwd=work)
    git(work, "commit", "-qam", "deploy(dev): v0.1.0")
    git(work, "push", "-q", "--tags", "origin", "main")
    run_tool("assign_stage", "dev", "--push", "origin", cwd=work)
    git(work, "fetch", "-q", "origin")
    monkeypatch_module.chdir(work)
    smoke.record(DEV, "origin/main", {"environment": "dev", "passed": True, "image": "walk"})
    git(work, "push", "-q", "origin", smoke.NOTES_REF)
    mirror_origin(sandbox)
    return sandbox


@pytest.fixture(scope="module")
def monkeypatch_module() -> pytest.MonkeyPatch:
    patch = pytest.MonkeyPatch()
    yield patch
    patch.undo()


@pytest.fixture(scope="module")
def proposed(dev_runs_a_release: Sandbox) -> tuple[Sandbox, str]:
    """The walk of `Run workflow: staging, promote`: the sandbox and the pushed branch."""
    sandbox = dev_runs_a_release
    event = sandbox.root / "dispatch.json"
    event.write_text(json.dumps({"inputs": {"environment": "staging", "action": "promote"}}))
    run = run_act(sandbox, "workflow_dispatch", workflow="environments.yml", payload=event)
    assert run.returncode == 0, run.output
    (branch,) = sandbox.origin_refs("refs/heads/promote/")
    return sandbox, branch.removeprefix("refs/heads/")


def test_a_promotion_run_by_hand_pushes_one_branch_and_opens_its_pull_request(
    proposed: tuple[Sandbox, str],
) -> None:
    sandbox, branch = proposed
    assert branch.startswith("promote/staging/")
    (call,) = [c for c in sandbox.calls() if c["argv"][:2] == ["pr", "create"]]
    argv = call["argv"]
    assert argv[argv.index("--base") + 1] == "staging"
    assert argv[argv.index("--head") + 1] == branch
    body = argv[argv.index("--body") + 1]
    assert f"+++ b/{rendered.path(STAGING)}" in body
    assert f"@{DIGEST}" in body and "| smoke |" in body
    promoted = git(sandbox.origin, "show", f"{branch}:{rendered.path(STAGING)}")
    release = rendered.release(promoted)
    assert (release.digest, release.model_version, release.model_sha256) == (
        DIGEST, "v0.1.0", MODEL_SHA256)  # fmt: skip
    assert release.namespace == STAGING.namespace


def test_the_verify_check_passes_the_promotion_and_the_stage_job_follows_the_merge(
    proposed: tuple[Sandbox, str],
) -> None:
    sandbox, branch = proposed
    head = git(sandbox.origin, "rev-parse", branch).strip()
    base = git(sandbox.origin, "rev-parse", "staging").strip()
    mirror_origin(sandbox)
    git(sandbox.work, "update-ref", "refs/pull/9/head", head)  # what GitHub serves for the PR
    payload = pull_request_payload(
        number=9, head_ref=branch, base_ref="staging", head_sha=head, base_sha=base
    )
    event = sandbox.root / "pull-request.json"
    event.write_text(json.dumps(payload))
    run = run_act(sandbox, "pull_request", workflow="environments.yml", payload=event)
    assert run.returncode == 0, run.output
    assert f"ok: {head[:12]} promotes dev's release to staging, every gate passed" in run.output
    # the merge (a fast-forward), then the push event on staging
    git(sandbox.origin, "update-ref", "refs/heads/staging", head, base)
    mirror_origin(sandbox)
    git(sandbox.work, "switch", "-q", "staging")
    try:
        run = run_act(sandbox, "push", workflow="environments.yml")
    finally:
        git(sandbox.work, "switch", "-q", "main")
    assert run.returncode == 0, run.output
    # GTO numbers the assignments of an artifact across its stages: dev had #1
    staging = [t for t in sandbox.origin_refs("refs/tags/") if f"{NAME}#staging#" in t]
    assert staging == [f"refs/tags/{NAME}#staging#2"], run.output
    mirror_origin(sandbox)
    holder = sh(sandbox, "gto", "show", f"{NAME}#staging", "--ref")
    assert holder.strip() == f"{NAME}@v0.1.0"


def test_the_verify_check_fails_a_hand_edited_promotion(proposed: tuple[Sandbox, str]) -> None:
    sandbox, branch = proposed
    base = git(sandbox.origin, "rev-parse", "staging").strip()
    work = sandbox.work
    git(work, "switch", "-q", "--detach", git(sandbox.origin, "rev-parse", branch).strip())
    try:
        path = work / rendered.path(STAGING)
        path.write_text(path.read_text().replace("maxReplicas: 4", "maxReplicas: 40"))
        git(work, "commit", "-qam", "promote(staging): more replicas, quietly")
        head = git(work, "rev-parse", "HEAD").strip()
    finally:
        git(work, "switch", "-q", "main")
    git(work, "update-ref", "refs/pull/10/head", head)
    payload = pull_request_payload(
        number=10, head_ref=branch, base_ref="staging", head_sha=head, base_sha=base
    )
    event = sandbox.root / "pull-request-edited.json"
    event.write_text(json.dumps(payload))
    run = run_act(sandbox, "pull_request", workflow="environments.yml", payload=event)
    assert run.returncode == 1, run.output
    assert f"error: verify: {head[:12]} is not a promotion onto staging's tip" in run.output
