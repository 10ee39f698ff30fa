"""Refuse a pull request that skips or reverses the environment order, comes from where it may
not, or carries what its branch name does not allow.

usage: python -m gitops.check_pr_order [--head-repo REPO --base-repo REPO]
                                       [--changed-files FILE] HEAD_BRANCH BASE_BRANCH

Changes reach the environment branches only by pull request and only in the order of
environments.toml: experiment/* -> main (dev) -> staging -> production. The first environment's
branch (main) takes experiment/* branches, revert-* (GitHub's Revert button) and two kinds of
automated ones: deploy/<stage>/<sha>,
the pull request the promote workflow opens after a build (the first stage's overlay and its
rendered manifests), and dependabot/* (pin bumps). Every later environment's branch takes only
what the promotion tools make for it: promote/<env>/<commit> (python -m gitops.promote: what the
previous environment runs), rollback/<env>/<commit> (python -m gitops.rollback), and revert-*
(GitHub's Revert button). Their content is checked by the promote workflow's verify job, which
rebuilds them from the protected branches. An experiment/* branch may target nothing but the
first environment's branch; other pull requests into a branch that is no environment branch are
not guarded.

With --head-repo and --base-repo (owner/name), a pull request from a fork may only come from an
experiment/* branch: a fork's branch named main, staging, promote/... or dependabot/... is refused.
With --changed-files (a file listing the changed paths, one a line; - for stdin), an automated
branch may only change what its name says: deploy/<stage>/<sha> the files of that stage's overlay
it edits and its rendered manifests, dependabot/* dependency pins (DEPENDENCY_FILES). And no pull
request changes the rendered manifests of an environment after its base's: a pull request into
main that touches rendered/staging or rendered/prod would change what those environments run
without their promotion.

With --pins BASE HEAD (the base branch's commit and the pull request's head, both in this
repository: what the pull request changes is from their merge base to HEAD, as GitHub shows it),
no pull request into the first environment's branch but a deploy/* one changes an
overlay's image pin (the newTag or digest line of an images entry): an experiment/* (or any
other) pull request cannot put a digest into an overlay by hand; the dev deploy's digest comes
from promote.yml, which built and signed it (gitops.attestation), and pr-guard's `image` job
checks a deploy/* pull request's digest against its attestation.

Prints one line saying why and exits 1 when the pull request breaks a rule. The pr-guard workflow
runs it with the runner's Python, from the base branch's checkout (standard library only).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Sequence
from fnmatch import fnmatchcase
from pathlib import Path

from gitops import environments
from gitops.cli import OneLineParser, run_main

EXPERIMENTS = "experiment/*"
DEPLOY = "deploy/*"
DEPENDABOT = "dependabot/*"
#: Automated branches the first environment also accepts (shell-style patterns).
AUTOMATED = (DEPLOY, DEPENDABOT)
#: What GitHub's Revert button names the branch of the pull request it opens.
REVERT = "revert-*"
#: What a later environment's branch accepts: {env} is the environment's name (gitops.promote,
#: gitops.rollback), revert-* is what GitHub's Revert button names its branch.
PROMOTIONS = ("promote/{env}/*", "rollback/{env}/*", REVERT)
#: The files a deploy/<stage>/<sha> pull request edits in that stage's overlay (gitops.set_image).
DEPLOY_FILES = ("kustomization.yaml", "provenance.yaml")
#: An environment's rendered manifests (gitops.rendered.path; this module imports nothing but the
#: standard library and gitops.environments, so the pattern is repeated here and tested equal).
RENDERED = "rendered/{env}/manifests.yaml"
#: What a dependabot/* pull request may change: the pins Dependabot maintains
#: (.github/dependabot.yml: Actions, the Python locks, the base images).
DEPENDENCY_FILES = (
    ".github/workflows/*.yml",
    "requirements/*.txt",
    "requirements/*.in",
    "serving/Dockerfile",
    "images/*/Dockerfile",
)


def allowed_heads() -> dict[str, tuple[str, ...]]:
    """The head branches each environment branch accepts (shell-style patterns)."""
    order = environments.load()
    heads: dict[str, tuple[str, ...]] = {order[0].branch: (EXPERIMENTS, REVERT, *AUTOMATED)}
    heads.update(
        {env.branch: tuple(p.format(env=env.name) for p in PROMOTIONS) for env in order[1:]}
    )
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


def origin_violation(head: str, head_repo: str, base_repo: str) -> str | None:
    """Why a pull request from HEAD_REPO may not use the branch name HEAD, or None."""
    if head_repo.lower() == base_repo.lower() or fnmatchcase(head, EXPERIMENTS):
        return None
    return (
        f"a pull request from the fork {head_repo} may only come from an {EXPERIMENTS} branch, "
        f"not from {head}: environment and automated branches live in {base_repo}"
    )


def allowed_changes(head: str) -> tuple[str, ...] | None:
    """The paths (shell-style) an automated branch may change; None when the name sets no limit."""
    if fnmatchcase(head, DEPENDABOT):
        return DEPENDENCY_FILES
    if fnmatchcase(head, DEPLOY):
        stage = head.split("/")[1] if head.count("/") >= 2 else ""
        first = environments.load()[0]
        if stage != first.stage:
            return ()
        return (
            *(f"{first.overlay}/{name}" for name in DEPLOY_FILES),
            RENDERED.format(env=first.name),
        )
    return None


def rendered_violation(base: str, changed: Sequence[str]) -> str | None:
    """Why a pull request into BASE may not change the rendered manifests it changes, or None."""
    order = environments.load()
    base_env = next((env for env in order if env.branch == base), None)
    if base_env is None:
        return None
    later = order[order.index(base_env) + 1 :]
    for env in later:
        if RENDERED.format(env=env.name) in changed:
            return (
                f"a pull request into {base} may not change {RENDERED.format(env=env.name)}: "
                f"{env.name} changes only by its promotion into {env.branch}"
            )
    return None


def content_violation(head: str, changed: Sequence[str]) -> str | None:
    """Why HEAD's changes do not fit its name, or None (also for branches its name sets no
    limit on)."""
    allowed = allowed_changes(head)
    if allowed is None:
        return None
    if not allowed:
        first = environments.load()[0]
        return (
            f"{head} names no stage a deploy pull request may set (deploy/{first.stage}/<sha>: "
            f"later environments change by promotion)"
        )
    outside = [path for path in changed if not any(fnmatchcase(path, p) for p in allowed)]
    if not outside:
        return None
    more = f" and {len(outside) - 1} more" if len(outside) > 1 else ""
    return (
        f"{head} may change only {', '.join(allowed)}, but changes {outside[0]}{more}: "
        "open another pull request for other changes"
    )


#: An image pin line of a kustomization's images: entry (gitops.set_image writes them).
PIN = re.compile(r"^[ ]*(?:-[ ]+)?(newTag|digest):[ ]*['\"]?([^'\"#\s]*)")


def pins(revision: str) -> dict[str, list[tuple[str, str]]]:
    """Each overlay's image pins at REVISION: {overlay: [(key, value), ...]} from the lines of its
    kustomization.yaml (standard library only: the guard runs on the runner's Python)."""
    found: dict[str, list[tuple[str, str]]] = {}
    for env in environments.load():
        path = f"{env.overlay}/kustomization.yaml"
        done = subprocess.run(
            ["git", "show", f"{revision}:{path}"], capture_output=True, text=True, check=False
        )
        text = done.stdout if done.returncode == 0 else ""
        found[env.overlay] = [(m[1], m[2]) for line in text.splitlines() if (m := PIN.match(line))]
    return found


def pin_violation(head: str, base: str, base_commit: str, head_commit: str) -> str | None:
    """Why the pull request HEAD -> BASE may not change an overlay's image pin from the merge base
    of BASE_COMMIT and HEAD_COMMIT to HEAD_COMMIT, or None."""
    if base != environments.load()[0].branch or fnmatchcase(head, DEPLOY):
        return None
    done = subprocess.run(
        ["git", "merge-base", base_commit, head_commit], capture_output=True, text=True
    )
    if done.returncode != 0:
        return f"{head} shares no history with {base} ({base_commit[:12]})"
    old, new = pins(done.stdout.strip()), pins(head_commit)
    for overlay in new:
        if old.get(overlay) != new[overlay]:
            changed = sorted({key for key, _ in set(new[overlay]) ^ set(old.get(overlay, []))})
            return (
                f"{head} changes the image pin ({', '.join(changed)}) of {overlay}: only the "
                f"deploy pull request of promote.yml sets it, to an image CI built from main and "
                f"signed (docs/workflow.md, Only images CI built)"
            )
    return None


def read_changed(source: str) -> list[str]:
    text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def main(argv: Sequence[str]) -> int:
    parser = OneLineParser(prog="python -m gitops.check_pr_order", description=__doc__)
    parser.add_argument("head", metavar="HEAD_BRANCH")
    parser.add_argument("base", metavar="BASE_BRANCH")
    parser.add_argument("--head-repo", metavar="REPO", help="owner/name the head branch is in")
    parser.add_argument("--base-repo", metavar="REPO", help="owner/name of this repository")
    parser.add_argument("--changed-files", metavar="FILE", help="changed paths, one a line (-)")
    parser.add_argument(
        "--pins", nargs=2, metavar=("BASE", "HEAD"), help="the base's and the head's commits"
    )
    args = parser.parse_args(argv)
    if not (args.head and args.base):
        parser.error("HEAD_BRANCH and BASE_BRANCH must not be empty")
    if (args.head_repo is None) != (args.base_repo is None):
        parser.error("--head-repo and --base-repo go together")
    head = args.head.removeprefix("refs/heads/")
    order = environments.order_text()
    violation = order_violation(args.head, args.base)
    if violation is None and args.head_repo is not None:
        violation = origin_violation(head, args.head_repo, args.base_repo)
    if violation is None and args.changed_files is not None:
        changed = read_changed(args.changed_files)
        violation = content_violation(head, changed) or rendered_violation(
            args.base.removeprefix("refs/heads/"), changed
        )
    if violation is None and args.pins is not None:
        violation = pin_violation(head, args.base.removeprefix("refs/heads/"), *args.pins)
    if violation is None:
        print(f"ok: {args.head} -> {args.base} keeps the order {order}")
        return 0
    print(f"error: {violation} (order: {order})", file=sys.stderr)
    return 1


if __name__ == "__main__":
    run_main(main)
