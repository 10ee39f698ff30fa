"""Stage evaluate: score the model on the test split and apply the quality gate.

    python -m training evaluate --params training/params.yaml --test training/data/test.csv \
        --model training/pipeline/model.pkl --metrics training/metrics.json --plots training/plots

Writes metrics.json, the plot data (ROC and precision-recall curves, confusion matrix), then checks
every threshold in ``evaluate.thresholds`` and fails the run when one is not met. The export stage
runs only after it passes: a model that fails the gate gets no artifact, so nothing can serve it.

The metrics keep their names whatever the data (gitops.gates compares them by name):

- two classes: ``precision``, ``recall`` and ``f1`` of ``data.positive_class``, ``roc_auc`` of its
  probability; the curves are that class's;
- three or more: the macro averages (each class weighs the same, so a small class the model gets
  wrong pulls the score down), ``roc_auc`` one-vs-rest macro-averaged; the curves are
  micro-averaged one-vs-rest (every row and class, scored by the class's probability);
- ``accuracy``: the share of test rows labelled right, either way.

The model card says which (``metric_average``: ``binary`` or ``macro``).

A regression (``data.task: regression``) is scored by ``rmse`` (root mean squared error), ``mae``
(mean absolute error), both in the target's unit and gated as maxima, and ``r2`` (the coefficient
of determination, a minimum); its plots are the predicted against the actual values
(``predicted_actual.csv``) and the residuals (actual - predicted) against the prediction
(``residuals.csv``).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import joblib  # type: ignore[import-untyped]  # no stubs; not in pyproject overrides
import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    mean_absolute_error,
    mean_squared_error,
    precision_recall_curve,
    precision_score,
    r2_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

from training.dataset import read_regression_split, read_split
from training.errors import StageError, run_stage
from training.params import (
    LOWER_IS_BETTER,
    DataParams,
    EvaluateParams,
    load_data,
    load_evaluate,
    meets,
)

DIGITS = 6


def score(
    y_true: pd.Series, y_pred: Any, proba: Any, classes: list[str], positive: str | None
) -> dict[str, float]:
    """The five metrics of the gate, rounded so metrics.json reads well and diffs cleanly.

    PROBA has a column per class, in CLASSES order; POSITIVE is the positive class of a binary
    problem, None for the macro averages."""
    if positive is not None:
        p_positive = proba[:, classes.index(positive)]
        metrics = {
            "accuracy": accuracy_score(y_true, y_pred),
            "precision": precision_score(y_true, y_pred, pos_label=positive, zero_division=0),
            "recall": recall_score(y_true, y_pred, pos_label=positive, zero_division=0),
            "f1": f1_score(y_true, y_pred, pos_label=positive, zero_division=0),
            "roc_auc": roc_auc_score(y_true == positive, p_positive),
        }
    else:
        macro = {"labels": classes, "average": "macro", "zero_division": 0}
        metrics = {
            "accuracy": accuracy_score(y_true, y_pred),
            "precision": precision_score(y_true, y_pred, **macro),
            "recall": recall_score(y_true, y_pred, **macro),
            "f1": f1_score(y_true, y_pred, **macro),
            "roc_auc": roc_auc_score(
                y_true, proba, multi_class="ovr", average="macro", labels=classes
            ),
        }
    return {name: round(float(value), DIGITS) for name, value in metrics.items()}


def regression_score(y_true: Any, y_pred: Any) -> dict[str, float]:
    """A regression's three metrics (``rmse``, ``mae``, ``r2``), rounded as :func:`score`'s."""
    metrics = {
        "rmse": float(np.sqrt(mean_squared_error(y_true, y_pred))),
        "mae": mean_absolute_error(y_true, y_pred),
        "r2": r2_score(y_true, y_pred),
    }
    return {name: round(float(value), DIGITS) for name, value in metrics.items()}


def gate_failures(metrics: dict[str, float], thresholds: dict[str, float]) -> list[str]:
    """One phrase per metric on the wrong side of its threshold, e.g. ``recall 0.93 < 0.99``,
    ``rmse 55.1 > 50`` (an error's threshold is a maximum: params.LOWER_IS_BETTER)."""
    return [
        f"{name} {metrics[name]:.4f} {'>' if name in LOWER_IS_BETTER else '<'} {threshold} "
        f"(evaluate.thresholds.{name})"
        for name, threshold in thresholds.items()
        if not meets(name, metrics[name], threshold)
    ]


def curve_inputs(
    y_true: pd.Series, proba: Any, classes: list[str], positive: str | None
) -> tuple[Any, Any]:
    """(is-positive, score) pairs the curves are drawn from: the positive class's for two classes,
    every (row, class) pair for more (micro-averaged one-vs-rest)."""
    if positive is not None:
        return (y_true == positive).to_numpy(), proba[:, classes.index(positive)]
    truth = y_true.to_numpy()[:, None] == np.asarray(classes, dtype=object)[None, :]
    return truth.ravel(), np.asarray(proba).ravel()


def write_plots(
    plots: Path,
    y_true: pd.Series,
    y_pred: Any,
    proba: Any,
    classes: list[str],
    positive: str | None,
) -> None:
    """CSV data for the ROC curve, the precision-recall curve and the confusion matrix."""
    plots.mkdir(parents=True, exist_ok=True)
    truth, scores = curve_inputs(y_true, proba, classes, positive)
    fpr, tpr, _ = roc_curve(truth, scores)
    roc = pd.DataFrame({"fpr": fpr, "tpr": tpr}).round(DIGITS)
    roc.to_csv(plots / "roc.csv", index=False, lineterminator="\n")
    precision, recall, _ = precision_recall_curve(truth, scores)
    # scikit-learn lists recall descending; ascending draws the curve without zig-zags at ties.
    pr = pd.DataFrame({"recall": recall[::-1], "precision": precision[::-1]}).round(DIGITS)
    pr.to_csv(plots / "precision_recall.csv", index=False, lineterminator="\n")
    confusion = pd.DataFrame({"actual": y_true.to_numpy(), "predicted": y_pred})
    confusion.to_csv(plots / "confusion.csv", index=False, lineterminator="\n")


def write_regression_plots(plots: Path, y_true: Any, y_pred: Any) -> None:
    """CSV data for the predicted-against-actual plot and the residuals against the prediction
    (in test-split order, rounded as the metrics are)."""
    plots.mkdir(parents=True, exist_ok=True)
    actual = np.asarray(y_true, dtype=np.float64)
    predicted = np.asarray(y_pred, dtype=np.float64)
    pairs = pd.DataFrame({"actual": actual, "predicted": predicted}).round(DIGITS)
    pairs.to_csv(plots / "predicted_actual.csv", index=False, lineterminator="\n")
    residuals = pd.DataFrame({"predicted": predicted, "residual": actual - predicted})
    residuals.round(DIGITS).to_csv(plots / "residuals.csv", index=False, lineterminator="\n")


def evaluate_regression(args: argparse.Namespace, data: DataParams, gate: EvaluateParams) -> None:
    """The regression's stage: score, metrics.json, plots, gate (as :func:`main` for classes)."""
    model = joblib.load(args.model)
    if hasattr(model, "classes_"):
        raise StageError(
            "the model is a classifier, data.task is regression: run prepare and train again"
        )
    features, y_true = read_regression_split(args.test, data.target, data.categorical)
    y_pred = model.predict(features)
    metrics = regression_score(y_true, y_pred)
    args.metrics.parent.mkdir(parents=True, exist_ok=True)
    args.metrics.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    write_regression_plots(args.plots, y_true, y_pred)
    print("evaluate (regression): " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    failures = gate_failures(metrics, gate.thresholds)
    if failures:
        raise StageError("quality gate failed: " + "; ".join(failures))
    print("evaluate: quality gate passed")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, required=True, help="params.yaml")
    parser.add_argument("--test", type=Path, required=True, help="test.csv to score on")
    parser.add_argument("--model", type=Path, required=True, help="model.pkl from train")
    parser.add_argument("--metrics", type=Path, required=True, help="where to write metrics.json")
    parser.add_argument("--plots", type=Path, required=True, help="directory for the plot CSVs")
    args = parser.parse_args(argv)
    data = load_data(args.params)
    gate = load_evaluate(args.params)
    if data.regression:
        evaluate_regression(args, data, gate)
        return

    # model.pkl is this pipeline's own output from the train stage (tracked by DVC), not a
    # downloaded file.
    model = joblib.load(args.model)
    if not hasattr(model, "classes_"):
        raise StageError(
            "the model is a regressor, data.task is classification: run prepare and train again"
        )
    classes = [str(c) for c in model.classes_]
    if sorted(classes) != sorted(data.classes):
        raise StageError(
            f"the model knows the classes {', '.join(classes)}, data.classes lists "
            f"{', '.join(data.classes)}: run prepare and train again"
        )
    features, y_true = read_split(args.test, data.target, data.categorical)
    proba = model.predict_proba(features)
    y_pred = model.predict(features)

    metrics = score(y_true, y_pred, proba, classes, data.positive_class)
    args.metrics.parent.mkdir(parents=True, exist_ok=True)
    args.metrics.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    write_plots(args.plots, y_true, y_pred, proba, classes, data.positive_class)
    print(
        f"evaluate ({data.metric_average}): "
        + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items())
    )

    failures = gate_failures(metrics, gate.thresholds)
    if failures:
        raise StageError("quality gate failed: " + "; ".join(failures))
    print("evaluate: quality gate passed")


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
