"""The reference profile (training/profile.py) and its contract (modelcard.read_profile): the bins
of known data, discrete and constant features, byte-stable output, the score's kind, and the
artifact refusing a profile that is tampered with or malformed."""

from __future__ import annotations

import bisect
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import modelcard
from training import profile as prof
from training.export import served_files


def test_a_uniform_column_gets_ten_equal_bins_at_its_deciles() -> None:
    values = np.arange(100, dtype=np.float64)
    edges = prof.edges(values)
    assert edges == [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0]
    assert prof.ratios(edges, values) == [0.1] * 10


def test_a_value_on_an_edge_falls_in_the_bin_above_it_as_bisect_right_says() -> None:
    edges = [1.0, 2.5, 4.0]
    values = np.array([-np.inf, 0.9, 1.0, 2.4999, 2.5, 3.9, 4.0, 1e9])
    assert prof.bin_index(edges, values).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert prof.bin_index(edges, values).tolist() == [bisect.bisect_right(edges, v) for v in values]


@pytest.mark.parametrize(
    ("values", "edges", "ratios"),
    [
        ([0.0] * 70 + [1.0] * 30, [1.0], [0.7, 0.3]),
        ([1.0] * 20 + [2.0] * 50 + [5.0] * 30, [2.0, 5.0], [0.2, 0.5, 0.3]),
        ([3.0] * 7, [], [1.0]),
    ],
    ids=["two values", "three values", "constant"],
)
def test_a_discrete_feature_gets_one_bin_per_value_and_no_empty_bin(
    values: list[float], edges: list[float], ratios: list[float]
) -> None:
    column = np.array(values)
    assert prof.edges(column) == edges
    assert prof.ratios(edges, column) == ratios


def test_ratios_are_shares_under_the_rounded_edges_and_sum_to_one() -> None:
    rng = np.random.default_rng(0)
    column = rng.lognormal(size=455) * 1e-3
    edges = prof.edges(column)
    assert len(edges) == 9
    assert all(e == float(f"{e:.6g}") for e in edges)
    counts = np.bincount([bisect.bisect_right(edges, v) for v in column], minlength=10)
    assert prof.ratios(edges, column) == [prof.rounded(c / 455) for c in counts.tolist()]
    assert abs(sum(prof.ratios(edges, column)) - 1) < 1e-5


def test_the_rounded_range_holds_every_training_value() -> None:
    column = np.array([6.9812355, 7.5, 28.1123456])
    low, high = prof.rounded_outward(column.min(), -1), prof.rounded_outward(column.max(), 1)
    assert (low, high) == (6.98123, 28.1124)
    assert low <= column.min() and column.max() <= high
    assert prof.rounded_outward(-6.9812355, -1) == -6.98124
    assert prof.rounded_outward(0.0, 1) == 0.0


def fitted(dataset: Any) -> tuple[Any, np.ndarray, list[str], list[str]]:
    bunch = dataset()
    labels = np.array(bunch.target_names)[bunch.target]
    model = Pipeline([("s", StandardScaler()), ("c", LogisticRegression(max_iter=1000))])
    model.fit(bunch.data, labels)
    names = [f"f{i}" for i in range(bunch.data.shape[1])]
    return model, np.asarray(bunch.data, dtype=np.float64), [str(c) for c in model.classes_], names


def test_two_classes_score_the_positive_class_and_more_score_the_top_probability() -> None:
    assert prof.score_kind(["benign", "malignant"], None) == (
        "positive_class_probability",
        "malignant",
    )
    assert prof.score_kind(["malignant", "benign"], "malignant") == (
        "positive_class_probability",
        "malignant",
    )
    assert prof.score_kind(["a", "b", "c"], None) == ("top_probability", None)
    with pytest.raises(ValueError, match="positive class 'x' is not one of a, b"):
        prof.score_kind(["a", "b"], "x")
    proba = np.array([[0.2, 0.8], [0.9, 0.1]])
    assert prof.scores(proba, ["a", "b"], "a").tolist() == [0.2, 0.9]
    assert prof.scores(proba, ["a", "b"], None).tolist() == [0.8, 0.9]


@pytest.mark.parametrize("dataset", [load_breast_cancer, load_wine], ids=["binary", "3 classes"])
def test_the_profile_describes_the_train_split_the_model_and_its_scores(dataset: Any) -> None:
    model, rows, classes, names = fitted(dataset)
    proba = model.predict_proba(rows)
    built = prof.reference_profile(names, classes, rows, proba, proba[:50])
    assert built["bins"] == 10 and built["rows"] == len(rows)
    assert [f["name"] for f in built["features"]] == names
    for index, feature in enumerate(built["features"]):
        assert feature["edges"] == prof.edges(rows[:, index])
        assert feature["min"] <= rows[:, index].min() and rows[:, index].max() <= feature["max"]
    predicted = np.bincount(proba.argmax(axis=1), minlength=len(classes)) / len(rows)
    assert built["classes"] == {c: prof.rounded(p) for c, p in zip(classes, predicted, strict=True)}
    kind, score_class = prof.score_kind(classes, None)
    assert (built["score"]["kind"], built["score"]["class"]) == (kind, score_class)
    expected = prof.scores(proba[:50], classes, score_class)
    assert built["score"]["ratios"] == prof.ratios(built["score"]["edges"], expected)


def test_the_profile_takes_the_bins_and_the_margin_its_caller_gives() -> None:
    model, rows, classes, names = fitted(load_breast_cancer)
    proba = model.predict_proba(rows)
    built = prof.reference_profile(names, classes, rows, proba, proba, bins=4, boundary_margin=0.25)
    assert built["bins"] == 4 and built["boundary_margin"] == 0.25
    assert all(len(f["ratios"]) <= 4 for f in built["features"])
    assert len(built["score"]["ratios"]) <= 4
    assert max(len(f["ratios"]) for f in built["features"]) == 4


def test_the_class_balance_is_the_share_of_each_class_among_the_training_labels() -> None:
    model, rows, classes, names = fitted(load_wine)
    bunch = load_wine()
    labels = [str(label) for label in np.array(bunch.target_names)[bunch.target]]
    proba = model.predict_proba(rows)
    built = prof.reference_profile(names, classes, rows, proba, proba, train_labels=labels)
    assert built["labels"] == {c: prof.rounded(labels.count(c) / len(labels)) for c in classes}
    assert built["labels"] != built["classes"] or labels == [
        classes[i] for i in proba.argmax(axis=1)
    ]
    assert "labels" not in prof.reference_profile(names, classes, rows, proba, proba)
    with pytest.raises(ValueError, match="train label 'class_9' is not one of class_0"):
        prof.reference_profile(
            names, classes, rows, proba, proba, train_labels=[*labels[:-1], "class_9"]
        )
    with pytest.raises(ValueError, match="177 train labels for 178 train rows"):
        prof.reference_profile(names, classes, rows, proba, proba, train_labels=labels[1:])


def test_the_same_data_gives_the_same_bytes_even_when_its_last_bits_differ(
    tmp_path: Path,
) -> None:
    model, rows, classes, names = fitted(load_breast_cancer)
    proba = model.predict_proba(rows)
    first = prof.write_profile(
        tmp_path / "a.json", prof.reference_profile(names, classes, rows, proba, proba)
    )
    nudged = rows * (1 + 1e-15)
    second = prof.write_profile(
        tmp_path / "b.json", prof.reference_profile(names, classes, nudged, proba, proba)
    )
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes().endswith(b"}\n")


def test_shapes_that_do_not_fit_are_refused_naming_them() -> None:
    rows = np.zeros((4, 3))
    proba = np.full((4, 2), 0.5)
    with pytest.raises(ValueError, match=r"train has shape \(4, 3\); expected \(rows, 2\)"):
        prof.reference_profile(["a", "b"], ["x", "y"], rows, proba, proba)
    with pytest.raises(ValueError, match=r"test_proba has shape \(4, 3\)"):
        prof.reference_profile(["a", "b", "c"], ["x", "y"], rows, proba, np.zeros((4, 3)))


# --- in the artifact -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model, rows, classes, names = fitted(load_breast_cancer)
    bunch = load_breast_cancer()
    directory = tmp_path_factory.mktemp("artifact")
    served = served_files(
        model,
        classes,
        rows,
        rows[:100],
        directory,
        features=names,
        allow_scikit_learn=False,
        positive_class="malignant",
        train_labels=[str(label) for label in np.array(bunch.target_names)[bunch.target]],
    )
    card = {
        "schema_version": modelcard.SCHEMA_VERSION,
        "name": "m",
        "features": [{"name": name, "dtype": "float64"} for name in names],
        "classes": classes,
        **served,
    }
    modelcard.write_card(directory, card)
    return directory


def test_the_export_writes_the_profile_the_card_names_and_the_contract_reads(
    artifact: Path,
) -> None:
    card = modelcard.load(artifact)
    assert card["profile"]["file"] == "profile.json"
    assert "profile.json" in modelcard.served_files(card)
    profile = modelcard.read_profile(artifact, card)
    assert [f.name for f in profile.features] == [f["name"] for f in card["features"]]
    assert (profile.score_kind, profile.score_class) == ("positive_class_probability", "malignant")
    assert profile.bins == 10 and profile.boundary_margin == 0.1 and profile.rows == 569
    assert [name for name, _ in profile.classes] == card["classes"]
    assert dict(profile.labels) == pytest.approx(
        {"benign": 357 / 569, "malignant": 212 / 569}, abs=1e-6
    )
    assert all(len(f.bins.ratios) == len(f.bins.edges) + 1 for f in profile.features)


def copy_of(artifact: Path, tmp_path: Path) -> Path:
    target = tmp_path / "artifact"
    target.mkdir()
    for item in artifact.iterdir():
        (target / item.name).write_bytes(item.read_bytes())
    return target


def test_a_tampered_profile_is_refused_before_anything_loads(
    artifact: Path, tmp_path: Path
) -> None:
    directory = copy_of(artifact, tmp_path)
    path = directory / "profile.json"
    path.write_text(path.read_text().replace('"bins": 10', '"bins": 9'))
    with pytest.raises(
        modelcard.ContractError, match=r"sha256 differs from metadata\.json profile"
    ):
        modelcard.load(directory)
    path.unlink()
    with pytest.raises(modelcard.ContractError, match=r"profile\.json: not found"):
        modelcard.load(directory)


def test_a_card_without_a_profile_is_refused_naming_the_key(artifact: Path) -> None:
    card = modelcard.read_card(artifact)
    del card["profile"]
    with pytest.raises(modelcard.ContractError, match="the key 'profile' is missing"):
        modelcard.check_card(card, artifact / "metadata.json")
    card["profile"] = {"file": "other.json", "sha256": "0" * 64}
    with pytest.raises(modelcard.ContractError, match=r"profile\.file must be 'profile\.json'"):
        modelcard.check_card(card, artifact / "metadata.json")


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda p: p.pop("score"), "the key 'score' is missing"),
        (lambda p: p.update(bins=1), "bins must be an integer from 2 to 100"),
        (lambda p: p["features"].pop(), "features must list the card's 30 features"),
        (lambda p: p["features"][3].update(name="x"), r"features\[3\]\.name must be 'f3'"),
        (lambda p: p["features"][0]["edges"].reverse(), r"features\[0\]\.edges must be at most 9"),
        (lambda p: p["features"][0]["ratios"].pop(), r"features\[0\]\.ratios must have len"),
        (lambda p: p["features"][0]["ratios"].__setitem__(0, 0.9), r"summing to 1"),
        (lambda p: p["features"][2].update(min=1e9), r"features\[2\]\.min and \.max"),
        (lambda p: p.update(classes={"a": 1.0}), "classes must map each of the card's classes"),
        (lambda p: p.update(labels={"benign": 1.0}), "labels must map each of the card's classes"),
        (lambda p: p["labels"].update(benign=0.9), "labels must be numbers from 0 to 1 summing"),
        (lambda p: p["score"].update(kind="top_probability"), "score.kind must be 'positive"),
        (lambda p: p["score"].update({"class": None}), "score.class must be one of"),
        (lambda p: p.update(boundary_margin=2), "boundary_margin must be a number from 0 to 1"),
        (lambda p: p.update(rows=0), "rows must be a positive integer"),
    ],
)
def test_a_malformed_profile_is_refused_in_one_line_naming_the_key(
    artifact: Path, tmp_path: Path, change: Any, named: str
) -> None:
    directory = copy_of(artifact, tmp_path)
    data = json.loads((directory / "profile.json").read_text())
    change(data)
    (directory / "profile.json").write_text(json.dumps(data))
    with pytest.raises(modelcard.ContractError, match=named) as raised:
        modelcard.read_profile(directory, modelcard.read_card(directory))
    assert "\n" not in str(raised.value) and "profile.json" in str(raised.value)
