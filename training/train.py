"""Stage train: fit the estimator ``train.estimator`` names on the train split.

    python -m training train --params training/params.yaml --data training/data/train.csv \
        --model training/model/model.pkl

``train.estimator`` names a registered estimator family (training/families/: one module each);
every hyper-parameter comes from the section of ``train`` named after it, and the family builds
the pipeline from them; categorical columns and columns that may miss values get a column step
before it (training/columns.py: imputed, then one-hot or ordinal encoded as the family asks).
What is not a hyper-parameter is fixed by the family for reproducibility
(a forest's one job; the random_state of each section). The fitted scikit-learn Pipeline is
written with joblib; evaluate later scores it and export writes its ONNX graph and card.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import joblib  # type: ignore[import-untyped]  # no stubs; not in pyproject overrides
import pandas as pd
from sklearn.pipeline import Pipeline

from training import columns, families
from training.dataset import read_regression_split, read_split
from training.errors import run_stage
from training.params import DataParams, TrainParams, load_data, load_train


def build_pipeline(
    params: TrainParams, data: DataParams | None = None, features: pd.DataFrame | None = None
) -> Pipeline:
    """The untrained model: the chosen family's Pipeline for ``data.task`` (its classifier's or
    its regressor's), whose last step is the estimator, after the column step
    (training/columns.py) when ``data`` declares categorical columns or columns that may miss
    values (``features``, the train split, gives learned categories)."""
    family = families.get(params.estimator)
    pipeline = family.build(params.hyper, params.task)
    if data is None or features is None or not columns.needed(data.categorical, data.missing):
        return pipeline
    step = columns.preprocessor(
        list(features.columns), data.categorical, data.missing, family.encoding, features
    )
    return Pipeline([(columns.STEP, step), *pipeline.steps])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, required=True, help="params.yaml")
    parser.add_argument("--data", type=Path, required=True, help="train.csv from prepare")
    parser.add_argument("--model", type=Path, required=True, help="where to write model.pkl")
    args = parser.parse_args(argv)
    data = load_data(args.params)
    params = load_train(args.params)

    features, target = (read_regression_split if data.regression else read_split)(
        args.data, data.target, data.categorical
    )
    model = build_pipeline(params, data, features).fit(features, target)
    args.model.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, args.model)
    print(f"train: {params.estimator} fitted on {len(features)} rows -> {args.model}")


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
