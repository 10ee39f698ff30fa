"""The export: the ONNX graph of each registered estimator family (its own pipeline, from its
params.yaml section), the proof that it answers as the pipeline does, and what happens to a model
it cannot convert."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler
from training_helpers import ROOT

import modelcard
from training import families
from training.export import served_files
from training.params import load_hyper
from training.portable import ConversionError, generated_rows, prove, to_onnx

PARAMS = ROOT / "training/params.yaml"
#: Fewer trees than the committed sections, to keep the proof's tests quick (same graphs, smaller).
QUICK = {"random_forest": {"n_estimators": 30}, "hist_gradient_boosting": {"max_iter": 30}}


def fitted(family: str, dataset: Any) -> tuple[Any, np.ndarray, list[str]]:
    bunch = dataset()
    labels = np.array(bunch.target_names)[bunch.target]
    hyper = {**load_hyper(PARAMS, family), **QUICK.get(family, {})}
    model = families.get(family).pipeline(hyper).fit(bunch.data, labels)
    return (
        model,
        np.ascontiguousarray(bunch.data, dtype=np.float64),
        [str(c) for c in model.classes_],
    )


@pytest.mark.parametrize("dataset", [load_breast_cancer, load_wine], ids=["binary", "3 classes"])
@pytest.mark.parametrize("family", families.for_task("classification"))
def test_every_family_exports_a_graph_proven_on_10000_generated_rows(
    tmp_path: Path, family: str, dataset: Any
) -> None:
    model, rows, classes = fitted(family, dataset)
    names = [f"f{i}" for i in range(rows.shape[1])]
    served = served_files(
        model, classes, rows, rows, tmp_path, features=names, allow_scikit_learn=False
    )
    assert served["format"] == "onnx"
    assert served["proof"]["generated_rows"] >= 10_000
    assert served["proof"]["largest_difference"] <= 1e-12
    card = {
        "schema_version": modelcard.SCHEMA_VERSION,
        "name": "m",
        "features": [{"name": name, "dtype": "float64"} for name in names],
        "classes": classes,
        **served,
    }
    modelcard.write_card(tmp_path, card)
    assert modelcard.load(tmp_path)["model_sha256"] == served["model_sha256"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "metadata.json",
        "model.onnx",
        "profile.json",
        "verification.json",
    ]


def test_the_same_model_exports_the_same_bytes(tmp_path: Path) -> None:
    model, rows, _ = fitted("random_forest", load_wine)
    assert to_onnx(model, rows.shape[1]) == to_onnx(model, rows.shape[1])


def test_a_forest_graph_with_thresholds_rounded_to_float32_fails_the_proof() -> None:
    """What skl2onnx does: rows lying on a split point (any training value) go the other way."""
    model, rows, classes = fitted("random_forest", load_wine)
    graph = onnx.load_from_string(to_onnx(model, rows.shape[1]))
    ensemble = next(node for node in graph.graph.node if node.op_type == "TreeEnsemble")
    splits = next(a for a in ensemble.attribute if a.name == "nodes_splits")
    exact = numpy_helper.to_array(splits.t)
    splits.t.CopyFrom(numpy_helper.from_array(exact.astype(np.float32).astype(np.float64)))
    for node in graph.graph.node:  # and compare float64 rows with them, no float32 cast
        if node.op_type == "Cast":
            node.attribute[0].i = onnx.TensorProto.DOUBLE
    with pytest.raises(
        ConversionError,
        match=r"on the test split: .* [1-9][0-9]* rows have a probability off",
    ):
        prove(model, graph.SerializeToString(), classes, rows, generated_rows(rows), 1e-6)


@pytest.mark.parametrize(
    ("model", "named"),
    [
        (KNeighborsClassifier(n_neighbors=3), "cannot convert KNeighborsClassifier"),
        (
            Pipeline([("scale", MinMaxScaler()), ("classify", LogisticRegression())]),
            "cannot convert pipeline step 'scale' (MinMaxScaler)",
        ),
    ],
    ids=["estimator", "pipeline step"],
)
def test_a_model_the_export_cannot_convert_fails_in_one_line_naming_it(
    tmp_path: Path, model: Any, named: str
) -> None:
    bunch = load_breast_cancer()
    model.fit(bunch.data, bunch.target)
    with pytest.raises(ConversionError) as raised:
        served_files(
            model,
            ["a", "b"],
            bunch.data,
            bunch.data,
            tmp_path,
            features=list(bunch.feature_names),
            allow_scikit_learn=False,
        )
    message = str(raised.value)
    assert named in message and "\n" not in message
    assert "export.allow_scikit_learn: true" in message
    assert not (tmp_path / "model.onnx").exists()


def test_allowed_scikit_learn_serving_is_stated_in_the_card(tmp_path: Path) -> None:
    bunch = load_breast_cancer()
    model = KNeighborsClassifier(n_neighbors=3).fit(bunch.data, bunch.target)
    served = served_files(
        model,
        ["a", "b"],
        bunch.data,
        bunch.data,
        tmp_path,
        features=list(bunch.feature_names),
        allow_scikit_learn=True,
    )
    assert (served["format"], served["model_file"]) == ("scikit-learn", "model.pkl")
    assert served["proof"]["generated_rows"] == 0
    sample = json.loads((tmp_path / "verification.json").read_text())
    assert len(sample["rows"]) == served["verification"]["rows"] > 0
