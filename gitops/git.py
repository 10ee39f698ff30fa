"""Git, as the promotion tools use it: read files at a revision, build commits without touching the
checkout, fetch and push an environment's refs.

Role: the one place ``gitops.promote``, ``gitops.rollback``, ``gitops.smoke`` and
``gitops.assign_stage`` talk to git. Everything runs in the current directory's repository (the
workflows' checkout, the demo's sandbox, a test's clone). Contract: a failing git command is a
:class:`~gitops.cli.ToolError` with git's last line; reads of a missing file return None.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gitops.cli import ToolError, run


def git(*args: str) -> str:
    """``git ARGS``' stdout (ToolError on failure)."""
    return run("git", *args)


def show(rev: str, path: str) -> str | None:
    """The text of PATH at REV, or None when REV (or PATH in it) does not exist."""
    done = subprocess.run(
        ["git", "show", f"{rev}:{path}"], capture_output=True, text=True, check=False
    )
    return done.stdout if done.returncode == 0 else None


def rev(spec: str) -> str | None:
    """The object name SPEC resolves to (a commit, a tree, a blob), or None."""
    done = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", spec], capture_output=True, text=True
    )
    return done.stdout.strip() or None if done.returncode == 0 else None


def resolve(spec: str) -> str:
    """The object name SPEC resolves to; ToolError when it does not exist."""
    found = rev(spec)
    if found is None:
        raise ToolError(f"{spec} does not exist in this repository")
    return found


def read(ref: str, path: str) -> str:
    """The text of PATH at REF; ToolError when there is none."""
    text = show(ref, path)
    if text is None:
        raise ToolError(f"{ref} has no {path}")
    return text


def remote_branch(remote: str, branch: str) -> str:
    """The remote-tracking ref of BRANCH (``refs/remotes/REMOTE/BRANCH``)."""
    return f"refs/remotes/{remote}/{branch}"


def fetch(remote: str, *branches: str) -> None:
    """Fetch BRANCHES and every tag from REMOTE (what it lacks is skipped)."""
    wanted = {f"refs/heads/{b}": f"+refs/heads/{b}:{remote_branch(remote, b)}" for b in branches}
    known = set(git("ls-remote", remote, *wanted).split()[1::2])
    specs = [spec for ref, spec in wanted.items() if ref in known]
    git("fetch", "--quiet", "--tags", "--force", remote, *specs)


def first_parents(ref: str) -> list[str]:
    """REF's first-parent history, newest first: an environment branch's deployments."""
    return git("rev-list", "--first-parent", ref).split()


@contextmanager
def worktree(commit: str) -> Iterator[Path]:
    """A temporary detached worktree at COMMIT (the checkout itself is never touched)."""
    with tempfile.TemporaryDirectory(prefix="modelops-release-") as tmp:
        where = Path(tmp) / "tree"
        git("worktree", "add", "--quiet", "--detach", str(where), commit)
        try:
            yield where
        finally:
            git("worktree", "remove", "--force", str(where))


def commit_tree(where: Path, parents: list[str], message: str) -> str:
    """Commit everything in the worktree WHERE as a new commit with PARENTS; its name (no branch
    moves)."""
    run("git", "-C", str(where), "add", "--all")
    tree = run("git", "-C", str(where), "write-tree").strip()
    args = [arg for parent in parents for arg in ("-p", parent)]
    return git("commit-tree", tree, *args, "-m", message).strip()


def commit_of_tree(tree_of: str, parents: list[str], message: str) -> str:
    """A new commit whose tree is TREE_OF's (a commit or tree), with PARENTS."""
    args = [arg for parent in parents for arg in ("-p", parent)]
    return git("commit-tree", f"{tree_of}^{{tree}}", *args, "-m", message).strip()


def identity_is_set() -> None:
    """ToolError unless git has a committer identity (the workflows and the demo set one)."""
    for key in ("user.name", "user.email"):
        done = subprocess.run(["git", "config", key], capture_output=True, text=True)
        if not done.stdout.strip():
            raise ToolError(f"git {key} is not set: git config {key} ...")
