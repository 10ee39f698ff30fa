"""The served model: verified loading, provenance and prediction.

``Model.load()`` reads ``metadata.json``, checks the sha256 of ``model.pkl`` against it (and against
the optional pin) *before* unpickling anything, compiles the pipeline (see ``compiled``) and sets
``ready``. Every failure is a ``ModelError`` whose message names what is wrong.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from serving.compiled import AffineLogistic, Matrix, ProbaFn, compile_pipeline

METADATA_FILE = "metadata.json"
SCHEMA_VERSION = 1
NUMERIC_DTYPES = ("float64", "float32", "int64", "int32")


class ModelError(Exception):
    """The model cannot be served: missing, tampered, unreadable or inconsistent."""


@dataclass(frozen=True)
class Provenance:
    """Where the served model comes from: the values the image labels and manifests carry.

    ``image_digest`` is the manifest digest of the image the pod runs (``sha256:<hex>``). An image
    cannot carry its own digest, so only a deployment that pins the image by digest sets it
    (``MODELOPS_IMAGE_DIGEST``); anywhere else it is empty, like every value nobody set.
    """

    name: str
    version: str
    stage: str
    git_commit: str
    image_digest: str
    data_sha256: str
    model_sha256: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)

    def header(self) -> str:
        """The ``X-Model-Provenance`` header value: ``key=value`` pairs joined by ``; ``."""
        return "; ".join(f"{key}={value}" for key, value in self.as_dict().items())


@dataclass(frozen=True)
class Feature:
    name: str
    dtype: str


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_metadata(model_dir: Path) -> dict[str, Any]:
    path = model_dir / METADATA_FILE
    if not path.is_file():
        raise ModelError(f"model metadata not found: {path} (set MODELOPS_MODEL_DIR)")
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"model metadata unreadable: {path}: {exc}") from exc
    if not isinstance(metadata, dict):
        raise ModelError(f"model metadata is not a JSON object: {path}")
    if metadata.get("schema_version") != SCHEMA_VERSION:
        raise ModelError(
            f"model metadata schema_version is {metadata.get('schema_version')!r}, "
            f"this server reads {SCHEMA_VERSION}"
        )
    for key in ("model_file", "model_sha256", "features", "classes"):
        if key not in metadata:
            raise ModelError(f"model metadata lacks the key {key!r}: {path}")
    return metadata


def _features(metadata: dict[str, Any]) -> tuple[Feature, ...]:
    raw = metadata["features"]
    if not isinstance(raw, list) or not raw:
        raise ModelError("model metadata 'features' must be a non-empty list")
    features = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ModelError(f"model metadata feature entry is malformed: {item!r}")
        dtype = item.get("dtype", "float64")
        if dtype not in NUMERIC_DTYPES:
            raise ModelError(
                f"feature {item['name']!r} has dtype {dtype!r}; "
                f"allowed: {', '.join(NUMERIC_DTYPES)}"
            )
        features.append(Feature(item["name"], dtype))
    if len({f.name for f in features}) != len(features):
        raise ModelError("model metadata 'features' has duplicate names")
    return tuple(features)


class Model:
    """A scikit-learn pipeline loaded from a verified model directory."""

    def __init__(
        self,
        model_dir: Path,
        *,
        name: str = "",
        version: str = "",
        stage: str = "",
        git_commit: str = "",
        image_digest: str = "",
        sha256_pin: str = "",
    ) -> None:
        self.model_dir = model_dir
        self._name = name
        self._version = version
        self._stage = stage
        self._git_commit = git_commit
        self._image_digest = image_digest
        self._pin = sha256_pin.strip().lower()
        self.ready = False
        self.features: tuple[Feature, ...] = ()
        self.feature_names: tuple[str, ...] = ()
        self.feature_set: frozenset[str] = frozenset()
        self.classes: tuple[str, ...] = ()
        self.metadata: dict[str, Any] = {}
        self.inference_path = ""
        self.provenance = Provenance(name, version, stage, git_commit, image_digest, "", "")
        self.provenance_dict: dict[str, str] = {}
        self.provenance_header = ""
        self._proba: ProbaFn | None = None
        self._one: AffineLogistic | None = None

    @property
    def name(self) -> str:
        return self.provenance.name

    def load(self) -> None:
        """Verify and load the model; raises ``ModelError`` naming the problem."""
        metadata = _read_metadata(self.model_dir)
        model_path = self.model_dir / str(metadata["model_file"])
        if model_path.parent != self.model_dir or not model_path.is_file():
            raise ModelError(f"model file not found: {model_path}")
        recorded = str(metadata["model_sha256"]).lower()
        actual = sha256_file(model_path)
        if not hmac.compare_digest(actual, recorded):
            raise ModelError(
                f"model checksum mismatch: sha256 of {model_path} is {actual}, "
                f"metadata.json records {recorded}; refusing to load it"
            )
        if self._pin and not hmac.compare_digest(actual, self._pin):
            raise ModelError(
                f"model checksum mismatch: sha256 of {model_path} is {actual}, "
                f"MODELOPS_MODEL_SHA256 pins {self._pin}; refusing to load it"
            )
        features = _features(metadata)
        classes = metadata["classes"]
        if not isinstance(classes, list) or len(classes) < 2:
            raise ModelError("model metadata 'classes' must list at least two labels")
        estimator = self._unpickle(model_path)
        proba, path = compile_pipeline(estimator, len(features))
        self._check_shape(proba, len(features), len(classes))

        data = metadata.get("data") if isinstance(metadata.get("data"), dict) else {}
        self.metadata = metadata
        self.features = features
        self.feature_names = tuple(f.name for f in features)
        self.feature_set = frozenset(self.feature_names)
        self.classes = tuple(str(c) for c in classes)
        self.inference_path = path
        self.provenance = Provenance(
            name=self._name or str(metadata.get("name", "")),
            version=self._version,
            stage=self._stage,
            git_commit=self._git_commit,
            image_digest=self._image_digest,
            data_sha256=str((data or {}).get("sha256", "")),
            model_sha256=actual,
        )
        self.provenance_dict = self.provenance.as_dict()
        self.provenance_header = self.provenance.header()
        self._proba = proba
        self._one = proba if isinstance(proba, AffineLogistic) else None
        self.ready = True

    @staticmethod
    def _unpickle(model_path: Path) -> Any:
        import joblib  # type: ignore[import-untyped]

        try:
            return joblib.load(model_path)
        except Exception as exc:  # a verified file that still fails to load is a broken build
            raise ModelError(f"model file {model_path} failed to load: {exc}") from exc

    @staticmethod
    def _check_shape(proba: ProbaFn, n_features: int, n_classes: int) -> None:
        try:
            out = proba(np.zeros((1, n_features)))
        except Exception as exc:
            raise ModelError(f"model rejects {n_features} features: {exc}") from exc
        if out.shape != (1, n_classes):
            raise ModelError(
                f"model answers {out.shape[1]} class probabilities, metadata lists {n_classes}"
            )

    def predict_proba(self, x: Matrix) -> Matrix:
        """Class probabilities, columns in ``classes`` order, for validated rows ``x``."""
        if self._proba is None:
            raise ModelError("model is not loaded")
        return self._proba(x)

    def predict_one(self, values: tuple[float, ...]) -> tuple[float, ...] | None:
        """Class probabilities of one row of numbers without numpy, when the compiled path
        allows it and the row is finite; None means: use ``predict_proba``."""
        return None if self._one is None else self._one.one(values)

    def labels(self, proba: Matrix) -> list[str]:
        """The most probable class of each row."""
        names = self.classes
        return [names[i] for i in np.argmax(proba, axis=1).tolist()]
