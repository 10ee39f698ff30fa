"""Categorical features and missing values in the drift profile, the server's counters and the
offline check; and the example datasets of training/examples/ kept in step with the pipeline.

The profile (training/profile.py) gives a categorical feature one bin per category (bin 0 for an
unseen one, the last for missing values) and records each feature's missing share; the server's
batch path (serving/monitoring.py) counts a missing value where its one-row path does (the last
bin, in range); training/drift.py reads a CSV's text categories and missing cells with the
profile's lists. Each is shown beside the defect it replaces: the profile built without the
column kinds (as export did) merges categories, a profile without ``categories`` makes the
offline check refuse text, a batch path that does not count missing values apart puts them in
bin 0 and below the range.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from training_helpers import ROOT

import modelcard
from modelcard import runtime
from serving.monitoring import Signals
from training import bundled, drift
from training.profile import category_edges, reference_profile

PLANS = ["basic", "plus", "pro"]
COLUMNS: list[dict[str, Any]] = [
    {"name": "plan", "dtype": "category", "categories": PLANS, "unseen": "error",
     "missing": {"strategy": "most_frequent", "fill": "basic"}},
    {"name": "region", "dtype": "category", "categories": ["east", "north"], "unseen": "ignore"},
    {"name": "tenure", "dtype": "float64", "missing": {"strategy": "median", "fill": 12.0}},
    {"name": "charges", "dtype": "float64"},
]  # fmt: skip
NAMES = [c["name"] for c in COLUMNS]


def coded_train(rows: int = 200, seed: int = 3) -> np.ndarray:
    """Coded training rows: plan 0-2 with one in ten missing, region 0-1, tenure with gaps,
    charges a number."""
    rng = np.random.default_rng(seed)
    x = np.column_stack([
        rng.choice([0, 1, 2], size=rows, p=[0.5, 0.3, 0.2]).astype(float),
        rng.choice([0, 1], size=rows).astype(float),
        rng.integers(1, 72, size=rows).astype(float),
        rng.normal(50, 10, size=rows),
    ])  # fmt: skip
    x[::10, 0] = np.nan
    x[::7, 2] = np.nan
    return x


def profile_of(x: np.ndarray, columns: list[dict[str, Any]] | None = COLUMNS) -> dict[str, Any]:
    proba = np.column_stack([np.full(len(x), 0.4), np.full(len(x), 0.6)])
    return reference_profile(NAMES, ["no", "yes"], x, proba, proba, columns=columns)


def test_a_categorical_feature_has_one_bin_per_category_and_one_for_missing_values() -> None:
    x = coded_train()
    plan, region, tenure, charges = profile_of(x)["features"]
    assert plan["categories"] == PLANS and plan["edges"] == [0.0, 1.0, 2.0, 3.0]
    shares = [float(np.mean(x[:, 0] == code)) for code in range(3)]
    assert plan["ratios"] == pytest.approx([0.0, *shares, 0.1], abs=1e-6)
    assert plan["missing"] == 0.1 and (plan["min"], plan["max"]) == (0.0, 2.0)
    # no missing values allowed: no missing bin, and no `missing` key
    assert region["edges"] == [0.0, 1.0] and "missing" not in region
    assert tenure["missing"] == pytest.approx(float(np.mean(np.isnan(x[:, 2]))), abs=1e-6)
    assert "categories" not in tenure and "missing" not in charges
    # more categories than bins: the last ones share the last category's bin
    assert category_edges(12, True, 10) == [*map(float, range(8)), 12.0]
    assert len(category_edges(12, True, 10)) + 1 == 10


def test_without_the_column_kinds_the_profile_merged_categories_and_missing_values() -> None:
    """The defect: the profile of codes by quantile (what export wrote before it passed the
    column kinds) puts the last category and the missing values in one bin."""
    plan = profile_of(coded_train(), columns=None)["features"][0]
    assert "categories" not in plan
    assert len(plan["ratios"]) < len(PLANS) + 2


def signals(profile: dict[str, Any], tmp_path: Path) -> Signals:
    """The server's counters for PROFILE (through the card contract's reader)."""
    (tmp_path / "profile.json").write_text(json.dumps(profile))
    card = {"features": COLUMNS, "classes": ["no", "yes"], "task": "classification"}
    parsed = modelcard.read_profile(tmp_path, card)
    return Signals(parsed, ["no", "yes"], tag="t", directory=None)


def live_rows() -> np.ndarray:
    rows = coded_train(rows=40, seed=9)
    rows[3, 1] = -1.0  # an unseen region (ignored)
    rows[5, :3] = np.nan  # plan, region and tenure missing (region: not allowed, counted anyway)
    return rows


def test_the_batch_path_counts_missing_values_where_the_one_row_path_does(
    tmp_path: Path,
) -> None:
    profile = profile_of(coded_train())
    proba = np.column_stack([np.full(40, 0.3), np.full(40, 0.7)])
    x = live_rows()
    batch, one_by_one = signals(profile, tmp_path), signals(profile, tmp_path)
    batch.rows(x, proba)
    for row, p in zip(x.tolist(), proba.tolist(), strict=True):
        one_by_one.row(row, p, 1)
    assert batch.totals().tolist() == one_by_one.totals().tolist()
    # and both count the profile's rule: a missing plan in plan's last bin, not out of range
    layout, n = batch.layout, len(NAMES)
    plan_bins = [batch.totals()[layout.input + b * n] for b in range(5)]
    codes = x[:, 0]
    expected = [np.sum(codes == c - 1) for c in range(4)] + [np.sum(np.isnan(codes))]
    assert plan_bins == [float(v) for v in expected]
    assert batch.totals()[layout.below] == 0.0 and batch.totals()[layout.above] == 0.0


def test_without_counting_missing_values_apart_the_batch_path_disagrees(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The defect: a NaN compares false with every threshold, so the batch path put it in bin 0
    and below the range while the one-row path put it in the last bin."""
    profile = profile_of(coded_train())
    monkeypatch.setattr(Signals, "_count_missing", lambda self, x, steps: None)
    proba = np.column_stack([np.full(40, 0.3), np.full(40, 0.7)])
    x = live_rows()
    batch, one_by_one = signals(profile, tmp_path), signals(profile, tmp_path)
    batch.rows(x, proba)
    for row, p in zip(x.tolist(), proba.tolist(), strict=True):
        one_by_one.row(row, p, 1)
    assert batch.totals().tolist() != one_by_one.totals().tolist()


CSV = """plan,region,tenure,charges
basic,east,12,50.5
pro,north,,61.0
,east,30,40.25
gold,west,NA,55.0
plus,north,5,45.0
"""


def test_the_offline_check_reads_text_categories_and_missing_cells(tmp_path: Path) -> None:
    profile = drift.parse_profile(profile_of(coded_train()))
    data = tmp_path / "snapshot.csv"
    data.write_text(CSV)
    columns, _ = drift.read_columns(data, profile.features)
    assert columns["plan"][:2] == [0.0, 2.0]
    assert np.isnan(columns["plan"][2]) and columns["plan"][3] == -1.0  # missing, unseen
    assert columns["region"] == [0.0, 1.0, 0.0, -1.0, 1.0]
    result = drift.drift(profile, columns)
    plan, region, tenure, _ = result.features
    assert plan.counts == (1, 1, 1, 1, 1) and plan.below == 1 and plan.above == 0
    assert region.counts == (1, 2, 2) and region.below == 1
    assert tenure.counts[-1] >= 2 and tenure.below == tenure.above == 0
    # the codes are the server's: modelcard.runtime encodes the same text alike
    cells = [line.split(",")[0] for line in CSV.splitlines()[1:]]
    served = runtime.encode_column(
        {**COLUMNS[0], "unseen": "ignore"}, [c or None for c in cells]
    ).tolist()
    assert np.allclose(served, columns["plan"], equal_nan=True)


def test_the_offline_check_refuses_a_gap_where_the_column_may_not_miss_values(
    tmp_path: Path,
) -> None:
    profile = drift.parse_profile(profile_of(coded_train()))
    data = tmp_path / "snapshot.csv"
    data.write_text(CSV.replace("40.25", ""))
    with pytest.raises(drift.DriftError) as refused:
        drift.read_columns(data, profile.features)
    assert str(refused.value) == (
        f"{data}: line 4, column 'charges': missing value '' (the column may not miss values)"
    )


def test_without_the_profiles_categories_the_offline_check_refused_text(tmp_path: Path) -> None:
    """The defect: a profile of codes only (as export wrote it) leaves drift nothing to code a
    category's text with."""
    document = profile_of(coded_train(), columns=None)
    data = tmp_path / "snapshot.csv"
    data.write_text(CSV)
    with pytest.raises(drift.DriftError, match=r"line 2, column 'plan': 'basic' is not a finite"):
        drift.read_columns(data, drift.parse_profile(document).features)


# --- the examples -----------------------------------------------------------------------------

EXAMPLES = ROOT / "training" / "examples"
#: What an example's params.yaml may change from the committed one: its data, its estimator,
#: its gate and its name.
EXAMPLE_KEYS = {"data", "train.estimator", "evaluate.thresholds", "artifact"}


def flatten(document: Any, prefix: str = "") -> dict[str, Any]:
    """Every leaf of a YAML document by dotted key."""
    if not isinstance(document, dict) or not document:
        return {prefix: document}
    flat: dict[str, Any] = {}
    for key, value in document.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def stale_keys(committed: dict[str, Any], example: dict[str, Any]) -> list[str]:
    """The keys outside EXAMPLE_KEYS where EXAMPLE differs from COMMITTED (missing, added or
    another value)."""
    ours, theirs = flatten(committed), flatten(example)
    free = tuple(f"{k}." for k in EXAMPLE_KEYS)
    return sorted(
        key
        for key in ours.keys() | theirs.keys()
        if key not in EXAMPLE_KEYS
        and not key.startswith(free)
        and ours.get(key, "<absent>") != theirs.get(key, "<absent>")
    )


@pytest.mark.parametrize("name", ["churn", "diabetes"])
def test_an_examples_params_differ_from_the_committed_ones_only_in_data_model_and_gate(
    name: str,
) -> None:
    committed = yaml.safe_load((ROOT / "training/params.yaml").read_text())
    example = yaml.safe_load((EXAMPLES / name / "params.yaml").read_text())
    assert stale_keys(committed, example) == []
    assert example["data"]["file"] == f"training/data/{name}.csv"
    # a stale copy is seen: a section the committed file has and the copy lacks
    del example["export"]["profile_bins"]
    assert stale_keys(committed, example) == ["export.profile_bins"]


@pytest.mark.parametrize("name", ["churn", "diabetes"])
def test_an_examples_dvc_file_records_the_bytes_its_generator_writes(name: str) -> None:
    (line,) = bundled.check(EXAMPLES / name)
    assert line.endswith("regenerates byte for byte (md5 " + bundled.recorded_md5(
        EXAMPLES / name / f"{name}.csv.dvc")[1] + ")")  # fmt: skip
