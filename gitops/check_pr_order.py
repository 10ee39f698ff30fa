"""Refuse a pull request that skips or reverses the environment order.

usage: python -m gitops.check_pr_order HEAD_BRANCH BASE_BRANCH

Changes reach the environment branches only by pull request and only in the order of
environments.toml: experiment/* -> main (dev) -> staging -> production. Two kinds of automated
branches may also target the first environment's branch: deploy/<stage>/<sha>, the overlay pull
requests the promote workflow opens after a merge (Argo CD reads every overlay from main), and
dependabot/* (pin bumps, which then flow on like any change). An experiment/* branch may target
nothing but the first environment's branch; other pull requests into a branch that is no
environment branch are not guarded. Prints one line saying why and exits 1 when the pull request
breaks the order. The pr-guard workflow runs it with the runner's Python (standard library only).
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Sequence
from fnmatch import fnmatchcase

from gitops import environments
from gitops.cli import OneLineParser, run_main

EXPERIMENTS = "experiment/*"
#: Automated branches the first environment also accepts (shell-style patterns).
AUTOMATED = ("deploy/*", "dependabot/*")


def allowed_heads() -> dict[str, tuple[str, ...]]:
    """The head branches each environment branch accepts (shell-style patterns)."""
    order = environments.load()
    heads: dict[str, tuple[str, ...]] = {order[0].branch: (EXPERIMENTS, *AUTOMATED)}
    heads.update({env.branch: (before.branch,) for before, env in itertools.pairwise(order)})
    return heads


def order_violation(head: str, base: str) -> str | None:
    """Return why HEAD may not be merged into BASE, or None when it may."""
    head, base = (ref.removeprefix("refs/heads/") for ref in (head, base))
    first = environments.load()[0].branch
    if fnmatchcase(head, EXPERIMENTS) and base != first:
        return f"{head} may only be merged into {first}, not into {base}"
    allowed = allowed_heads().get(base)
    if allowed is None or any(fnmatchcase(head, pattern) for pattern in allowed):
        return None
    return f"{base} accepts pull requests only from {' or '.join(allowed)}, not from {head}"


def main(argv: Sequence[str]) -> int:
    parser = OneLineParser(prog="python -m gitops.check_pr_order", description=__doc__)
    parser.add_argument("head", metavar="HEAD_BRANCH")
    parser.add_argument("base", metavar="BASE_BRANCH")
    args = parser.parse_args(argv)
    if not (args.head and args.base):
        parser.error("HEAD_BRANCH and BASE_BRANCH must not be empty")
    order = environments.order_text()
    violation = order_violation(args.head, args.base)
    if violation is None:
        print(f"ok: {args.head} -> {args.base} keeps the order {order}")
        return 0
    print(f"error: {violation} (order: {order})", file=sys.stderr)
    return 1


if __name__ == "__main__":
    run_main(main)
