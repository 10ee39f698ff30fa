"""Stage train: fit the estimator ``train.estimator`` names on the train split.

    python -m training train --params training/params.yaml --data training/data/train.csv \
        --model training/model/model.pkl

``train.estimator`` is ``logistic_regression`` (StandardScaler, then LogisticRegression),
``random_forest`` or ``hist_gradient_boosting`` (trees: no scaler); every hyper-parameter comes
from the section of ``train`` named after it. What is not a hyper-parameter is fixed here for
reproducibility: one job (a forest's trees are built in order), and the random_state of each
section. The fitted scikit-learn Pipeline is written with joblib; evaluate later scores it and
writes its model card.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import joblib  # type: ignore[import-untyped]  # no stubs; not in pyproject overrides
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from training.dataset import read_split
from training.errors import run_stage
from training.params import TrainParams, load_data, load_train


def build_pipeline(params: TrainParams) -> Pipeline:
    """The untrained model: a Pipeline whose last step, ``classify``, is the estimator."""
    hyper = params.hyper
    if params.estimator == "logistic_regression":
        return Pipeline([("scale", StandardScaler()), ("classify", LogisticRegression(**hyper))])
    if params.estimator == "random_forest":
        return Pipeline([("classify", RandomForestClassifier(**hyper, n_jobs=1))])
    if params.estimator == "hist_gradient_boosting":
        return Pipeline([("classify", HistGradientBoostingClassifier(**hyper))])
    raise ValueError(f"unknown estimator {params.estimator!r}")  # params.py lets none through


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, required=True, help="params.yaml")
    parser.add_argument("--data", type=Path, required=True, help="train.csv from prepare")
    parser.add_argument("--model", type=Path, required=True, help="where to write model.pkl")
    args = parser.parse_args(argv)
    data = load_data(args.params)
    params = load_train(args.params)

    features, target = read_split(args.data, data.target)
    model = build_pipeline(params).fit(features, target)
    args.model.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, args.model)
    print(f"train: {params.estimator} fitted on {len(features)} rows -> {args.model}")


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
