"""The branch rules of the promotion flow: which stage a branch deploys, which PRs may merge."""

import pytest
from workflow_helpers import run_tool


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
    ("head", "base"),
    [
        ("experiment/more-trees", "main"),
        ("main", "staging"),
        ("staging", "production"),
        ("deploy/dev/0123abc", "main"),
        ("deploy/staging/0123abc", "main"),
        ("deploy/prod/0123abc", "main"),
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
        ("main", "production", "production accepts pull requests only from staging"),
        ("staging", "main", "main accepts pull requests only from experiment/*"),
        ("production", "staging", "staging accepts pull requests only from main"),
        ("feature/x", "main", "not from feature/x"),
        ("deploy/staging/0123abc", "staging", "staging accepts pull requests only from main,"),
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
