"""The branch rules of the promotion flow: which stage a branch deploys, which PRs may merge."""

import subprocess
from pathlib import Path

import pytest
from workflow_helpers import REPO, run_step, run_tool, tool_env


@pytest.mark.parametrize(
    ("branch", "stage"),
    [("main", "dev"), ("staging", "staging"), ("production", "prod"), ("refs/heads/main", "dev")],
)
def test_it_maps_each_environment_branch_to_its_stage(branch: str, stage: str) -> None:
    assert run_tool("stage_for_branch", branch).stdout == f"{stage}\n"


@pytest.mark.parametrize("branch", ["experiment/lr", "prod", "develop", ""])
def test_it_refuses_a_branch_that_is_no_environment_with_one_line(branch: str) -> None:
    result = run_tool("stage_for_branch", branch, check=False)
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert repr(branch) in result.stderr
    assert "main -> dev" in result.stderr


@pytest.mark.parametrize(
    ("name", "branch"), [("dev", "main"), ("staging", "staging"), ("prod", "production")]
)
def test_it_names_each_environments_branch(name: str, branch: str) -> None:
    assert run_tool("stage_for_branch", "--branch-of", name).stdout == f"{branch}\n"


@pytest.mark.parametrize("name", ["qa", "production", "", "dev\n::error::forged", "Dev"])
def test_it_refuses_a_name_that_is_no_environment_with_one_line(name: str) -> None:
    """--branch-of reads a repository dispatch's payload, which anyone with push rights writes."""
    result = run_tool("stage_for_branch", "--branch-of", name, check=False)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"error: no environment {name!r} (one of dev, staging, prod)"
    ]


@pytest.mark.parametrize(
    ("head", "base"),
    [
        ("experiment/more-trees", "main"),
        ("promote/staging/0123456789ab", "staging"),
        ("promote/prod/0123456789ab", "production"),
        ("rollback/prod/0123456789ab", "production"),
        ("revert-42-promote/prod/0123456789ab", "production"),
        ("deploy/dev/0123abc", "main"),
        ("revert-12-experiment/more-trees", "main"),
        ("dependabot/github_actions/actions/checkout-4.3.0", "main"),
        ("fix/typo", "experiment/c"),
    ],
)
def test_it_lets_a_pull_request_through_in_the_environment_order(head: str, base: str) -> None:
    result = run_tool("check_pr_order", head, base)
    assert result.stdout.startswith(f"ok: {head} -> {base}")


@pytest.mark.parametrize(
    ("head", "base", "reason"),
    [
        ("experiment/more-trees", "staging", "experiment/more-trees may only be merged into main"),
        ("experiment/more-trees", "production", "may only be merged into main"),
        ("main", "production", "production accepts pull requests only from promote/prod/*"),
        ("staging", "production", "production accepts pull requests only from promote/prod/*"),
        (
            "main",
            "staging",
            "staging accepts pull requests only from promote/staging/* or "
            "rollback/staging/* or revert-*, not from main",
        ),
        ("promote/prod/0123456789ab", "staging", "not from promote/prod/0123456789ab"),
        ("promote/staging/0123456789ab", "production", "not from promote/staging/0123456789ab"),
        ("staging", "main", "main accepts pull requests only from experiment/*"),
        ("feature/x", "main", "not from feature/x"),
        ("deploy/staging/0123abc", "staging", "not from deploy/staging/0123abc"),
        ("deploy/prod/0123abc", "production", "not from deploy/prod/0123abc"),
        (
            "experiment/c-tuning",
            "experiment/c",
            "may only be merged into main, not into experiment/c",
        ),
    ],
)
def test_it_fails_a_pull_request_that_breaks_the_order(head: str, base: str, reason: str) -> None:
    result = run_tool("check_pr_order", head, base, check=False)
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1
    assert reason in result.stderr


def test_it_refuses_missing_arguments_in_one_line() -> None:
    result = run_tool("check_pr_order", "main", check=False)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: the following arguments are required: BASE_BRANCH (see --help)"
    ]


REPO_NAME = "acme/modelops"


@pytest.mark.parametrize(
    ("head", "base"),
    [
        ("promote/prod/0123456789ab", "production"),
        ("rollback/staging/0123456789ab", "staging"),
        ("revert-7-promote/prod/0123456789ab", "production"),
        ("deploy/dev/0123abc", "main"),
    ],
)
def test_a_forks_branch_named_like_an_environment_or_automation_branch_is_refused(
    head: str, base: str
) -> None:
    result = run_tool(
        "check_pr_order", "--head-repo", "mallory/modelops", "--base-repo", REPO_NAME, head, base,
        check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1
    assert "from the fork mallory/modelops may only come from an experiment/* branch" in (
        result.stderr
    )


def test_a_forks_experiment_and_the_repositorys_own_branches_pass_the_origin_check() -> None:
    for head, base, head_repo in [
        ("experiment/lr", "main", "someone/modelops"),
        ("promote/prod/0123456789ab", "production", REPO_NAME),
        ("promote/staging/0123456789ab", "staging", "ACME/modelops"),  # case-insensitive
    ]:
        args = ("--head-repo", head_repo, "--base-repo", REPO_NAME, head, base)
        assert run_tool("check_pr_order", *args).stdout.startswith(f"ok: {head} -> {base}")


def check_content(
    head: str, changed: list[str], base: str = "main"
) -> subprocess.CompletedProcess[str]:
    return run_tool(
        "check_pr_order", "--changed-files", "-", head, base, check=False,
        input_text="\n".join(changed) + "\n",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("head", "changed"),
    [
        ("deploy/dev/0123abc", ["kustomize/overlays/dev/kustomization.yaml"]),
        (
            "deploy/dev/0123abc",
            [
                "kustomize/overlays/dev/kustomization.yaml",
                "kustomize/overlays/dev/provenance.yaml",
                "rendered/dev/manifests.yaml",
            ],
        ),
        ("dependabot/github_actions/actions/checkout-5", [".github/workflows/ci.yml"]),
        (
            "dependabot/pip/requirements/flask-3.2",
            ["requirements/dev.txt", "requirements/serving.txt"],
        ),
        ("experiment/anything", ["serving/app.py", "kustomize/overlays/prod/scaling.yaml"]),
        ("experiment/anything", ["charts/model/values.yaml", "rendered/dev/manifests.yaml"]),
    ],
)
def test_an_automated_branch_carrying_only_what_its_name_says_passes(
    head: str, changed: list[str]
) -> None:
    result = check_content(head, changed)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("head", "changed", "reason"),
    [
        (
            "deploy/dev/0123abc",
            ["kustomize/overlays/dev/kustomization.yaml", "serving/app.py"],
            "deploy/dev/0123abc may change only kustomize/overlays/dev/kustomization.yaml",
        ),
        (
            "deploy/dev/0123abc",
            ["kustomize/overlays/prod/kustomization.yaml"],
            "but changes kustomize/overlays/prod/kustomization.yaml",
        ),
        (
            "deploy/qa/0123abc",
            ["kustomize/overlays/dev/kustomization.yaml"],
            "names no stage a deploy pull request may set (deploy/dev/<sha>",
        ),
        (
            "deploy/prod/0123abc",
            ["kustomize/overlays/prod/kustomization.yaml"],
            "names no stage a deploy pull request may set",
        ),
        (
            "experiment/sneaky",
            ["serving/app.py", "rendered/prod/manifests.yaml"],
            "a pull request into main may not change rendered/prod/manifests.yaml: prod changes "
            "only by its promotion into production",
        ),
        (
            "experiment/sneaky",
            ["rendered/staging/manifests.yaml"],
            "may not change rendered/staging/manifests.yaml",
        ),
        (
            "dependabot/pip/x",
            ["requirements/dev.txt", "kustomize/base/deployment.yaml", "serving/app.py"],
            "but changes kustomize/base/deployment.yaml and 1 more",
        ),
    ],
)
def test_an_automated_looking_branch_carrying_other_changes_is_refused_in_one_line(
    head: str, changed: list[str], reason: str
) -> None:
    result = check_content(head, changed)
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1
    assert reason in result.stderr


GUARD_STEP = "Check the pull request's branches, origin and content"
DEV_PROVENANCE = "kustomize/overlays/dev/provenance.yaml\n"


@pytest.mark.parametrize(
    ("head", "head_repo", "changed", "passes"),
    [
        ("deploy/dev/0123abc", REPO_NAME, "kustomize/overlays/dev/provenance.yaml\n", True),
        ("deploy/dev/0123abc", REPO_NAME, "kustomize/base/deployment.yaml\n", False),
        (
            "deploy/dev/0123abc",
            "mallory/modelops",
            "kustomize/overlays/dev/provenance.yaml\n",
            False,
        ),
    ],
)
def test_the_pr_guard_workflow_step_passes_the_origin_and_the_changed_files(
    tmp_path: Path, head: str, head_repo: str, changed: str, passes: bool
) -> None:
    (tmp_path / "changed-files").write_text(changed)
    env = tool_env(
        HEAD_REF=head, BASE_REF="main", HEAD_REPO=head_repo, GITHUB_REPOSITORY=REPO_NAME,
        RUNNER_TEMP=str(tmp_path),
    )  # fmt: skip
    result = run_step("pr-guard.yml", GUARD_STEP, REPO, env)
    assert (result.returncode == 0) is passes, result.stderr


def test_a_promotion_into_staging_may_not_change_prods_rendered_manifests() -> None:
    ok = check_content(
        "promote/staging/0123456789ab",
        ["rendered/dev/manifests.yaml", "rendered/staging/manifests.yaml", "serving/app.py"],
        "staging",
    )
    assert ok.returncode == 0, ok.stderr
    result = check_content(
        "promote/staging/0123456789ab", ["rendered/prod/manifests.yaml"], "staging"
    )
    assert result.returncode == 1
    assert "into staging may not change rendered/prod/manifests.yaml" in result.stderr


def test_the_guard_names_the_rendered_file_as_gitops_rendered_does() -> None:
    from gitops import check_pr_order, environments, rendered

    for env in environments.load():
        assert check_pr_order.RENDERED.format(env=env.name) == rendered.path(env)


def pinned_repo(tmp_path: Path) -> tuple[Path, str]:
    """A repository with this checkout's overlays on main (a bare origin's clone); main's commit."""
    repo = tmp_path / "work"
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    subprocess.run(["cp", "-r", str(REPO / "kustomize"), str(repo)], check=True)
    for args in (("config", "user.name", "t"), ("config", "user.email", "t@example.org"),
                 ("add", "-A"), ("commit", "-qm", "the overlays")):  # fmt: skip
        subprocess.run(["git", *args], cwd=repo, check=True, env=tool_env())
    main = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True)
    return repo, main.stdout.strip()


def branch_with(repo: Path, branch: str, base: str, old: str, new: str, path: str) -> str:
    """BRANCH from BASE with OLD replaced by NEW in PATH, committed; its commit."""
    subprocess.run(["git", "switch", "-qc", branch, base], cwd=repo, check=True)
    file = repo / path
    assert old in file.read_text()
    file.write_text(file.read_text().replace(old, new))
    subprocess.run(["git", "commit", "-qam", branch], cwd=repo, check=True, env=tool_env())
    done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True)
    return done.stdout.strip()


def test_an_experiment_pull_request_that_pins_an_image_digest_in_an_overlay_is_refused(
    tmp_path: Path,
) -> None:
    """The defect of issue 21, point 4: experiment/* (or any pull request into main but
    promote.yml's deploy/*) put any digest into the dev overlay, and promotions carried it on."""
    repo, main = pinned_repo(tmp_path)
    overlay = "kustomize/overlays/dev/kustomization.yaml"
    zero = "sha256:" + "0" * 64
    head = branch_with(repo, "experiment/pin", main, zero, "sha256:" + "e" * 64, overlay)
    for branch in ("experiment/pin", "revert-3-deploy/dev/abc", "dependabot/pip/x"):
        done = subprocess.run(
            ["python", "-m", "gitops.check_pr_order", "--pins", main, head, branch, "main"],
            cwd=repo, env=tool_env(), capture_output=True, text=True,
        )  # fmt: skip
        assert done.returncode == 1
        assert done.stderr.startswith(
            f"error: {branch} changes the image pin (digest) of kustomize/overlays/dev: only the "
            "deploy pull request of promote.yml sets it"
        ), done.stderr
        assert len(done.stderr.splitlines()) == 1
    # Without --pins (the guard as it was) the same pull request passes: the check is the pins.
    assert run_tool("check_pr_order", "experiment/pin", "main", cwd=repo).returncode == 0
    # promote.yml's deploy pull request sets it (pr-guard's image job checks its attestation).
    ok = run_tool(
        "check_pr_order", "--pins", main, head, "deploy/dev/" + "a" * 40, "main", cwd=repo
    )
    assert ok.stdout.startswith("ok: ")


def test_an_experiment_that_changes_an_overlay_but_not_its_image_pin_passes(
    tmp_path: Path,
) -> None:
    repo, main = pinned_repo(tmp_path)
    head = branch_with(repo, "experiment/size", main, "- path: scaling.yaml\n",
                       "- path: scaling.yaml\n- path: extra.yaml\n",
                       "kustomize/overlays/prod/kustomization.yaml")  # fmt: skip
    # main moved on after the branch forked (a deploy pinned another digest): not the branch's
    # change, so it is not held against it (the merge base is compared, as GitHub's diff does)
    moved = branch_with(repo, "main-moved", main, "sha256:" + "0" * 64, "sha256:" + "d" * 64,
                        "kustomize/overlays/dev/kustomization.yaml")  # fmt: skip
    ok = run_tool("check_pr_order", "--pins", moved, head, "experiment/size", "main", cwd=repo)
    assert ok.stdout.startswith("ok: experiment/size -> main")
    staging = "kustomize/overlays/staging/kustomization.yaml"
    pinned = next(line for line in (REPO / staging).read_text().splitlines() if "newTag:" in line)
    tag = branch_with(repo, "experiment/tag", main, pinned, "  newTag: " + "f" * 40, staging)
    refused = run_tool("check_pr_order", "--pins", main, tag, "experiment/tag", "main", cwd=repo,
                       check=False)  # fmt: skip
    assert refused.returncode == 1
    assert "changes the image pin (newTag) of kustomize/overlays/staging" in refused.stderr


def test_the_image_check_refuses_an_overlay_pin_its_rendered_file_does_not_run(
    tmp_path: Path,
) -> None:
    """A hand-named deploy/dev/* branch that changes the overlay's digest but not the rendered
    file: pr-guard's image job reads the rendered file's image, so the pin must be the same."""
    repo, _ = pinned_repo(tmp_path)
    subprocess.run(["cp", "-r", str(REPO / "rendered"), str(repo)], check=True)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qm", "rendered"], cwd=repo, check=True, env=tool_env())
    args = ("attestation", "verify-overlay", "dev", "--ref", "HEAD", "--main", "HEAD")
    # the pin and the rendered file agree: it gets as far as the key, which this repository
    # does not name (so it refuses every image)
    unset = run_tool(*args, cwd=repo, check=False)
    assert unset.returncode == 1
    assert unset.stderr.endswith(
        "cannot be checked: evidence.toml on HEAD names no image signing key ([images] "
        "public_key; python -m gitops.attestation keygen, docs/workflow.md)\n"
    ), unset.stderr
    zero, theirs = "sha256:" + "0" * 64, "sha256:" + "e" * 64
    branch_with(
        repo, "deploy/dev/x", "HEAD", zero, theirs, "kustomize/overlays/dev/kustomization.yaml"
    )
    refused = run_tool(*args, cwd=repo, check=False)
    assert refused.returncode == 1
    assert refused.stderr.startswith(
        f"error: kustomize/overlays/dev at HEAD pins {theirs}, but "
        "rendered/dev/manifests.yaml runs "
    ), refused.stderr
