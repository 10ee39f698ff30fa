"""What the DVC remote holds, checked before a registry tag goes anywhere.

A GTO tag names a commit; the model it registers is the DVC output that commit's ``dvc.lock``
records. If that object never reached the remote, ``dvc get --rev TAG`` (the image build) fails
later with "No storage files available". :func:`missing_from_remote` lists such outputs for the
workspace and every tag, so the demo (training/demo.py) and the tests refuse to publish a tag
that cannot be fetched. Callers: ``training.demo`` before ``git push --tags``; the training tests.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from training.errors import StageError

#: ``dvc status --cloud`` states that mean the remote lacks an object: only in the local cache
#: ("new") or nowhere at all ("missing"). "deleted" (in the remote only) is fine.
ABSENT = ("new", "missing")


def missing_from_remote(
    repo: Path, env: dict[str, str], remote: str | None = None
) -> dict[str, str]:
    """Outputs of the workspace or of any tag that the remote does not hold, with DVC's state.

    ``remote`` defaults to the repository's default remote. Raises StageError when DVC cannot
    answer (no remote configured, unreadable remote).
    """
    args = ["dvc", "status", "--cloud", "--all-tags", "--json"]
    if remote:
        args += ["--remote", remote]
    result = subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or [f"exit code {result.returncode}"]
        raise StageError(f"dvc status --cloud failed in {repo}: {lines[-1]}")
    status: dict[str, str] = json.loads(result.stdout or "{}")
    return {path: state for path, state in sorted(status.items()) if state in ABSENT}


def require_all_in_remote(repo: Path, env: dict[str, str], remote: str | None = None) -> None:
    """Raise StageError naming the outputs a tag or the workspace needs and the remote lacks."""
    missing = missing_from_remote(repo, env, remote)
    if missing:
        listed = ", ".join(f"{path} ({state})" for path, state in missing.items())
        raise StageError(f"the DVC remote lacks outputs a tag names: {listed}; run dvc push")
