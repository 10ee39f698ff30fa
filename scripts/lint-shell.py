#!/usr/bin/env python3
"""Run shellcheck over every shell script of the repository, found from one source.

Role: the shell half of `make lint` (Makefile), so that no script escapes the lint: a script is
every file git tracks (a symlink is checked where it points, not twice) whose first line is a
shebang naming sh, bash, dash or ksh, or whose name ends in .sh or .bash. The workflows' `run:`
blocks are shell too, and are not listed here.
Callers: `make lint`; tests/test_lint_shell.py (on a repository of its own).

Contract: `scripts/lint-shell.py [--list] [--root DIR]` prints the scripts with --list; otherwise
runs `shellcheck --norc --severity=style` over all of them (every finding fails; an exclusion
is a `# shellcheck disable=SCnnnn # reason` comment on the line it covers) and exits with its
status, or 1 with one line when shellcheck is missing or there is no script.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHEBANG = re.compile(rb"#!\s*\S*/(?:env\s+)?(?:ba|da|k)?sh(?:\s|$)")
SUFFIXES = (".sh", ".bash")


def shell_scripts(root: Path = ROOT) -> list[str]:
    """The tracked shell scripts under ROOT, as paths relative to it, sorted."""
    listed = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-s", "-z"], capture_output=True, check=True
    ).stdout
    scripts = []
    for entry in listed.split(b"\0"):
        if not entry:
            continue
        meta, name = entry.split(b"\t", 1)
        if meta.startswith(b"120000"):  # a symlink: its target is tracked and checked itself
            continue
        path = root / name.decode()
        if not path.is_file():
            continue
        with path.open("rb") as file:
            first = file.readline(256)
        if SHEBANG.match(first) or path.name.endswith(SUFFIXES):
            scripts.append(name.decode())
    return sorted(scripts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="print the scripts, check nothing")
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository (default: this)")
    args = parser.parse_args(argv)
    scripts = shell_scripts(args.root)
    if args.list:
        print("\n".join(scripts))
        return 0
    if not scripts:
        print(f"error: no shell script tracked in {args.root}", file=sys.stderr)
        return 1
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        print("error: shellcheck is not on PATH: run make lint (it installs it)", file=sys.stderr)
        return 1
    command = [shellcheck, "--norc", "--severity=style", "--external-sources", *scripts]
    status = subprocess.run(command, cwd=args.root, check=False).returncode
    if status == 0:
        print(f"shellcheck: {len(scripts)} shell script(s), no finding")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
