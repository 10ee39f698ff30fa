"""Stage prepare: check the raw data file against its description and split it into train and test.

    python -m training prepare --params training/params.yaml --out training/data

The raw file is ``data.file`` (a DVC-tracked CSV, relative to the repository root, which is the
working directory of every stage); ``data.*`` describes it and :func:`training.dataset.load_raw`
refuses a file that does not match, in one line naming the column and the problem, before anything
is written (and so does a category of a column learned from the train split, ``categories:
learn`` with ``unseen: error``, that only the test split holds). The split is stratified on the
target (a classification's; a regression's numeric target is split at random) and seeded from
``prepare.seed``; ``prepare.test_size`` is the held-out fraction. Writes ``train.csv`` and
``test.csv`` into the output directory, both or neither.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from sklearn.model_selection import train_test_split

from training.dataset import load_raw, unseen_in_test, write_splits
from training.errors import run_stage
from training.params import load_data, load_prepare


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, required=True, help="params.yaml")
    parser.add_argument("--out", type=Path, required=True, help="directory for train.csv, test.csv")
    parser.add_argument(
        "--root", type=Path, default=Path(), help="what data.file is relative to (default: .)"
    )
    args = parser.parse_args(argv)
    data = load_data(args.params)
    params = load_prepare(args.params)

    frame = load_raw(data, args.root, params.test_size)
    train, test = train_test_split(
        frame,
        test_size=params.test_size,
        random_state=params.seed,
        # a regression's target is a number: nothing to stratify on
        stratify=None if data.regression else frame[data.target],
    )
    unseen_in_test(data, train, test, args.root / data.file)
    write_splits({"train.csv": train, "test.csv": test}, args.out)
    target = "a numeric target" if data.regression else f"{len(data.classes)} classes"
    print(
        f"prepare: {data.file}: {len(frame)} rows, {frame.shape[1] - 1} features, "
        f"{target} -> {len(train)} train rows, {len(test)} test rows in {args.out}"
    )


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
