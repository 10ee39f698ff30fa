"""Offline drift: the population stability index of a data file against a model's reference profile.

    python -m training.drift --profile training/model/profile.json --data snapshot.csv [--markdown]
    python -m training.drift --profile ... --data ... --target diagnosis --markdown

Role: the retraining workflow (.github/workflows/retrain.yml) runs it on a new data snapshot
against the profile of the model on main, and puts the table in the retraining pull request;
people run it on any CSV. It computes what the recording rules compute from the live counters
(docs/monitoring.md), with the same formula, so an alert's number and this table's agree:

    psi = sum over bins of (live - ref) * ln(live / ref)

where ``live`` is the share of the file's rows in the bin, ``ref`` the profile's ratio, both
floored at FLOOR (an empty bin) and not renormalised. A row's bin is ``bisect_right(edges, x)``:
bin 0 is (-inf, e1), the last [e_last, +inf). PSI >= DRIFT is drift, >= MODERATE moderate.

Contract: pure functions (``load_profile``, ``bin_counts``, ``shares``, ``psi``, ``drift``,
``markdown``) over a profile.json (the format of docs/monitoring.md, written by the export stage)
and the columns of a CSV with a header line; the data file needs every feature the profile names,
each cell a finite number, or for a categorical feature (the profile lists its ``categories``)
any text: a known category counts in its own bin, another in the unseen bin (below the training
range). A missing cell (empty, ``NA``, ``NaN``, ``null``, ``none``, ``n/a``, any case: prepare's
rule) is allowed in a feature whose profile has ``missing`` (its column may miss values) and
counts in its last bin, in neither out-of-range count; in any other feature it is refused. With
``--target``, each label must be one the profile's classes name. With
``--target`` the labels' class shares are compared with the training labels' (the profile's
``labels``), or, for a profile written before it carried them, with the model's predicted classes
on the training rows (its ``classes``); the output says which. Anything else is one line on stderr
and exit status 1. Not a pipeline stage: nothing in training/dvc.yaml runs it. Output: JSON by
default (``{"rows", "features": [...], "classes", "classes_reference"}``), or with ``--markdown``
a table sorted by PSI, the most drifted first.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from training.dataset import MISSING
from training.errors import StageError, run_stage

#: A bin's share never counts as less than this (an empty bin), on both sides.
FLOOR = 1e-4
#: PSI from here up is drift (the conventional "significant shift"); the alert's threshold.
DRIFT = 0.2
#: PSI from here up to DRIFT is a moderate shift.
MODERATE = 0.1
#: How far a profile's ratios may sum from 1 (they are rounded to 6 significant digits).
RATIO_SUM_TOLERANCE = 1e-3


class DriftError(StageError):
    """The profile or the data cannot be compared (the message says why, in one line)."""


@dataclass(frozen=True)
class FeatureProfile:
    """One feature of the reference profile: bin edges, the training split's share per bin, and
    the training range."""

    name: str
    edges: tuple[float, ...]
    ratios: tuple[float, ...]
    low: float
    high: float
    #: A categorical feature's categories (a cell's code is its index, -1 for another); None for
    #: a numeric one.
    categories: tuple[str, ...] | None = None
    #: The train split's share of missing values; None: the column may not miss values.
    missing: float | None = None

    def code(self, cell: str) -> float:
        """A CSV cell as the value the profile bins: NaN for a missing cell, a category's index
        (-1 for an unknown one), or the number; DriftError (no line) for anything else."""
        if cell.strip().lower() in MISSING:
            if self.missing is None:
                raise DriftError(f"missing value {cell!r} (the column may not miss values)")
            return math.nan
        if self.categories is not None:
            return float(self.categories.index(cell)) if cell in self.categories else -1.0
        try:
            value = float(cell)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise DriftError(f"{cell!r} is not a finite number")
        return value


@dataclass(frozen=True)
class Profile:
    """The parts of profile.json the offline comparison reads."""

    features: tuple[FeatureProfile, ...]
    classes: dict[str, float]
    rows: int
    #: The training labels' class balance; empty for a profile written without it.
    labels: dict[str, float] = field(default_factory=dict)

    def balance(self) -> tuple[dict[str, float], str]:
        """The class balance a data file's labels are compared with, and what it is: the
        training labels' when the profile has them, else the model's predictions on the
        training rows (a profile written before it carried the labels' balance)."""
        if self.labels:
            return self.labels, "the training labels"
        return self.classes, "the model's predictions on the training rows"


@dataclass(frozen=True)
class FeatureDrift:
    """One feature of a data file against its profile: PSI, counts per bin, values out of range."""

    name: str
    psi: float
    counts: tuple[int, ...]
    below: int
    above: int

    @property
    def verdict(self) -> str:
        return verdict(self.psi)


@dataclass(frozen=True)
class Drift:
    """A data file against a profile: every feature in the profile's order, and the label balance
    when a target column was given."""

    rows: int
    features: tuple[FeatureDrift, ...]
    classes: float | None = None
    #: What the labels were compared with (Profile.balance).
    classes_reference: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "features": [
                {
                    "name": f.name,
                    "psi": round(f.psi, 6),
                    "verdict": f.verdict,
                    "counts": list(f.counts),
                    "below_min": f.below,
                    "above_max": f.above,
                }
                for f in self.features
            ],
            "classes": None if self.classes is None else round(self.classes, 6),
            "classes_reference": self.classes_reference or None,
        }


def verdict(value: float) -> str:
    """``drift`` (PSI >= DRIFT), ``moderate`` (>= MODERATE) or ``stable``."""
    if value >= DRIFT:
        return "drift"
    if value >= MODERATE:
        return "moderate"
    return "stable"


def psi(live: Sequence[float], ref: Sequence[float], floor: float = FLOOR) -> float:
    """Population stability index of two distributions over the same bins (shares, each summing to
    about 1): sum of (live - ref) * ln(live / ref), both floored at FLOOR, not renormalised."""
    if len(live) != len(ref) or not live:
        raise DriftError(f"psi needs two share lists of one length, got {len(live)} and {len(ref)}")
    total = 0.0
    for observed, expected in zip(live, ref, strict=True):
        a, b = max(observed, floor), max(expected, floor)
        total += (a - b) * math.log(a / b)
    return total


def bin_counts(edges: Sequence[float], values: Iterable[float]) -> list[int]:
    """How many VALUES fall in each of the len(EDGES)+1 bins; a value's bin is
    bisect_right(EDGES, value)."""
    counts = [0] * (len(edges) + 1)
    for value in values:
        counts[bisect_right(edges, value)] += 1
    return counts


def shares(counts: Sequence[int]) -> list[float]:
    """Counts as shares of their total (all zeros for no rows)."""
    total = sum(counts)
    return [count / total if total else 0.0 for count in counts]


# --- profile.json ---------------------------------------------------------------------------


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise DriftError(f"{where} must be a finite number, got {value!r}")
    return float(value)


def _feature(raw: Any, where: str) -> FeatureProfile:
    if not isinstance(raw, dict):
        raise DriftError(f"{where} must be an object, got {raw!r}")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise DriftError(f"{where}.name must be a non-empty string, got {name!r}")
    where = f"{where} ({name})"
    edges, ratios = raw.get("edges"), raw.get("ratios")
    if not isinstance(edges, list) or not isinstance(ratios, list):
        raise DriftError(f"{where}: edges and ratios must be lists")
    edge_values = tuple(_number(e, f"{where}.edges[{i}]") for i, e in enumerate(edges))
    if any(b <= a for a, b in pairwise(edge_values)):
        raise DriftError(f"{where}.edges must be strictly increasing")
    ratio_values = tuple(_number(r, f"{where}.ratios[{i}]") for i, r in enumerate(ratios))
    if len(ratio_values) != len(edge_values) + 1:
        raise DriftError(
            f"{where}: ratios must have len(edges)+1 = {len(edge_values) + 1} entries,"
            f" has {len(ratio_values)}"
        )
    if any(r < 0 for r in ratio_values) or abs(sum(ratio_values) - 1) > RATIO_SUM_TOLERANCE:
        raise DriftError(f"{where}.ratios must be shares >= 0 summing to 1")
    low, high = _number(raw.get("min"), f"{where}.min"), _number(raw.get("max"), f"{where}.max")
    categories = raw.get("categories")
    if categories is not None and (
        not isinstance(categories, list)
        or not categories
        or not all(isinstance(c, str) for c in categories)
    ):
        raise DriftError(f"{where}.categories must be a non-empty list of strings")
    missing = raw.get("missing")
    return FeatureProfile(
        name,
        edge_values,
        ratio_values,
        low,
        high,
        None if categories is None else tuple(categories),
        None if missing is None else _number(missing, f"{where}.missing"),
    )


def parse_profile(document: Any, source: str = "profile") -> Profile:
    """A Profile from profile.json's parsed DOCUMENT; DriftError naming the first bad field."""
    if not isinstance(document, dict):
        raise DriftError(f"{source}: must be a JSON object")
    raw_features = document.get("features")
    if not isinstance(raw_features, list) or not raw_features:
        raise DriftError(f"{source}: features must be a non-empty list")
    features = tuple(
        _feature(raw, f"{source}: features[{i}]") for i, raw in enumerate(raw_features)
    )
    names = [f.name for f in features]
    if len(set(names)) != len(names):
        raise DriftError(f"{source}: a feature is named twice in features")
    balances = {}
    for key in ("classes", "labels"):
        raw = document.get(key, {})
        if not isinstance(raw, dict):
            raise DriftError(f"{source}: {key} must be an object of class: ratio")
        balances[key] = {str(k): _number(v, f"{source}: {key}[{k!r}]") for k, v in raw.items()}
    rows = document.get("rows")
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        raise DriftError(f"{source}: rows must be a positive integer, got {rows!r}")
    return Profile(features, balances["classes"], rows, balances["labels"])


def load_profile(path: Path) -> Profile:
    """Read and check a profile.json file."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DriftError(f"{path}: no such file (the model artifact's profile.json)") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DriftError(f"{path}: not a JSON file ({exc.__class__.__name__})") from None
    return parse_profile(document, str(path))


# --- the data file --------------------------------------------------------------------------


def read_columns(
    path: Path,
    numeric: Sequence[str] | Sequence[FeatureProfile],
    labels: str | None = None,
) -> tuple[dict[str, list[float]], list[str]]:
    """The feature columns of a CSV file with a header line as the values the profile bins
    (FeatureProfile.code; a plain name: a numeric column that may not miss values), and the
    LABELS column's cells (empty without one); DriftError naming the line and column of a bad
    cell."""
    profiles = [
        f if isinstance(f, FeatureProfile) else FeatureProfile(f, (), (1.0,), 0.0, 0.0)
        for f in numeric
    ]
    numeric = [f.name for f in profiles]
    columns: dict[str, list[float]] = {name: [] for name in numeric}
    label_cells: list[str] = []
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if not header:
                raise DriftError(f"{path}: empty file (a CSV file needs a header line)")
            wanted = [*numeric, *([labels] if labels else [])]
            missing = [name for name in wanted if name not in header]
            if missing:
                role = "the label column" if missing[0] == labels else "a feature of the profile"
                raise DriftError(f"{path}: no column {missing[0]!r} ({role})")
            index = {name: header.index(name) for name in wanted}
            for line, row in enumerate(reader, start=2):
                if not row:
                    continue
                if len(row) != len(header):
                    raise DriftError(
                        f"{path}: line {line} has {len(row)} cells, the header {len(header)}"
                    )
                for feature in profiles:
                    try:
                        value = feature.code(row[index[feature.name]])
                    except DriftError as exc:
                        raise DriftError(
                            f"{path}: line {line}, column {feature.name!r}: {exc}"
                        ) from None
                    columns[feature.name].append(value)
                if labels:
                    label_cells.append(row[index[labels]])
    except FileNotFoundError:
        raise DriftError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise DriftError(f"{path}: not UTF-8 text") from None
    if not any(columns.values()) and not label_cells:
        raise DriftError(f"{path}: no data rows")
    return columns, label_cells


def class_psi(reference: Mapping[str, float], labels: Sequence[str]) -> float:
    """PSI of the LABELS' class shares against the REFERENCE class balance (its classes, in
    order); a label the reference does not name is refused."""
    unknown = sorted(set(labels) - set(reference))
    if unknown:
        raise DriftError(
            f"label {unknown[0]!r} is not a class of the profile ({', '.join(reference)})"
        )
    names = list(reference)
    counts = [0] * len(names)
    for label in labels:
        counts[names.index(label)] += 1
    return psi(shares(counts), [reference[name] for name in names])


def drift(
    profile: Profile, columns: Mapping[str, Sequence[float]], labels: Sequence[str] = ()
) -> Drift:
    """Every feature of PROFILE against the COLUMNS of a data file (same row count each), and the
    label balance when LABELS are given."""
    rows = {len(columns[f.name]) for f in profile.features}
    if len(rows) != 1 or 0 in rows:
        raise DriftError("the data needs one or more rows, the same number in every feature")
    features = []
    for feature in profile.features:
        values = columns[feature.name]
        counts = bin_counts(feature.edges, values)
        features.append(
            FeatureDrift(
                name=feature.name,
                psi=psi(shares(counts), feature.ratios),
                counts=tuple(counts),
                below=sum(1 for v in values if v < feature.low),
                above=sum(1 for v in values if v > feature.high),
            )
        )
    if not labels:
        return Drift(rows.pop(), tuple(features))
    balance, reference = profile.balance()
    return Drift(rows.pop(), tuple(features), class_psi(balance, labels), reference)


def _cell(text: str) -> str:
    """TEXT as a markdown table cell's code span (no pipes, backticks or line breaks)."""
    return "`" + "".join(c if c.isprintable() and c not in "|`" else "?" for c in text) + "`"


def markdown(result: Drift, reference_rows: int | None = None) -> str:
    """The drift table, most drifted first (ties by name): PSI, verdict and the rows outside the
    training range per feature; then the label balance's PSI when computed."""
    against = f" against {reference_rows} training rows" if reference_rows else ""
    flagged = sum(1 for f in result.features if f.psi >= DRIFT)
    lines = [
        f"{result.rows} rows{against}: {flagged} of {len(result.features)} features drifted"
        f" (PSI >= {DRIFT}; {MODERATE} to {DRIFT} moderate).",
        "",
        "| feature | PSI | verdict | below training min | above training max |",
        "|---|---:|---|---:|---:|",
    ]
    for f in sorted(result.features, key=lambda f: (-f.psi, f.name)):
        lines.append(f"| {_cell(f.name)} | {f.psi:.4f} | {f.verdict} | {f.below} | {f.above} |")
    if result.classes is not None:
        lines += [
            "",
            f"Label balance: PSI {result.classes:.4f} ({verdict(result.classes)}), against "
            f"{result.classes_reference}.",
        ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", type=Path, required=True, help="the artifact's profile.json")
    parser.add_argument("--data", type=Path, required=True, help="a CSV file with a header line")
    parser.add_argument("--target", help="the label column: also compare the class balance")
    parser.add_argument("--markdown", action="store_true", help="a markdown table, not JSON")
    args = parser.parse_args(argv)
    profile = load_profile(args.profile)
    if args.target is not None and not profile.balance()[0]:
        raise DriftError(f"{args.profile}: no classes to compare the label column with")
    columns, labels = read_columns(args.data, profile.features, args.target)
    result = drift(profile, columns, labels)
    if args.markdown:
        print(markdown(result, profile.rows), end="")
    else:
        print(json.dumps(result.as_json(), indent=2))


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
