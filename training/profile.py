"""The reference profile: what the model's inputs and outputs looked like when it was trained.

Role: the export stage (``training.export.served_files``) calls :func:`reference_profile` and
:func:`write_profile`; the file, ``profile.json``, travels in the model artifact next to
``model.onnx`` (named and hashed in metadata.json, read by ``modelcard.read_profile``). The server
counts live rows into the same bins (serving/monitoring.py) and Prometheus compares the two
(docs/monitoring.md, "Signals"). Offline checks (training/drift.py) bin with :func:`bin_index`.

Contract (the rules the server and every reader share):

- a feature's bin of a value ``x`` is ``bisect_right(edges, x)``: bin 0 is ``(-inf, e1)``, the last
  ``[e_last, +inf)``;
- ``edges`` of a column are its quantiles at ``i / bins`` (``i = 1 .. bins - 1``) taken among the
  column's own values (numpy's ``higher`` method: each edge is a value the data holds, so no bin
  of a discrete feature is empty), rounded to :data:`SIGNIFICANT_DIGITS`, deduplicated, and without
  edges at or below the column's minimum (they would bound an empty bin 0); a discrete feature
  has fewer bins, a constant one a single bin. ``ratios`` are the column's shares per bin under
  exactly those (rounded) edges;
- the score of a row: two classes, the probability of the positive class (the card's
  ``positive_class``, else scikit-learn's second column); more classes, the top probability.
  Its edges and ratios come from the test split, by the same rule;
- ``classes``: each class's share of the model's predictions on the train split (what live
  predictions are compared with: the model's view of the training balance);
- ``labels`` (when the caller gives the train split's labels; the export stage does): each
  class's share of the train split's labels, the class balance of the training data (what the
  labels of a new data snapshot are compared with, training/drift.py);
- a categorical feature (``columns``: the card's feature entries, ``dtype: category``) is
  binned by its code (its index in the card's ``categories``, -1 for an unseen one), one bin
  per category: its edges are the codes ``0 .. k-1`` (bin 0 holds the unseen ones, bin ``c + 1``
  category ``c``), then ``k`` when the column may miss values (the last bin holds the missing
  ones); with more categories than ``bins`` allows, the last ones share the last category's
  bin. Its entry also lists its ``categories`` (what training/drift.py codes a CSV's text with),
  and its range is the known codes, ``0 .. k-1`` (an unseen one counts below it);
- a missing value (NaN) counts in a feature's last bin and in none of its edges, nor below or
  above its range; a feature whose column may miss values has ``missing``: the train split's
  share of missing values (what training/drift.py allows a data file's empty cells for);
- a row is near the decision boundary when its two highest probabilities differ by less than
  ``boundary_margin``;
- a regression (:func:`regression_profile`) has the same features; its score is the predicted
  value (kind ``prediction``, class null) on the test split, binned by the same rule: the
  prediction's distribution stands where a classification's class shares and score stand, and
  there are no classes, labels or boundary.

Every float is rounded to :data:`SIGNIFICANT_DIGITS` significant digits and the JSON is written
with sorted keys: the same inputs give the same bytes (``dvc.lock`` reproduces).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

#: Bins per feature (and for the score) at most, by default: the metrics' ``bin`` label runs
#: "0" .. "9". The export stage passes its params instead (export.profile_bins, 2 to 100).
BINS = 10
#: Top-two probability gap under which a row counts as near the decision boundary, by default
#: (the export stage passes export.boundary_margin).
BOUNDARY_MARGIN = 0.1
#: Digits kept of every float in the file: readable, and stable across last-bit differences.
SIGNIFICANT_DIGITS = 6
POSITIVE_CLASS_PROBABILITY = "positive_class_probability"
TOP_PROBABILITY = "top_probability"
PREDICTION = "prediction"

Floats = npt.NDArray[np.float64]


def rounded(value: float) -> float:
    """``value`` to :data:`SIGNIFICANT_DIGITS` significant digits."""
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def rounded_outward(value: float, direction: int) -> float:
    """``value`` to :data:`SIGNIFICANT_DIGITS` significant digits, rounded away from the data:
    down (``direction`` -1) for a minimum, up (+1) for a maximum, so that no training value lies
    outside the rounded range. A value that already has that many digits, give or take its last
    bits (a relative 1e-12), stays as it is: the file must not change with those bits."""
    near = rounded(value)
    if (near - value) * direction >= -abs(value) * 1e-12:
        return near
    exponent = math.floor(math.log10(abs(near))) if near else 0
    return rounded(near + direction * 10.0 ** (exponent - SIGNIFICANT_DIGITS + 1))


def edges(values: Floats, bins: int = BINS) -> list[float]:
    """A column's bin edges (the rule in the module docstring); ``[]`` for a constant column."""
    if values.size == 0:
        raise ValueError("a profile needs at least one row")
    quantiles = np.quantile(values, np.arange(1, bins) / bins, method="higher")
    lowest = float(values.min())
    return sorted({e for e in map(rounded, quantiles.tolist()) if e > lowest})


def bin_index(column_edges: Sequence[float], values: Floats) -> npt.NDArray[np.intp]:
    """Each value's bin: ``bisect_right(column_edges, value)``."""
    return np.searchsorted(np.asarray(column_edges, dtype=np.float64), values, side="right")


def ratios(column_edges: Sequence[float], values: Floats) -> list[float]:
    """The share of ``values`` in each of the ``len(column_edges) + 1`` bins."""
    counts = np.bincount(bin_index(column_edges, values), minlength=len(column_edges) + 1)
    return [rounded(count / values.size) for count in counts.tolist()]


def score_kind(classes: Sequence[str], positive_class: str | None) -> tuple[str, str | None]:
    """The score's kind and class: the positive class's probability for two classes (the given
    one, else the second: scikit-learn's ``predict_proba[:, 1]``), the top probability for more."""
    if len(classes) == 2:
        chosen = positive_class if positive_class is not None else classes[1]
        if chosen not in classes:
            raise ValueError(f"positive class {chosen!r} is not one of {', '.join(classes)}")
        return POSITIVE_CLASS_PROBABILITY, chosen
    return TOP_PROBABILITY, None


def scores(proba: Floats, classes: Sequence[str], score_class: str | None) -> Floats:
    """Each row's score: the ``score_class`` column, or the top probability when it is None."""
    if score_class is not None:
        column: Floats = proba[:, list(classes).index(score_class)]
        return column
    top: Floats = proba.max(axis=1)
    return top


def _distribution(values: Floats, bins: int) -> dict[str, Any]:
    column_edges = edges(values, bins)
    return {"edges": column_edges, "ratios": ratios(column_edges, values)}


def reference_profile(
    features: Sequence[str],
    classes: Sequence[str],
    train: Floats,
    train_proba: Floats,
    test_proba: Floats,
    *,
    positive_class: str | None = None,
    train_labels: Sequence[str] | None = None,
    bins: int = BINS,
    boundary_margin: float = BOUNDARY_MARGIN,
    columns: Sequence[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The profile as a JSON-ready dict: ``train`` (rows by features, in ``features`` order) for
    the feature bins, the model's probabilities on the train split (``train_proba``, columns in
    ``classes`` order) for the predicted-class balance, the train split's labels
    (``train_labels``, optional) for the class balance, and on the test split (``test_proba``)
    for the score; ``columns`` (the card's feature entries) say which features are categorical or
    may miss values (none when not given). Raises ValueError for shapes that do not fit together
    and for a label that is not one of ``classes``."""
    if train.ndim != 2 or train.shape[1] != len(features):
        raise ValueError(f"train has shape {train.shape}; expected (rows, {len(features)})")
    for name, proba in (("train_proba", train_proba), ("test_proba", test_proba)):
        if proba.ndim != 2 or proba.shape[1] != len(classes) or proba.shape[0] == 0:
            raise ValueError(f"{name} has shape {proba.shape}; expected (rows, {len(classes)})")
    if train_proba.shape[0] != train.shape[0]:
        raise ValueError("train_proba must have one row per train row")
    kind, score_class = score_kind(classes, positive_class)
    predicted = np.bincount(train_proba.argmax(axis=1), minlength=len(classes))
    balance = {} if train_labels is None else {"labels": label_shares(classes, train_labels, train)}
    return {
        "bins": bins,
        "features": _features(features, train, bins, columns),
        "classes": {
            name: rounded(count / train.shape[0])
            for name, count in zip(classes, predicted.tolist(), strict=True)
        },
        "score": {
            "kind": kind,
            "class": score_class,
            **_distribution(scores(test_proba, classes, score_class), bins),
        },
        "boundary_margin": boundary_margin,
        "rows": int(train.shape[0]),
        **balance,
    }


def _features(
    features: Sequence[str],
    train: Floats,
    bins: int,
    columns: Sequence[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Each feature's bins and training range, in ``features`` order; ``columns`` (the card's
    feature entries, in the same order) mark the categorical ones and those that may miss
    values."""
    specs = list(columns) if columns is not None else [{} for _ in features]
    if len(specs) != len(features):
        raise ValueError(f"{len(specs)} column entries for {len(features)} features")
    return [
        _feature(name, train[:, index], bins, specs[index]) for index, name in enumerate(features)
    ]


def category_edges(count: int, may_miss: bool, bins: int) -> list[float]:
    """A categorical feature's edges for ``count`` categories: the codes ``0 .. count-1`` (bin 0:
    unseen, bin c + 1: category c), then ``count`` when it may miss values (the last bin:
    missing); with more bins than ``bins``, the last categories share one bin."""
    known = min(count, bins - 1 - int(may_miss))
    return [float(code) for code in range(known)] + ([float(count)] if may_miss else [])


def _feature(name: str, column: Floats, bins: int, spec: dict[str, Any]) -> dict[str, Any]:
    """One feature's bins and range. A missing value (NaN: a column that allows them) takes no
    part in the edges or the range and counts in the last bin, as the server's
    ``bisect_right`` counts it. A categorical feature (``spec``'s dtype ``category``) has one bin
    per category (:func:`category_edges`)."""
    missing = np.isnan(column)
    may_miss = bool(spec.get("missing"))
    extra: dict[str, Any] = {"missing": rounded(float(missing.mean()))} if may_miss else {}
    if spec.get("dtype") == "category":
        categories = [str(c) for c in spec["categories"]]
        column_edges = category_edges(len(categories), may_miss, bins)
        return {
            "name": name,
            "categories": categories,
            "edges": column_edges,
            "ratios": ratios(column_edges, column),
            "min": 0.0,
            "max": float(len(categories) - 1),
            **extra,
        }
    present = column[~missing] if missing.any() else column
    if present.size == 0:
        present = np.zeros(1)
    column_edges = edges(present, bins)
    return {
        "name": name,
        "edges": column_edges,
        "ratios": ratios(column_edges, column),
        "min": rounded_outward(float(present.min()), -1),
        "max": rounded_outward(float(present.max()), 1),
        **extra,
    }


def regression_profile(
    features: Sequence[str],
    train: Floats,
    test_predictions: Floats,
    *,
    bins: int = BINS,
    columns: Sequence[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A regression's profile as a JSON-ready dict: the features of ``train`` (rows by
    features; ``columns`` as for :func:`reference_profile`) and the distribution of the model's
    predictions on the test split (``test_predictions``, one per row) as the score. ValueError
    for shapes that do not fit."""
    if train.ndim != 2 or train.shape[1] != len(features):
        raise ValueError(f"train has shape {train.shape}; expected (rows, {len(features)})")
    values = np.asarray(test_predictions, dtype=np.float64).reshape(-1)
    if values.size == 0 or not np.all(np.isfinite(values)):
        raise ValueError("test_predictions must be one or more finite numbers")
    return {
        "bins": bins,
        "features": _features(features, train, bins, columns),
        "score": {"kind": PREDICTION, "class": None, **_distribution(values, bins)},
        "rows": int(train.shape[0]),
    }


def label_shares(classes: Sequence[str], labels: Sequence[str], train: Floats) -> dict[str, float]:
    """Each class's share of ``labels`` (one per train row), rounded; ValueError for a label
    ``classes`` does not name or a count that is not the train split's."""
    if len(labels) != train.shape[0]:
        raise ValueError(f"{len(labels)} train labels for {train.shape[0]} train rows")
    counts = dict.fromkeys(classes, 0)
    for label in labels:
        if label not in counts:
            raise ValueError(f"train label {label!r} is not one of {', '.join(classes)}")
        counts[label] += 1
    return {name: rounded(count / len(labels)) for name, count in counts.items()}


def write_profile(path: Path, profile: dict[str, Any]) -> Path:
    """Write ``profile`` as JSON with sorted keys and a trailing newline (byte-stable)."""
    path.write_text(json.dumps(profile, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return path
