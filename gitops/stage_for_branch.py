"""Print the GTO stage (or, with --environment, the environment) a merge into BRANCH changes.

usage: python -m gitops.stage_for_branch [--environment] BRANCH
       python -m gitops.stage_for_branch --branch-of ENVIRONMENT

Each environment of environments.toml maps its branch to its stage (main -> dev,
staging -> staging, production -> prod). Any other branch is not an environment: one line on
stderr and exit status 2. With --branch-of, the branch of the environment ENVIRONMENT; any other
name (the untrusted payload of a repository dispatch, in environments.yml's smoke job) is one line
naming the environments and exit status 2. Run by the promote and environments workflows.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from gitops import environments
from gitops.cli import OneLineParser, run_main


def environment_for_branch(branch: str) -> environments.Environment:
    """The environment of BRANCH; ValueError naming the environment branches for any other."""
    env = environments.by_branch(branch)
    if env is None:
        allowed = ", ".join(f"{e.branch} -> {e.stage}" for e in environments.load())
        name = branch.removeprefix("refs/heads/")
        raise ValueError(f"branch {name!r} is not an environment branch ({allowed})")
    return env


def stage_for_branch(branch: str) -> str:
    """The stage of an environment branch; ValueError naming the allowed ones for any other."""
    return environment_for_branch(branch).stage


def main(argv: Sequence[str]) -> int:
    parser = OneLineParser(prog="python -m gitops.stage_for_branch", description=__doc__)
    parser.add_argument("branch", metavar="BRANCH", nargs="?", help="e.g. main or refs/heads/main")
    parser.add_argument("--environment", action="store_true", help="print the environment name")
    parser.add_argument("--branch-of", metavar="ENVIRONMENT", help="print its branch instead")
    args = parser.parse_args(argv)
    if (args.branch is None) == (args.branch_of is None):
        parser.error("give either BRANCH or --branch-of ENVIRONMENT")
    try:
        if args.branch_of is not None:
            print(environments.named(args.branch_of).branch)
            return 0
        env = environment_for_branch(args.branch)
        print(env.name if args.environment else env.stage)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    run_main(main)
