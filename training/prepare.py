"""Stage prepare: materialise the bundled dataset and split it into train and test CSV files.

    python -m training prepare --params training/params.yaml --out training/data

The split is stratified on the target and seeded from ``prepare.seed``; ``prepare.test_size`` is
the held-out fraction. Writes ``train.csv`` and ``test.csv`` into the output directory.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from sklearn.model_selection import train_test_split

from training.dataset import TARGET, load_frame, write_csv
from training.errors import run_stage
from training.params import load_prepare


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, required=True, help="params.yaml")
    parser.add_argument("--out", type=Path, required=True, help="directory for train.csv, test.csv")
    args = parser.parse_args(argv)
    params = load_prepare(args.params)

    frame = load_frame()
    train, test = train_test_split(
        frame,
        test_size=params.test_size,
        random_state=params.seed,
        stratify=frame[TARGET],
    )
    write_csv(train, args.out / "train.csv")
    write_csv(test, args.out / "test.csv")
    print(f"prepare: {len(train)} train rows, {len(test)} test rows -> {args.out}")


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
