"""Stage train: fit StandardScaler + LogisticRegression on the train split.

    python -m training train --params training/params.yaml --data training/data/train.csv \
        --model training/model/model.pkl

Every hyper-parameter comes from the ``train`` section of params.yaml. The fitted scikit-learn
Pipeline is written with joblib; evaluate later scores it and writes its model card.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import joblib  # type: ignore[import-untyped]  # no stubs; not in pyproject overrides
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from training.dataset import read_split
from training.errors import run_stage
from training.params import TrainParams, load_train


def build_pipeline(params: TrainParams) -> Pipeline:
    """The untrained model: scale every feature, then a logistic regression."""
    return Pipeline(
        [
            ("scale", StandardScaler()),
            (
                "classify",
                LogisticRegression(
                    C=params.C,
                    max_iter=params.max_iter,
                    tol=params.tol,
                    solver=params.solver,
                    fit_intercept=params.fit_intercept,
                ),
            ),
        ]
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, required=True, help="params.yaml")
    parser.add_argument("--data", type=Path, required=True, help="train.csv from prepare")
    parser.add_argument("--model", type=Path, required=True, help="where to write model.pkl")
    args = parser.parse_args(argv)
    params = load_train(args.params)

    features, target = read_split(args.data)
    model = build_pipeline(params).fit(features, target)
    args.model.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, args.model)
    print(f"train: fitted on {len(features)} rows -> {args.model}")


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
