"""The model wrapper: verified loading through the artifact contract, the ONNX graph's
exactness for every estimator family, the verification at load, the scikit-learn format."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from serving_testkit import MODEL_NAME, SlowModel, TinyModel, build_model
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import modelcard
from serving.model import Model, ModelError
from serving.provenance import FIELDS, provenance_id

FAMILIES: dict[str, Callable[[], Any]] = {
    "logistic regression": lambda: None,  # build_model's default: StandardScaler + LR
    "random forest": lambda: RandomForestClassifier(n_estimators=20, random_state=0, n_jobs=1),
    "histogram gradient boosting": lambda: HistGradientBoostingClassifier(
        max_iter=20, random_state=0
    ),
}


def rewrite(directory: Path, name: str, change: Any) -> None:
    """Change a file of the artifact and re-record its sha256, so only the content is wrong."""
    path = directory / name
    path.write_text(change(path.read_text()))
    card = json.loads((directory / modelcard.METADATA_FILE).read_text())
    if name == modelcard.VERIFICATION_FILE:
        card["verification"]["sha256"] = modelcard.sha256_file(path)
    (directory / modelcard.METADATA_FILE).write_text(json.dumps(card))


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_family_is_served_by_onnx_runtime_as_the_pipeline_answers(
    tmp_path: Path, family: str
) -> None:
    built = build_model(tmp_path / "m", estimator=FAMILIES[family]())
    model = Model(built.directory)
    model.load()
    assert model.ready
    assert model.inference_path == "onnxruntime"
    assert built.metadata["format"] == "onnx"
    ours = model.predict_proba(built.x_test)
    theirs = built.pipeline.predict_proba(built.x_test)
    assert ours.shape == theirs.shape == (len(built.x_test), 2)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=modelcard.PROBABILITY_TOLERANCE)
    expected = [model.classes[i] for i in built.pipeline.predict(built.x_test)]
    assert model.labels(ours) == expected


def test_a_scikit_learn_artifact_is_served_by_scikit_learn_and_says_so(tmp_path: Path) -> None:
    built = build_model(tmp_path / "m", estimator=SlowModel())
    model = Model(built.directory)
    model.load()
    assert built.metadata["format"] == "scikit-learn"
    assert built.metadata["model_file"] == "model.pkl"
    assert model.inference_path == "scikit-learn"
    np.testing.assert_array_equal(
        model.predict_proba(built.x_test), built.pipeline.predict_proba(built.x_test)
    )


def test_provenance_comes_from_metadata_and_environment(tiny_model: TinyModel) -> None:
    digest = "sha256:" + "e" * 64
    model = Model(
        tiny_model.directory, version="v3.0.0", stage="prod", git_commit="abc", image_digest=digest
    )
    model.load()
    assert model.provenance.as_dict() == {
        "name": MODEL_NAME,
        "version": "v3.0.0",
        "stage": "prod",
        "git_commit": "abc",
        "image_digest": digest,
        "data_sha256": tiny_model.metadata["data"]["sha256"],
        "model_sha256": tiny_model.metadata["model_sha256"],
    }
    record = json.dumps(model.provenance.as_dict(), sort_keys=True, separators=(",", ":"))
    assert model.provenance_id == hashlib.sha256(record.encode()).hexdigest()


def fields_the_id_ignores(id_of: Callable[[Mapping[str, Any]], str]) -> list[str]:
    """The provenance fields whose change leaves ``id_of``'s id as it was."""
    base = {field: f"value of {field}" for field in FIELDS}
    return [f for f in FIELDS if id_of({**base, f: base[f] + " changed"}) == id_of(base)]


def test_the_provenance_id_changes_with_every_field_and_only_a_complete_provenance_has_one() -> (
    None
):
    """Two provenances that differ anywhere (another image digest, another data set) have two
    ids; a checker that left a field out would be seen here, as the one below is."""
    assert fields_the_id_ignores(provenance_id) == []

    def without_the_digest(values: Mapping[str, Any]) -> str:
        return provenance_id({**values, "image_digest": ""})

    assert fields_the_id_ignores(without_the_digest) == ["image_digest"]
    with pytest.raises(KeyError, match="data_sha256"):
        provenance_id({f: "" for f in FIELDS if f != "data_sha256"})


@pytest.mark.parametrize("family", ["onnx", "scikit-learn"])
def test_a_tampered_model_file_is_refused_before_it_is_deserialised(
    tmp_path: Path, family: str
) -> None:
    built = build_model(tmp_path / "m", estimator=SlowModel() if family == "scikit-learn" else None)
    # Not a model at all: loading it would fail differently, so the checksum must stop it first.
    (built.directory / built.metadata["model_file"]).write_bytes(b"tampered")
    model = Model(built.directory)
    with pytest.raises(ModelError, match=r"sha256 mismatch: the file has .* metadata.json records"):
        model.load()
    assert not model.ready


def test_sha256_pin_must_match(tiny_model: TinyModel) -> None:
    model = Model(tiny_model.directory, sha256_pin="0" * 64)
    with pytest.raises(ModelError, match=r"the pin \(MODELOPS_MODEL_SHA256\) is 0000"):
        model.load()
    pinned = Model(tiny_model.directory, sha256_pin=tiny_model.metadata["model_sha256"].upper())
    pinned.load()
    assert pinned.ready


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"schema_version": 1}, "schema_version is 1, this contract reads 2"),
        ({"features": []}, "features must not be empty"),
        ({"features": [{"name": "x", "dtype": "string"}]}, "allowed: float64"),
        ({"classes": ["only"]}, "at least two non-empty labels"),
        ({"model_file": "../model.onnx"}, "model_file must be 'model.onnx' for format 'onnx'"),
        ({"format": "pickle"}, "format must be one of onnx, scikit-learn, got 'pickle'"),
    ],
)
def test_bad_metadata_is_named(tmp_path: Path, change: dict[str, object], message: str) -> None:
    built = build_model(tmp_path / "m")
    path = built.directory / "metadata.json"
    path.write_text(json.dumps({**built.metadata, **change}))
    with pytest.raises(ModelError, match=message):
        Model(built.directory).load()


def test_a_card_whose_features_do_not_fit_the_graph_is_refused(tmp_path: Path) -> None:
    built = build_model(tmp_path / "m")
    metadata = dict(built.metadata, features=built.metadata["features"][:-1])
    (built.directory / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(ModelError, match=r"verification.json: each row needs 29 values"):
        Model(built.directory).load()


def test_a_model_that_fails_the_verification_sample_never_becomes_ready(tmp_path: Path) -> None:
    built = build_model(tmp_path / "m")

    def nudge(text: str) -> str:
        sample = json.loads(text)
        sample["probabilities"][5] = sample["probabilities"][5][::-1]  # another answer, still valid
        return json.dumps(sample)

    rewrite(built.directory, modelcard.VERIFICATION_FILE, nudge)
    model = Model(built.directory)
    with pytest.raises(ModelError, match=r"model verification failed .*refusing to become ready"):
        model.load()
    assert not model.ready


def test_another_valid_graph_in_place_of_the_trained_one_fails_verification(
    tmp_path: Path,
) -> None:
    trained = build_model(tmp_path / "trained")
    other = build_model(tmp_path / "other", estimator=FAMILIES["random forest"]())
    graph = (other.directory / "model.onnx").read_bytes()
    (trained.directory / "model.onnx").write_bytes(graph)
    card = dict(
        trained.metadata, model_sha256=modelcard.sha256_file(trained.directory / "model.onnx")
    )
    (trained.directory / "metadata.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="model verification failed"):
        Model(trained.directory).load()


def test_missing_model_dir_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"model metadata not found: .*MODELOPS_MODEL_DIR"):
        Model(tmp_path / "absent").load()


def test_single_row_path_matches_the_matrix_path_on_every_test_row(tiny_model: TinyModel) -> None:
    model = Model(tiny_model.directory)
    model.load()
    theirs = model.predict_proba(tiny_model.x_test)
    ours = [model.predict_one(tuple(row)) for row in tiny_model.x_test.tolist()]
    # One row and many take different matrix kernels: equal up to rounding, far inside 1e-6.
    np.testing.assert_allclose(np.array(ours), theirs, rtol=0, atol=1e-12)
    assert model.predict_one((float("inf"),) + (1.0,) * 29) is None
    assert model.predict_one((float("nan"),) + (1.0,) * 29) is None
    extreme = model.predict_one((1e300,) * 30)
    assert extreme is not None and all(0.0 <= p <= 1.0 for p in extreme)


def test_a_tree_model_scaled_first_is_served_as_the_pipeline_answers(tmp_path: Path) -> None:
    forest = Pipeline(
        [("scaler", StandardScaler()), ("forest", RandomForestClassifier(5, random_state=1))]
    )
    built = build_model(tmp_path / "m", estimator=forest)
    model = Model(built.directory)
    model.load()
    np.testing.assert_allclose(  # 1 - p for the first class: equal to the last bit or two
        model.predict_proba(built.x_test), built.pipeline.predict_proba(built.x_test), atol=1e-12
    )


def test_onnx_runtime_writes_no_telemetry_into_the_home_directory(
    tiny_model: TinyModel, tmp_path: Path
) -> None:
    """ONNX Runtime 1.32 persists a device id and an event database in the home directory unless
    told not to: loading a model must leave a fresh home directory empty."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    script = (
        "import pathlib, sys; from serving.model import Model; "
        "Model(pathlib.Path(sys.argv[1])).load()"
    )
    subprocess.run(
        [sys.executable, "-c", script, str(tiny_model.directory)],
        env={**env, "HOME": str(home)},
        check=True,
    )
    assert sorted(p.relative_to(home).as_posix() for p in home.rglob("*")) == []
