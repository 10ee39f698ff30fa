"""The stage runner: ``python -m training STAGE [options]`` runs one pipeline stage, pinned.

    python -m training prepare --params training/params.yaml --out training/data

Every stage command in training/dvc.yaml goes through here. It pins the numeric libraries
(training/numerics.py: one thread, the x86-64-v3 kernels where the CPU has them) before anything
imports numpy, then runs ``training.STAGE``'s ``main`` with the remaining arguments. Running a
stage module directly (``python -m training.train``) works too, unpinned: its output is then only
reproducible on a CPU like this one.
"""

from __future__ import annotations

import importlib
import os
import sys

from training.errors import run_stage  # params and yaml only: numpy stays unloaded
from training.numerics import pin

STAGES = ("prepare", "train", "evaluate", "export")


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in STAGES:
        given = repr(argv[0]) if argv else "nothing"
        print(f"error: the stage must be one of {', '.join(STAGES)}, got {given}", file=sys.stderr)
        return 2
    pin(os.environ)  # before the stage module (and so numpy) is imported
    stage = importlib.import_module(f"training.{argv[0]}")
    sys.argv[0] = f"python -m training {argv[0]}"  # what argparse shows in usage and errors
    return run_stage(stage.main, argv[1:])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
