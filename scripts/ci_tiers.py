#!/usr/bin/env python3
"""Which heavy test tiers a change needs: the path filters of the CI workflow, in one table.

usage: scripts/ci_tiers.py [--all] [FILE ...]      (or the changed files on stdin, one a line)

Prints ``integration=true|false`` and ``e2e=true|false``, the lines .github/workflows/ci.yml
appends to $GITHUB_OUTPUT; the unit tier always runs. A file that needs a tier is one under a
prefix of that tier in TIERS; a file under EVERY_TIER needs both; a file under UNIT_ONLY needs
neither; any other file needs both, so a new directory is tested fully until it gets a rule.
``--all`` (a push to an environment branch) needs every tier.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence

#: The prefixes whose changes each heavy tier tests (mk/tests.mk says what a tier runs).
TIERS: dict[str, tuple[str, ...]] = {
    "integration": (
        # the workflows themselves: their act walks (tests/workflows) run in this tier
        ".github/workflows/", ".dvc/", ".dvcignore", "argocd/", "charts/", "environments.toml",
        "gitops/", "kustomize/",
        "modelcard/", "rendered/", "scripts/", "tests/deploy/", "tests/gitops/", "tests/training/",
        "tests/workflows/", "training/",
    ),
    "e2e": (
        "bench/", "charts/", "devstack/", "images/", "kustomize/", "modelcard/", "rendered/",
        "scripts/", "serving/",
        "tests/deploy/",
        "tests/image/", "tests/serving/",
        # the drift alert loop and the retrain walk fed its dispatch (tests/alert_loop)
        ".github/workflows/retrain.yml", "gitops/relay.py", "gitops/retrain.py",
        "tests/alert_loop/", "tests/workflows/act/", "tests/workflows/retrain_walk.py",
        "tests/workflows/test_act_retrain.py",
        # what the pipeline trains is served: the second dataset's walk ends in a real stack
        "training/", "tests/training/test_training_second_dataset.py",
    ),
}  # fmt: skip
#: What every tier is built from: the toolchain, the test harness, this table.
EVERY_TIER = (
    ".ci/", ".dockerignore", ".github/workflows/ci.yml", "Makefile", "mk/", "pyproject.toml",
    "requirements/", "tests/conftest.py",
)  # fmt: skip
#: What only the unit tier checks (docs, repository metadata such as CODEOWNERS and Dependabot).
UNIT_ONLY = (
    ".github/", ".gitignore", ".pre-commit-config.yaml", ".yamllint.yaml", "LICENSE", "README.md",
    "docs/", "tests/test_",
)  # fmt: skip


def tiers_for(paths: Iterable[str]) -> dict[str, bool]:
    """Each heavy tier, and whether any of PATHS needs it."""
    needed = dict.fromkeys(TIERS, False)
    for path in paths:
        if path.startswith(EVERY_TIER):
            return dict.fromkeys(TIERS, True)
        hits = [tier for tier, prefixes in TIERS.items() if path.startswith(prefixes)]
        if not hits and not path.startswith(UNIT_ONLY):
            return dict.fromkeys(TIERS, True)  # no rule for it: test it fully
        needed.update(dict.fromkeys(hits, True))
    return needed


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="scripts/ci_tiers.py", description=__doc__)
    parser.add_argument("files", nargs="*", metavar="FILE", help="changed files (else stdin)")
    parser.add_argument("--all", action="store_true", help="every tier, whatever changed")
    args = parser.parse_args(argv)
    files = args.files or [line.strip() for line in sys.stdin if line.strip()]
    needed = dict.fromkeys(TIERS, True) if args.all else tiers_for(files)
    for tier, value in needed.items():
        print(f"{tier}={str(value).lower()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
