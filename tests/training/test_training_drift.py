"""Offline drift (training/drift.py): the population stability index of docs/monitoring.md on known
counts, its floor for empty bins, the bin rule, agreement with an independent computation, and the
command line's output and one-line refusals. Hand-built profiles in tmp_path."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.special import rel_entr

from training import drift
from training.errors import run_stage

EDGES = [1.0, 2.0]
RATIOS = [0.25, 0.5, 0.25]


def profile_document(**changes: Any) -> dict[str, Any]:
    """A two-feature binary profile in the format of docs/monitoring.md."""
    document: dict[str, Any] = {
        "bins": 3,
        "features": [
            {"name": "a", "edges": EDGES, "ratios": RATIOS, "min": 0.0, "max": 3.0},
            {"name": "b", "edges": [10.0], "ratios": [0.5, 0.5], "min": 5.0, "max": 15.0},
        ],
        "classes": {"benign": 0.6, "malignant": 0.4},
        "score": {"kind": "positive_class_probability", "class": "malignant", "edges": [0.5],
                  "ratios": [0.6, 0.4]},
        "boundary_margin": 0.1,
        "rows": 8,
    }  # fmt: skip
    document.update(changes)
    return document


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = run_stage(drift.main, argv)
    out, err = capsys.readouterr()
    return status, out, err


# --- the formula ---------------------------------------------------------------------------


def test_psi_of_known_counts_is_the_hand_computed_value() -> None:
    # 4 rows: two in bin 0, one in bin 1, one in bin 2 -> shares 0.5, 0.25, 0.25 against
    # 0.25, 0.5, 0.25: (0.25)ln 2 + (-0.25)ln 0.5 + 0 = 0.5 ln 2.
    counts = drift.bin_counts(EDGES, [0.5, 0.7, 1.5, 2.5])
    assert counts == [2, 1, 1]
    assert drift.psi(drift.shares(counts), RATIOS) == pytest.approx(0.5 * math.log(2), abs=1e-12)
    assert 0.5 * math.log(2) == pytest.approx(0.34657359, abs=1e-8)


def test_identical_distributions_have_a_psi_of_zero() -> None:
    assert drift.psi(RATIOS, RATIOS) == 0.0


def test_psi_is_symmetric_and_positive() -> None:
    live, ref = [0.7, 0.2, 0.1], [0.2, 0.3, 0.5]
    assert drift.psi(live, ref) == pytest.approx(drift.psi(ref, live), abs=1e-15)
    assert drift.psi(live, ref) > 0


def test_an_empty_live_bin_counts_as_the_floor() -> None:
    # every row in bin 0: live 1, 0, 0 -> 1, 1e-4, 1e-4 (not renormalised)
    expected = (
        (1 - 0.25) * math.log(1 / 0.25)
        + (1e-4 - 0.5) * math.log(1e-4 / 0.5)
        + (1e-4 - 0.25) * math.log(1e-4 / 0.25)
    )
    assert expected == pytest.approx(7.2527, abs=1e-4)  # 1.0397 + 4.2577 + 1.9552, by hand
    assert drift.psi([1.0, 0.0, 0.0], RATIOS) == pytest.approx(expected, abs=1e-12)


def test_an_empty_reference_bin_counts_as_the_floor_and_keeps_psi_finite() -> None:
    value = drift.psi([0.5, 0.5], [1.0, 0.0])
    assert math.isfinite(value)
    assert value == pytest.approx(
        (0.5 - 1) * math.log(0.5) + (0.5 - 1e-4) * math.log(0.5 / 1e-4), abs=1e-12
    )


def test_the_floor_and_thresholds_are_the_ones_docs_monitoring_states() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "monitoring.md").read_text()
    assert (drift.FLOOR, drift.DRIFT, drift.MODERATE) == (1e-4, 0.2, 0.1)
    assert "both floored at `1e-4`" in text
    assert "PSI ≥ 0.2 drift, 0.1\u20130.2 moderate" in text


def test_a_value_on_an_edge_falls_in_the_bin_above_it() -> None:
    # bin 0 is (-inf, e1), bin i is [e_i, e_{i+1}), the last [e_last, +inf)
    assert drift.bin_counts(EDGES, [1.0, 2.0, 0.999999, -1e300, 1e300]) == [2, 1, 2]


def test_verdicts_follow_the_thresholds() -> None:
    assert [drift.verdict(v) for v in (0.0, 0.0999, 0.1, 0.1999, 0.2, 5.0)] == [
        "stable", "stable", "moderate", "moderate", "drift", "drift",
    ]  # fmt: skip


def test_psi_equals_an_independent_computation_on_random_data() -> None:
    """numpy's digitize for the bins and scipy's relative entropy both ways: sum (a - b) ln(a / b)
    is KL(a||b) + KL(b||a)."""
    rng = np.random.default_rng(15)
    for _ in range(50):
        reference = rng.normal(0, 1, 500)
        edges = sorted(set(np.quantile(reference, np.arange(1, 10) / 10).round(6).tolist()))
        ref = np.bincount(np.digitize(reference, edges), minlength=len(edges) + 1) / 500
        live_values = rng.normal(rng.uniform(-1, 1), rng.uniform(0.5, 2), int(rng.integers(1, 300)))
        independent = np.bincount(np.digitize(live_values, edges), minlength=len(edges) + 1)
        live = independent / independent.sum()
        a, b = np.maximum(live, 1e-4), np.maximum(ref, 1e-4)
        expected = float(np.sum(rel_entr(a, b) + rel_entr(b, a)))
        counts = drift.bin_counts(edges, live_values.tolist())
        assert counts == independent.tolist()
        assert drift.psi(drift.shares(counts), ref.tolist()) == pytest.approx(expected, rel=1e-12)


def test_psi_refuses_share_lists_of_different_lengths() -> None:
    with pytest.raises(drift.DriftError, match="one length"):
        drift.psi([1.0], [0.5, 0.5])


# --- profile and data ----------------------------------------------------------------------


def test_drift_compares_every_feature_and_counts_values_outside_the_training_range() -> None:
    profile = drift.parse_profile(profile_document())
    columns = {"a": [0.5, 0.7, 1.5, 2.5], "b": [4.0, 9.0, 11.0, 16.0]}
    result = drift.drift(profile, columns, ["benign", "benign", "malignant", "benign"])
    a, b = result.features
    assert (a.name, a.counts, a.below, a.above) == ("a", (2, 1, 1), 0, 0)
    assert a.psi == pytest.approx(0.5 * math.log(2), abs=1e-12)
    assert (b.name, b.counts, b.psi, b.below, b.above) == ("b", (2, 2), 0.0, 1, 1)
    assert result.rows == 4
    assert result.classes == pytest.approx(
        (0.75 - 0.6) * math.log(0.75 / 0.6) + (0.25 - 0.4) * math.log(0.25 / 0.4), abs=1e-12
    )


def test_the_labels_are_compared_with_the_training_labels_balance_when_the_profile_has_it() -> None:
    labels = {"benign": 0.75, "malignant": 0.25}
    profile = drift.parse_profile(profile_document(labels=labels))
    columns = {"a": [0.5, 0.7, 1.5, 2.5], "b": [4.0, 9.0, 11.0, 16.0]}
    result = drift.drift(profile, columns, ["benign", "benign", "malignant", "benign"])
    assert result.classes == pytest.approx(0.0, abs=1e-12)
    assert result.classes_reference == "the training labels"
    older = drift.drift(drift.parse_profile(profile_document()), columns, ["benign"] * 4)
    assert older.classes_reference == "the model's predictions on the training rows"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"features": []}, "features must be a non-empty list"),
        ({"rows": 0}, "rows must be a positive integer"),
        ({"features": [{"name": "a", "edges": [2.0, 1.0], "ratios": RATIOS, "min": 0, "max": 1}]},
         r"features\[0\] \(a\)\.edges must be strictly increasing"),
        ({"features": [{"name": "a", "edges": EDGES, "ratios": [0.5, 0.5], "min": 0, "max": 1}]},
         "ratios must have len"),
        ({"features": [{"name": "a", "edges": EDGES, "ratios": [0.5, 0.5, 0.5], "min": 0,
                        "max": 1}]}, "summing to 1"),
        ({"features": [{"name": "a", "edges": ["x"], "ratios": [0.5, 0.5], "min": 0, "max": 1}]},
         "must be a finite number"),
        ({"classes": ["benign"]}, "classes must be an object"),
        ({"labels": ["benign"]}, "labels must be an object"),
    ],
    ids=["no-features", "no-rows", "edges-order", "ratios-length", "ratios-sum", "edge-type",
         "classes", "labels"],
)  # fmt: skip
def test_a_malformed_profile_is_refused_naming_the_field(
    change: dict[str, Any], message: str
) -> None:
    with pytest.raises(drift.DriftError, match=message):
        drift.parse_profile(profile_document(**change))


def test_a_label_the_profile_does_not_know_is_refused() -> None:
    with pytest.raises(drift.DriftError, match="label 'unknown' is not a class of the profile"):
        drift.class_psi({"benign": 0.6, "malignant": 0.4}, ["benign", "unknown"])


# --- the command line ----------------------------------------------------------------------


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    profile = write(tmp_path, "profile.json", json.dumps(profile_document()))
    data = write(
        tmp_path,
        "snapshot.csv",
        "b,a,diagnosis\n4.0,0.5,benign\n9.0,0.7,benign\n11.0,1.5,malignant\n16.0,2.5,benign\n",
    )
    return profile, data


def test_the_markdown_table_lists_the_most_drifted_feature_first(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    profile, data = files
    status, out, err = cli(
        ["--profile", str(profile), "--data", str(data), "--target", "diagnosis", "--markdown"],
        capsys,
    )
    assert (status, err) == (0, "")
    assert out.splitlines() == [
        "4 rows against 8 training rows: 1 of 2 features drifted"
        " (PSI >= 0.2; 0.1 to 0.2 moderate).",
        "",
        "| feature | PSI | verdict | below training min | above training max |",
        "|---|---:|---|---:|---:|",
        "| `a` | 0.3466 | drift | 0 | 0 |",
        "| `b` | 0.0000 | stable | 1 | 1 |",
        "",
        # 0.15 ln 1.25 + 0.15 ln 1.6; this profile predates the labels' balance
        "Label balance: PSI 0.1040 (moderate), against the model's predictions on the training"
        " rows.",
    ]


def test_the_json_output_holds_each_features_psi_and_counts(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    profile, data = files
    status, out, _ = cli(["--profile", str(profile), "--data", str(data)], capsys)
    assert status == 0
    document = json.loads(out)
    assert document["rows"] == 4 and document["classes"] is None
    assert [(f["name"], f["psi"], f["verdict"], f["counts"]) for f in document["features"]] == [
        ("a", round(0.5 * math.log(2), 6), "drift", [2, 1, 1]),
        ("b", 0.0, "stable", [2, 2]),
    ]


@pytest.mark.parametrize(
    ("csv_text", "message"),
    [
        ("a,diagnosis\n1.0,benign\n", "no column 'b'"),
        ("a,b\n1.0,x\n", "line 2, column 'b': 'x' is not a finite number"),
        ("a,b\n1.0,nan\n", "line 2, column 'b': missing value 'nan' (the column may not miss"),
        ("a,b\n1.0,inf\n", "line 2, column 'b': 'inf' is not a finite number"),
        ("a,b\n1.0\n", "line 2 has 1 cells, the header 2"),
        ("a,b\n", "no data rows"),
        ("", "empty file"),
    ],
    ids=["missing-column", "text", "nan", "inf", "short-row", "no-rows", "empty"],
)
def test_a_data_file_it_cannot_compare_fails_in_one_line(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str], csv_text: str, message: str
) -> None:
    profile, data = files
    data.write_text(csv_text)
    status, out, err = cli(["--profile", str(profile), "--data", str(data)], capsys)
    assert status == 1 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert message in err


def test_a_missing_or_broken_profile_fails_in_one_line(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    profile, data = files
    for text, message in ((None, "no such file"), ("{", "not a JSON file")):
        if text is None:
            profile.unlink()
        else:
            profile.write_text(text)
        status, _, err = cli(["--profile", str(profile), "--data", str(data)], capsys)
        assert status == 1 and len(err.splitlines()) == 1 and message in err


def test_a_feature_name_cannot_break_the_markdown_table() -> None:
    feature = drift.FeatureDrift("x|`y`\n", 0.0, (1,), 0, 0)
    table = drift.markdown(drift.Drift(1, (feature,)))
    assert "| `x??y??` | 0.0000 | stable | 0 | 0 |" in table.splitlines()
