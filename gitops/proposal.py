"""A change to an environment, proposed as a branch and a pull request that shows its rendered diff.

Role: what ``gitops.deploy``, ``gitops.promote`` and ``gitops.rollback`` share once they have
built the commit an environment branch should move to (the word is *propose*): the branch name,
the pull request body (the release, the figures of what was checked, the diff of the rendered
file the environment applies, the other rendered files' diffs folded, and the diff of argocd/
when the branch carries one), pushing the branch and opening the pull request with ``gh``.
Contract: :func:`propose` is the only step that changes anything outside the local object store,
and it runs after every check passed. Re-proposing the same tree (or the same branch) is a no-op:
an open branch with that tree, or of that name, is left alone.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from gitops import environments, rendered
from gitops.cli import ToolError, run
from gitops.git import git, rev

#: GitHub refuses pull request bodies over 65,536 characters; the diff is cut to stay below.
BODY_LIMIT = 60_000


#: What each proposal tool (gitops.deploy, gitops.promote, gitops.rollback) prints for
#: $GITHUB_OUTPUT, in this order: whether it proposed a change, its branch and commit, and the
#: release's model version and image digest.
OUTPUTS = ("changed", "branch", "commit", "version", "digest")


def print_outputs(**values: str) -> None:
    """A proposal tool's key=value lines for $GITHUB_OUTPUT: each of OUTPUTS exactly once."""
    if set(values) != set(OUTPUTS):
        raise ValueError(f"outputs {sorted(values)}, not {sorted(OUTPUTS)}")
    for key in OUTPUTS:
        print(f"{key}={values[key]}")


@dataclass(frozen=True)
class Proposal:
    kind: str  # deploy, promote or rollback
    env: environments.Environment
    base: str  # the environment branch's tip the commit builds on
    commit: str  # the commit the environment branch moves to when the pull request merges
    title: str
    summary: str  # markdown: what runs now, what will run, what was checked
    labels: tuple[str, ...] = ()  # the pull request's labels (gitops.gates.ACKNOWLEDGE_LABEL)
    head: str = ""  # the branch's name, when not KIND/ENV/COMMIT (gitops.deploy's)
    footer: str = ""  # the body's last line, when not the one naming the verify check

    @property
    def branch(self) -> str:
        return self.head or f"{self.kind}/{self.env.name}/{self.commit[:12]}"

    @property
    def family(self) -> str:
        """The pattern of the branches of this kind for this environment (``KIND/ENV/*``)."""
        return self.branch.rsplit("/", 1)[0] + "/*"


def add_arguments(parser: argparse.ArgumentParser, verified: str) -> None:
    """The options gitops.promote and gitops.rollback share: where, whether to push and open the
    pull request, where to write its body, and --verify (VERIFIED says what it checks)."""
    parser.add_argument("--remote", default="origin", help="where the branches are (origin)")
    parser.add_argument("--no-push", action="store_true", help="build the branch locally only")
    parser.add_argument("--pr", action="store_true", help="open the pull request (gh)")
    parser.add_argument("--body-file", type=Path, help="write the pull request body here")
    parser.add_argument("--verify", metavar="COMMIT", help=f"check {verified}")


def rendered_diff(base: str, commit: str, *paths: str) -> str:
    """The diff between BASE and COMMIT of PATHS (every rendered file when none are given; empty
    when none changed)."""
    return git("diff", "--no-color", base, commit, "--", *(paths or (rendered.DIRECTORY,)))


def _cut(diff: str, base: str, commit: str, paths: str, limit: int) -> str:
    """DIFF as a fenced block, cut at LIMIT characters with the command that shows all of it."""
    if len(diff) > limit:
        diff = diff[:limit] + f"\n... cut at {limit} characters: git diff {base[:12]} "
        diff += f"{commit[:12]} -- {paths}\n"
    return f"```diff\n{diff}```"


def body(p: Proposal) -> str:
    """The pull request body: the summary, then the diff of the one file the target
    environment's Argo CD Application applies, first and in full; the diffs of the other
    rendered files on the branch (which that Application does not read) only folded below."""
    applied = rendered.path(p.env)
    diff = rendered_diff(p.base, p.commit, applied)
    shown = _cut(diff, p.base, p.commit, applied, BODY_LIMIT) if diff else "(no change)"
    others = rendered_diff(p.base, p.commit, rendered.DIRECTORY, f":(exclude){applied}")
    folded = ""
    if others:
        rest = _cut(others, p.base, p.commit, rendered.DIRECTORY, max(BODY_LIMIT - len(shown), 0))
        folded = (
            "<details><summary>Other rendered files on this branch (not applied to "
            f"{p.env.name})</summary>\n\n{rest}\n\n</details>\n\n"
        )
    return (
        f"{p.summary}\n\n"
        f"### `{applied}`: what Argo CD applies to {p.env.name} after the merge\n\n"
        f"{shown}\n\n{folded}{argocd_section(p)}"
        + (
            p.footer
            or f"Made by `python -m gitops.{p.kind} {p.env.name}`; the `verify` check rebuilds "
            "this commit from the protected branches and fails if it differs.\n"
        )
    )


#: Argo CD's own configuration, which the app of apps (argocd/application.yaml) applies from the
#: last environment's branch.
ARGOCD = "argocd"


def argocd_section(p: Proposal) -> str:
    """The diff of argocd/ this proposal carries ("" when none), with where it takes effect."""
    diff = rendered_diff(p.base, p.commit, ARGOCD)
    if not diff:
        return ""
    last = environments.load()[-1]
    where = (
        "the app of apps (argocd/application.yaml) applies it to the cluster after the merge"
        if p.env == last
        else f"it reaches the cluster only when a promotion merges it into `{last.branch}`, "
        "which the app of apps (argocd/application.yaml) reads"
    )
    return (
        f"### `{ARGOCD}/`: Argo CD's own configuration changes\n\n{where}.\n\n"
        f"{_cut(diff, p.base, p.commit, ARGOCD, BODY_LIMIT // 4)}\n\n"
    )


def already_open(remote: str, p: Proposal) -> bool:
    """True when REMOTE already has this proposal's branch, or a branch of its kind for this
    environment with the same tree."""
    refs = git("ls-remote", remote, f"refs/heads/{p.family}").split()
    return f"refs/heads/{p.branch}" in refs[1::2] or any(
        rev(f"{sha}^{{tree}}") == rev(f"{p.commit}^{{tree}}") for sha in refs[0::2]
    )


def propose(p: Proposal, remote: str | None, open_pr: bool, body_file: Path | None) -> bool:
    """Push the branch to REMOTE and, with OPEN_PR, open the pull request; False when an
    identical proposal is already open. BODY_FILE receives the body either way."""
    text = body(p)
    if body_file is not None:
        body_file.write_text(text, encoding="utf-8")
    git("update-ref", f"refs/heads/{p.branch}", p.commit)
    if remote is None:
        return True
    proposals = p.family
    git("fetch", "--quiet", remote, f"refs/heads/{proposals}:refs/remotes/{remote}/{proposals}")
    if already_open(remote, p):
        return False
    git("push", "--quiet", remote, f"{p.commit}:refs/heads/{p.branch}")
    if open_pr:
        try:
            run(
                "gh",
                "pr",
                "create",
                "--base",
                p.env.branch,
                "--head",
                p.branch,
                "--title",
                p.title,
                "--body",
                text,
                *(arg for label in p.labels for arg in ("--label", label)),
            )
        except ToolError:
            git("push", "--quiet", "--delete", remote, p.branch)
            raise
    return True
