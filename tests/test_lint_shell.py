"""scripts/lint-shell.py: every shell script git tracks is shellchecked, a new one included.

Each test runs the real script and the real shellcheck (installed by `make lint`) on a git
repository of its own, or lists the project's own scripts.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT = ROOT / "scripts" / "lint-shell.py"


def lint(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(LINT), "--root", str(root), *args],
        capture_output=True,
        text=True,
        check=False,
    )


def git_repo(path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    subprocess.run(["git", "-C", str(path), "add", "."], check=True)
    return path


def test_a_new_script_without_an_extension_is_found_by_its_shebang_and_fails_on_a_finding(
    tmp_path: Path,
) -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed: run make lint")
    repo = git_repo(
        tmp_path,
        {
            "tools/new-tool": "#!/usr/bin/env bash\nrm -rf $1/cache\n",
            "lib/helper.sh": "echo helper\n",
        },
    )
    (repo / "tools" / "link.sh").symlink_to("../lib/helper.sh")
    subprocess.run(["git", "-C", str(repo), "add", "."], check=True)
    listed = lint(repo, "--list").stdout.split()
    assert listed == ["lib/helper.sh", "tools/new-tool"]  # the symlink once, as its target
    result = lint(repo)
    assert result.returncode == 1
    assert "tools/new-tool line 2:" in result.stdout
    assert "SC2086" in result.stdout  # $1 unquoted


def test_every_tracked_shell_script_of_the_project_is_listed() -> None:
    listed = set(lint(ROOT, "--list").stdout.split())
    tracked = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "*.sh", ".ci/run"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    real = {name for name in tracked if not (ROOT / name).is_symlink()}
    assert real <= listed
    assert {".ci/run", "images/nginx/docker-entrypoint.sh"} <= listed
