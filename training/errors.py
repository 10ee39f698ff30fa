"""The one way a stage script fails: one line on stderr naming what is wrong, and exit 1."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from training.params import ParamsError


class StageError(Exception):
    """A stage cannot produce a valid output (the message says why, in one line)."""


def run_stage(
    main: Callable[[Sequence[str] | None], None], argv: Sequence[str] | None = None
) -> int:
    """Run a stage's main(); turn expected failures into one line on stderr and exit code 1."""
    try:
        main(argv)
    except (ParamsError, StageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
