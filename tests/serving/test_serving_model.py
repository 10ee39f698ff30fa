"""The model wrapper: verified loading, the compiled path's exactness, the sklearn fallback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from serving_testkit import TinyModel, build_model
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from serving.model import Model, ModelError


def test_compiled_path_matches_sklearn_on_the_whole_test_split(tiny_model: TinyModel) -> None:
    model = Model(tiny_model.directory)
    model.load()
    assert model.ready
    assert model.inference_path == "numpy-affine"
    ours = model.predict_proba(tiny_model.x_test)
    theirs = tiny_model.pipeline.predict_proba(tiny_model.x_test)
    assert ours.shape == theirs.shape == (len(tiny_model.x_test), 2)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)
    expected = [model.classes[i] for i in tiny_model.pipeline.predict(tiny_model.x_test)]
    assert model.labels(ours) == expected


def test_uncompilable_pipeline_falls_back_to_sklearn(tmp_path: Path) -> None:
    forest = Pipeline(
        [("scaler", StandardScaler()), ("forest", RandomForestClassifier(n_estimators=5))]
    )
    built = build_model(tmp_path / "m", estimator=forest)
    model = Model(built.directory)
    model.load()
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
        "name": "diagnosis-classifier",
        "version": "v3.0.0",
        "stage": "prod",
        "git_commit": "abc",
        "image_digest": digest,
        "data_sha256": tiny_model.metadata["data"]["sha256"],
        "model_sha256": tiny_model.metadata["model_sha256"],
    }
    assert f"version=v3.0.0; stage=prod; git_commit=abc; image_digest={digest}; data_sha256=" in (
        model.provenance.header()
    )


def test_tampered_model_is_refused_before_unpickling(tmp_path: Path) -> None:
    built = build_model(tmp_path / "m")
    # Not a pickle at all: loading it would fail differently, so the checksum must stop it first.
    (built.directory / "model.pkl").write_bytes(b"tampered")
    model = Model(built.directory)
    with pytest.raises(ModelError, match=r"model checksum mismatch: sha256 of .* metadata.json"):
        model.load()
    assert not model.ready


def test_sha256_pin_must_match(tiny_model: TinyModel) -> None:
    model = Model(tiny_model.directory, sha256_pin="0" * 64)
    with pytest.raises(ModelError, match="MODELOPS_MODEL_SHA256 pins 0000"):
        model.load()
    pinned = Model(tiny_model.directory, sha256_pin=tiny_model.metadata["model_sha256"].upper())
    pinned.load()
    assert pinned.ready


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"schema_version": 2}, "schema_version is 2"),
        ({"features": []}, "'features' must be a non-empty list"),
        ({"features": [{"name": "x", "dtype": "string"}]}, "allowed: float64"),
        ({"classes": ["only"]}, "at least two labels"),
        ({"model_file": "../model.pkl"}, "model file not found"),
    ],
)
def test_bad_metadata_is_named(tmp_path: Path, change: dict[str, object], message: str) -> None:
    built = build_model(tmp_path / "m")
    path = built.directory / "metadata.json"
    path.write_text(json.dumps({**built.metadata, **change}))
    with pytest.raises(ModelError, match=message):
        Model(built.directory).load()


def test_metadata_feature_count_must_fit_the_model(tmp_path: Path) -> None:
    built = build_model(tmp_path / "m")
    metadata = dict(built.metadata, features=built.metadata["features"][:-1])
    (built.directory / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(ModelError, match="model rejects 29 features"):
        Model(built.directory).load()


def test_missing_model_dir_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"model metadata not found: .*MODELOPS_MODEL_DIR"):
        Model(tmp_path / "absent").load()


def test_single_row_path_matches_sklearn_on_every_test_row(tiny_model: TinyModel) -> None:
    model = Model(tiny_model.directory)
    model.load()
    theirs = tiny_model.pipeline.predict_proba(tiny_model.x_test)
    ours = [model.predict_one(tuple(row)) for row in tiny_model.x_test.tolist()]
    np.testing.assert_allclose(np.array(ours), theirs, rtol=0, atol=1e-12)
    assert model.predict_one((float("inf"),) + (1.0,) * 29) is None
    assert model.predict_one((float("nan"),) + (1.0,) * 29) is None
    extreme = model.predict_one((1e300,) * 30)
    assert extreme is not None and all(0.0 <= p <= 1.0 for p in extreme)


def test_single_row_path_is_off_for_sklearn_fallback(tmp_path: Path) -> None:
    forest = Pipeline(
        [("scaler", StandardScaler()), ("forest", RandomForestClassifier(n_estimators=3))]
    )
    model = Model(build_model(tmp_path / "m", estimator=forest).directory)
    model.load()
    assert model.predict_one((1.0,) * 30) is None
