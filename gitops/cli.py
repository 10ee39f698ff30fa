"""What every gitops command shares: one-line errors, and running a tool.

Role: the commands (``python -m gitops.<command>``) fail the same way: a usage error is one line
on stderr and exit status 2 (:class:`OneLineParser`); a refusal is a :class:`ToolError`, printed
as ``error: <reason>`` with exit status 1 by :func:`run_main`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see --help)\n")


class ToolError(Exception):
    """A one-line reason a command refuses or cannot finish; it changed nothing it reports."""


def run(*args: str) -> str:
    """Run a command, return its stdout; a failure becomes a ToolError with its last line."""
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines() or ["no message"]
        raise ToolError(f"{' '.join(args[:3])} failed: {lines[-1].strip()}")
    return result.stdout


def run_main(main: Callable[[Sequence[str]], int], argv: Sequence[str] | None = None) -> NoReturn:
    """Exit with MAIN's status; a ToolError (or a broken environments.toml) is ``error: <reason>``
    on stderr and status 1. The model server image ships this module without the rest of gitops,
    for the relay (retraining/, serving/Dockerfile): there no environments.toml error can occur."""
    errors: tuple[type[Exception], ...] = (ToolError,)
    try:
        from gitops.environments import EnvironmentsError
    except ModuleNotFoundError:
        pass
    else:
        errors += (EnvironmentsError,)
    try:
        status = main(sys.argv[1:] if argv is None else argv)
    except errors as err:
        print(f"error: {err}", file=sys.stderr)
        status = 1
    sys.exit(status)
