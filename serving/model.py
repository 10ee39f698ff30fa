"""The served model: verified loading, provenance and prediction.

``Model.load()`` reads the artifact through the contract (modelcard: metadata.json checked, the
sha256 of the model file checked against it and against the optional pin, *before* anything is
deserialised), opens the model (an ONNX Runtime session, or a joblib unpickle for a
``format: scikit-learn`` artifact, which only training with ``export.allow_scikit_learn`` writes),
repeats the training-time proof on the verification sample, reads the reference profile (the drift
signals' bins, serving/monitoring.py), and only then sets ``ready``. A regression's artifact
(the card's ``task: regression``) loads the same way: its graph answers one column, the
predicted value, which ``predict_proba`` returns as a one-column matrix (``regression`` true,
``classes`` empty) and the protocols answer as numbers. Every
failure is a ``ModelError`` whose message names what is wrong. Nothing falls back: the format the
card names is the format that runs, and ``inference_path`` reports it.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import modelcard
from modelcard.runtime import (
    INPUT,
    OUTPUT,
    PREDICTION,
    InputError,
    Matrix,
    check_signature,
    disagreement,
    encode_rows,
    onnx_session,
    plain,
    run,
    value_disagreement,
)
from serving.provenance import Provenance

ProbaFn = Callable[[Matrix], Matrix]
#: ``inference_path`` by the card's format: what /v2 model metadata and the model-info metric say.
INFERENCE_PATHS = {"onnx": "onnxruntime", "scikit-learn": "scikit-learn"}


class ModelError(Exception):
    """The model cannot be served: missing, tampered, unreadable or inconsistent."""


@dataclass(frozen=True)
class Feature:
    name: str
    dtype: str


class Model:
    """The model of a verified artifact directory (modelcard's contract), ready to predict."""

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
        #: The card's feature entries: each one's dtype, categories and missing-value rule.
        self.columns: tuple[dict[str, Any], ...] = ()
        #: Every feature a number that may not be missing: requests decode straight to float64
        #: (the fast paths); else every value goes through modelcard.runtime.encode_column.
        self.plain = True
        self.classes: tuple[str, ...] = ()
        #: The card's task is regression: one value a row, no classes.
        self.regression = False
        self.metadata: dict[str, Any] = {}
        #: The reference profile the drift signals count against (serving.monitoring).
        self.profile: modelcard.Profile | None = None
        self.inference_path = ""
        self.provenance = Provenance(name, version, stage, git_commit, image_digest, "", "")
        self.provenance_id = ""
        self._proba: ProbaFn | None = None
        self._one: Callable[[Sequence[float]], tuple[float, ...]] | None = None

    @property
    def name(self) -> str:
        return self.provenance.name

    def load(self) -> None:
        """Verify and load the model; raises ``ModelError`` naming the problem."""
        card_path = self.model_dir / modelcard.METADATA_FILE
        if not card_path.is_file():
            raise ModelError(f"model metadata not found: {card_path} (set MODELOPS_MODEL_DIR)")
        try:
            card = modelcard.load(self.model_dir, self._pin)
            sample = modelcard.read_verification(self.model_dir, card)
            profile = modelcard.read_profile(self.model_dir, card)
        except modelcard.ContractError as exc:
            raise ModelError(str(exc)) from None
        features = tuple(Feature(f["name"], f["dtype"]) for f in card["features"])
        classes = tuple(str(c) for c in card["classes"])
        regression = modelcard.task_of(card) == "regression"
        fmt = str(card["format"])
        model_path = self.model_dir / str(card["model_file"])
        columns = tuple(dict(f) for f in card["features"])
        if fmt != "onnx" and not plain(columns):
            raise ModelError(
                f"{card_path}: a model with categorical features or missing values is served as "
                f"ONNX only (format {fmt!r}): requests are decoded into the graph's coded rows"
            )
        proba = self._open(fmt, model_path, len(features), len(classes), regression)
        self._verify(proba, sample, classes, columns)

        data = card.get("data") if isinstance(card.get("data"), dict) else {}
        self.metadata = card
        self.profile = profile
        self.features = features
        self.feature_names = tuple(f.name for f in features)
        self.feature_set = frozenset(self.feature_names)
        self.columns = columns
        self.plain = plain(columns)
        self.classes = classes
        self.regression = regression
        self.inference_path = INFERENCE_PATHS[fmt]
        self.provenance = Provenance(
            name=self._name or str(card.get("name", "")),
            version=self._version,
            stage=self._stage,
            git_commit=self._git_commit,
            image_digest=self._image_digest,
            data_sha256=str((data or {}).get("sha256", "")),
            model_sha256=str(card["model_sha256"]),
        )
        self.provenance_id = self.provenance.as_id()
        self._proba = proba
        self._one = proba.one if isinstance(proba, OnnxRows) else None
        self.ready = True

    @staticmethod
    def _open(
        fmt: str, path: Path, n_features: int, n_classes: int, regression: bool = False
    ) -> ProbaFn:
        """The probability function of a checked model file, in the card's format (a
        regression's: its one column of values)."""
        output, n_classes = (PREDICTION, 1) if regression else (OUTPUT, n_classes)
        if fmt == "onnx":
            try:
                session = onnx_session(path.read_bytes())
            except Exception as exc:  # a verified file ONNX Runtime rejects is a broken build
                raise ModelError(f"model file {path} failed to load: {exc}") from exc
            problem = check_signature(session, n_features, n_classes, output)
            if problem:
                raise ModelError(f"model file {path}: {problem}")
            return OnnxRows(session, n_features, n_classes, output)
        try:
            import joblib  # type: ignore[import-untyped]

            estimator = joblib.load(path)
        except Exception as exc:  # no scikit-learn in this image, or a broken pickle
            raise ModelError(
                f"model file {path} (format scikit-learn) failed to load: {exc}"
            ) from exc
        return _sklearn_proba(estimator, regression)

    @staticmethod
    def _verify(
        proba: ProbaFn,
        sample: modelcard.Verification,
        classes: Sequence[str],
        columns: Sequence[dict[str, Any]],
    ) -> None:
        """Repeat training's proof on the verification sample (its rows as a user sends them,
        through the request decoder's encoding); refuse a model that fails it."""
        try:
            rows = encode_rows(columns, sample.rows)
        except InputError as exc:
            raise ModelError(
                f"model verification failed: row {exc.row} of the sample: {exc.column} "
                f"{exc.message}"
            ) from None
        try:
            actual = proba(rows)
        except Exception as exc:
            raise ModelError(f"model verification failed: the model raised {exc!r}") from exc
        expected = np.asarray(sample.probabilities, dtype=np.float64)
        problem = (
            disagreement(actual, expected, sample.labels, classes, sample.tolerance)
            if classes
            else value_disagreement(actual, expected, sample.tolerance)
        )
        if problem:
            raise ModelError(
                f"model verification failed on the sample training wrote: {problem}; "
                "refusing to become ready"
            )

    def predict_proba(self, x: Matrix) -> Matrix:
        """Class probabilities, columns in ``classes`` order, for validated rows ``x``."""
        if self._proba is None:
            raise ModelError("model is not loaded")
        return self._proba(x)

    def predict_one(self, values: Sequence[float]) -> tuple[float, ...] | None:
        """Class probabilities of one row of finite numbers; None when a value is not finite
        (the caller then reports the row through the careful path)."""
        if self._proba is None or not all(map(math.isfinite, values)):
            return None
        if self._one is not None:
            return self._one(values)
        result: tuple[float, ...] = tuple(
            self._proba(np.array([values], dtype=np.float64))[0].tolist()
        )
        return result

    def labels(self, proba: Matrix) -> list[str]:
        """The most probable class of each row."""
        names = self.classes
        return [names[i] for i in np.argmax(proba, axis=1).tolist()]


class OnnxRows:
    """An ONNX session's probability function (``ProbaFn``), plus ``one``: a single row through
    buffers bound to the session once (ONNX Runtime's I/O binding), the hot path of a one-row
    request.

    For one row, ``session.run`` costs more than the graph: it checks the feed, wraps the numpy
    input in a new tensor and allocates the output, every call. ``one`` copies the row into a
    float64 buffer bound as the input and reads the probabilities from a buffer bound as the
    output (measured on the benchmark's models: 13-21 µs a row in a loop with ``run``, 7-8 µs
    with the binding; in a uWSGI worker under load, 42 µs and 35 µs). The buffers are this
    object's, so calls are serialised by a lock (a uWSGI worker is one thread; the lock only
    matters elsewhere). Buffers allocated before uWSGI forks are copied into each worker with the
    rest of its memory.
    """

    def __init__(self, session: Any, n_features: int, n_classes: int, output: str = OUTPUT) -> None:
        self._session = session
        self._x = np.zeros((1, n_features), dtype=np.float64)
        self._y = np.zeros((1, n_classes), dtype=np.float64)
        self._binding = session.io_binding()
        self._binding.bind_input(INPUT, "cpu", 0, np.float64, self._x.shape, self._x.ctypes.data)
        self._binding.bind_output(output, "cpu", 0, np.float64, self._y.shape, self._y.ctypes.data)
        self._lock = threading.Lock()

    def __call__(self, rows: Matrix) -> Matrix:
        return run(self._session, rows)

    def one(self, values: Sequence[float]) -> tuple[float, ...]:
        """Class probabilities of one row (``len(values)`` must be the feature count)."""
        with self._lock:
            self._x[0] = values
            self._session.run_with_iobinding(self._binding)
            result: tuple[float, ...] = tuple(self._y[0].tolist())
        return result


def _sklearn_proba(estimator: Any, regression: bool = False) -> ProbaFn:
    """A scikit-learn model's own ``predict_proba`` (quiet about numpy rows for a model fitted
    on a DataFrame); a regressor's ``predict`` as one column."""
    import warnings

    def proba(x: Matrix) -> Matrix:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="X does not have valid feature names")
            if regression:
                values: Matrix = np.asarray(estimator.predict(x), dtype=np.float64)
                return values.reshape(-1, 1)
            result: Matrix = np.asarray(estimator.predict_proba(x), dtype=np.float64)
        return result

    return proba
