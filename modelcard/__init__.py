"""The model artifact contract: ``metadata.json`` (the model card) and the files it names.

One module, three readers, one set of rules (docs/contracts.md, "Model artifact"):

- training writes the artifact (training/artifact.py builds the card, :func:`write_card` writes it);
- the server loads it (serving/model.py: :func:`load` before anything is deserialised);
- the image's fetch stage checks and prunes it (images/model-stage/fetch_model.py, which runs
  with the standard library only: so does this module).

An artifact is a directory. ``metadata.json`` names the file the server runs (``model_file``,
in one of :data:`FORMATS`) with its sha256, and the verification sample (``verification``): rows
and the probabilities scikit-learn gave for them when the model was trained, which the server
recomputes at load before it becomes ready; and the reference profile (``profile``): the bins of
the training data and scores the server counts live rows into (training/profile.py writes it,
:func:`read_profile` reads it, docs/monitoring.md). The scikit-learn pickle the pipeline trained
(``training_model``) lives beside them in the DVC output, for evaluation and reports; the image
ships only :func:`served_files`.

A regression's artifact (``task: regression`` in the card, :func:`task_of`; a card without the
key is a classification's) has no classes: its verification sample holds ``predictions`` (one
number a row, read as a one-column matrix) and its profile's score is the prediction
(:data:`PREDICTION_SCORE`), with no class shares, labels or boundary.

Every violation is a :class:`ContractError` whose message is one line naming the file and key.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 2
METADATA_FILE = "metadata.json"
#: The serving formats and the one file name each uses. ``onnx`` runs on ONNX Runtime without
#: unpickling; ``scikit-learn`` unpickles with joblib and is written only when params.yaml allows
#: it explicitly (``export.allow_scikit_learn``) for a model that cannot be converted.
FORMATS = {"onnx": "model.onnx", "scikit-learn": "model.pkl"}
#: The scikit-learn pipeline the train stage writes (pickle via joblib).
TRAINING_MODEL_FILE = "model.pkl"
#: The verification sample: rows, expected probabilities and labels (JSON, floats round-tripping).
VERIFICATION_FILE = "verification.json"
#: The reference profile: per-feature bins of the train split, class balance, score bins (JSON).
PROFILE_FILE = "profile.json"
#: Score kinds of a profile: two classes, the positive class's probability; more, the top one.
SCORE_KINDS = ("positive_class_probability", "top_probability")
#: A regression profile's score: the predicted value.
PREDICTION_SCORE = "prediction"
#: What a card's ``task`` may be; a card without the key is a classification (every card
#: written before regressions were), so a classification's card keeps its bytes.
TASKS = ("classification", "regression")
#: How far a profile's ratios may sum from 1 (each is rounded to 6 significant digits).
RATIO_SUM_TOLERANCE = 1e-3
#: How far a served probability may be from scikit-learn's; labels must be identical.
PROBABILITY_TOLERANCE = 1e-6
#: Feature dtypes a card may declare: numbers, which the server parses as float64, and
#: ``category``, text categories (the feature's ``categories`` list them; its ``unseen`` says
#: whether another is refused, ``error``, or encoded as none of them, ``ignore``). A feature of
#: either kind with a ``missing`` entry (``{"strategy": ..., "fill": ...}``, the imputation the
#: graph applies) takes a missing value (docs/contracts.md).
FEATURE_DTYPES = ("float64", "float32", "int64", "int32", "category")
#: What a categorical feature does with a category its ``categories`` do not list.
UNSEEN_RULES = ("error", "ignore")
#: How a feature's missing value is filled (scikit-learn's SimpleImputer strategies).
IMPUTATIONS = ("mean", "median", "most_frequent", "constant")
#: Keys every card has, with the JSON type each must be.
REQUIRED = {
    "schema_version": int,
    "name": str,
    "format": str,
    "model_file": str,
    "model_sha256": str,
    "features": list,
    "classes": list,
    "verification": dict,
    "profile": dict,
}


def task_of(card: dict[str, Any]) -> str:
    """The card's task: its ``task`` key, classification when absent."""
    return str(card.get("task", TASKS[0]))


class ContractError(Exception):
    """The directory is not an artifact this contract describes (one line, naming what)."""


@dataclass(frozen=True)
class Verification:
    """The sample the server recomputes at load: ``rows`` in feature order, scikit-learn's
    ``probabilities`` for them (columns in ``classes`` order) and its ``labels``."""

    rows: list[list[float]]
    probabilities: list[list[float]]
    labels: list[str]
    tolerance: float


@dataclass(frozen=True)
class Distribution:
    """Bins of one reference distribution: a value's bin is ``bisect_right(edges, value)``, so
    there are ``len(edges) + 1`` bins and as many ``ratios`` (the reference share of each)."""

    edges: tuple[float, ...]
    ratios: tuple[float, ...]


@dataclass(frozen=True)
class FeatureProfile:
    """One feature's reference: its bins and the training range (``low`` .. ``high``)."""

    name: str
    bins: Distribution
    low: float
    high: float


@dataclass(frozen=True)
class Profile:
    """profile.json, checked: features in the card's order, ``classes`` (each class's share of
    the model's predictions on the training rows) in the card's order, the score's kind, class
    (None for the top probability) and bins, the near-boundary margin, the number of training
    rows it describes, and ``labels`` (each class's share of the training labels, in the card's
    order; empty for a profile written without them)."""

    bins: int
    features: tuple[FeatureProfile, ...]
    classes: tuple[tuple[str, float], ...]
    score_kind: str
    score_class: str | None
    score: Distribution
    boundary_margin: float
    rows: int
    labels: tuple[tuple[str, float], ...] = ()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_card(model_dir: Path, card: dict[str, Any]) -> Path:
    """Write metadata.json after checking ``card`` against the contract (sorted keys, trailing
    newline: the same card gives the same bytes, so dvc.lock reproduces)."""
    check_card(card, model_dir / METADATA_FILE)
    path = model_dir / METADATA_FILE
    path.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def read_card(model_dir: Path) -> dict[str, Any]:
    """metadata.json of ``model_dir``, checked against the contract (not yet the files)."""
    path = model_dir / METADATA_FILE
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ContractError(f"no {METADATA_FILE} in {model_dir}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ContractError(f"{path}: unreadable ({exc})") from None
    except json.JSONDecodeError as exc:
        raise ContractError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    check_card(card, path)
    return card  # type: ignore[no-any-return]


def check_card(card: Any, path: Path) -> None:
    """Raise ContractError unless ``card`` has the keys, types and values the contract requires."""
    if not isinstance(card, dict):
        raise ContractError(f"{path}: must be a JSON object")
    version = card.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ContractError(
            f"{path}: schema_version is {version!r}, this contract reads {SCHEMA_VERSION}"
        )
    for key, kind in REQUIRED.items():
        if key not in card:
            raise ContractError(f"{path}: the key {key!r} is missing")
        if not isinstance(card[key], kind) or isinstance(card[key], bool):
            raise ContractError(f"{path}: {key} must be a {kind.__name__}, got {card[key]!r}")
    fmt = card["format"]
    if fmt not in FORMATS:
        raise ContractError(f"{path}: format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if card["model_file"] != FORMATS[fmt]:
        raise ContractError(
            f"{path}: model_file must be {FORMATS[fmt]!r} for format {fmt!r}, "
            f"got {card['model_file']!r}"
        )
    _check_sha256(card["model_sha256"], path, "model_sha256")
    _check_features(card["features"], path)
    task = card.get("task", TASKS[0])
    if task not in TASKS:
        raise ContractError(f"{path}: task must be one of {', '.join(TASKS)}, got {task!r}")
    classes = card["classes"]
    if task == "regression":
        if classes:
            raise ContractError(f"{path}: classes must be empty for task regression")
    elif len(classes) < 2 or not all(isinstance(c, str) and c for c in classes):
        raise ContractError(f"{path}: classes must list at least two non-empty labels")
    if len(set(classes)) != len(classes):
        raise ContractError(f"{path}: classes has duplicate labels")
    verification = card["verification"]
    if verification.get("file") != VERIFICATION_FILE:
        raise ContractError(f"{path}: verification.file must be {VERIFICATION_FILE!r}")
    _check_sha256(verification.get("sha256"), path, "verification.sha256")
    profile = card["profile"]
    if profile.get("file") != PROFILE_FILE:
        raise ContractError(f"{path}: profile.file must be {PROFILE_FILE!r}")
    _check_sha256(profile.get("sha256"), path, "profile.sha256")


def _check_sha256(value: Any, path: Path, key: str) -> None:
    if not (
        isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)
    ):
        raise ContractError(f"{path}: {key} must be 64 lower-case hex digits, got {value!r}")


def _check_features(features: list[Any], path: Path) -> None:
    if not features:
        raise ContractError(f"{path}: features must not be empty")
    names = []
    for item in features:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            raise ContractError(f"{path}: a features entry is malformed: {item!r}")
        dtype = item.get("dtype")
        if dtype not in FEATURE_DTYPES:
            raise ContractError(
                f"{path}: feature {item['name']!r} has dtype {dtype!r}; "
                f"allowed: {', '.join(FEATURE_DTYPES)}"
            )
        _check_column(item, path)
        names.append(item["name"])
    if len(set(names)) != len(names):
        raise ContractError(f"{path}: features has duplicate names")


def _check_column(item: dict[str, Any], path: Path) -> None:
    """A feature's categories (a category only) and missing-value entry (either kind)."""
    name = item["name"]
    if item["dtype"] == "category":
        categories = item.get("categories")
        if (
            not isinstance(categories, list)
            or not categories
            or not all(isinstance(c, str) and c for c in categories)
            or len(set(categories)) != len(categories)
        ):
            raise ContractError(
                f"{path}: feature {name!r} (category) needs categories: distinct non-empty strings"
            )
        if item.get("unseen") not in UNSEEN_RULES:
            raise ContractError(
                f"{path}: feature {name!r} (category) needs unseen: {' or '.join(UNSEEN_RULES)}"
            )
    elif "categories" in item or "unseen" in item:
        raise ContractError(f"{path}: feature {name!r} is not a category but lists categories")
    missing = item.get("missing")
    if missing is not None and (
        not isinstance(missing, dict) or missing.get("strategy") not in IMPUTATIONS
    ):
        raise ContractError(
            f"{path}: feature {name!r}: missing must be {{strategy: "
            f"{'|'.join(IMPUTATIONS)}, fill: value}}, got {missing!r}"
        )


def served_files(card: dict[str, Any]) -> tuple[str, ...]:
    """The files the server needs: the card, the model file, the verification sample and the
    reference profile."""
    return (METADATA_FILE, str(card["model_file"]), VERIFICATION_FILE, PROFILE_FILE)


def verify_files(model_dir: Path, card: dict[str, Any], pin: str = "") -> str:
    """Check the sha256 of the model file (against the card, and ``pin`` when given), of the
    verification sample and of the profile; return the model file's sha256. Nothing is
    deserialised before this."""
    model_path = model_dir / str(card["model_file"])
    if not model_path.is_file():
        raise ContractError(f"{model_path}: not found (metadata.json names it)")
    actual = sha256_file(model_path)
    if actual != card["model_sha256"]:
        raise ContractError(
            f"{model_path}: sha256 mismatch: the file has {actual}, metadata.json records "
            f"{card['model_sha256']}; refusing to load it"
        )
    if pin and actual != pin.strip().lower():
        raise ContractError(
            f"{model_path}: sha256 mismatch: the file has {actual}, the pin "
            f"(MODELOPS_MODEL_SHA256) is {pin.strip().lower()}; refusing to load it"
        )
    sample = model_dir / VERIFICATION_FILE
    if not sample.is_file():
        raise ContractError(f"{sample}: not found (metadata.json names it)")
    if sha256_file(sample) != card["verification"]["sha256"]:
        raise ContractError(f"{sample}: sha256 differs from metadata.json verification.sha256")
    profile = model_dir / PROFILE_FILE
    if not profile.is_file():
        raise ContractError(f"{profile}: not found (metadata.json names it)")
    if sha256_file(profile) != card["profile"]["sha256"]:
        raise ContractError(f"{profile}: sha256 differs from metadata.json profile.sha256")
    return actual


def read_verification(model_dir: Path, card: dict[str, Any]) -> Verification:
    """The verification sample, its shape checked against the card."""
    path = model_dir / VERIFICATION_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ContractError(f"{path}: unreadable ({exc})") from None
    n_features, classes = len(card["features"]), card["classes"]
    if task_of(card) == "regression":
        return _regression_verification(path, data, card["features"])
    try:
        rows, probabilities, labels = data["rows"], data["probabilities"], data["labels"]
        tolerance = float(data["tolerance"])
    except (KeyError, TypeError, ValueError):
        raise ContractError(f"{path}: needs rows, probabilities, labels and tolerance") from None
    if not rows or not (len(rows) == len(probabilities) == len(labels)):
        raise ContractError(f"{path}: rows, probabilities and labels must be equally long lists")
    for row, proba in zip(rows, probabilities, strict=True):
        if len(row) != n_features or len(proba) != len(classes):
            raise ContractError(
                f"{path}: each row needs {n_features} values and {len(classes)} probabilities"
            )
        if not all(isinstance(v, float | int) and math.isfinite(v) for v in proba) or not all(
            _sample_value(v, feature) for v, feature in zip(row, card["features"], strict=True)
        ):
            raise ContractError(
                f"{path}: rows and probabilities must be finite numbers (a category's value a "
                "string, a missing value null where the feature allows it)"
            )
    if not set(labels) <= set(classes):
        raise ContractError(f"{path}: a label is not one of the card's classes")
    if not 0 < tolerance <= PROBABILITY_TOLERANCE:
        raise ContractError(f"{path}: tolerance must be in (0, {PROBABILITY_TOLERANCE}]")
    return Verification(rows, probabilities, labels, tolerance)


def _regression_verification(path: Path, data: Any, features: list[dict[str, Any]]) -> Verification:
    """A regression's sample: ``rows``, scikit-learn's ``predictions`` (one number a row) and
    ``tolerance``; held as one-column ``probabilities`` and no labels."""
    n_features = len(features)
    try:
        rows, predictions = data["rows"], data["predictions"]
        tolerance = float(data["tolerance"])
    except (KeyError, TypeError, ValueError):
        raise ContractError(f"{path}: needs rows, predictions and tolerance") from None
    if not rows or not isinstance(predictions, list) or len(rows) != len(predictions):
        raise ContractError(f"{path}: rows and predictions must be equally long lists")
    for row in rows:
        if not isinstance(row, list) or len(row) != n_features:
            raise ContractError(f"{path}: each row needs {n_features} values")
    if not all(_finite(v) for v in predictions) or not all(
        _sample_value(v, feature) for row in rows for v, feature in zip(row, features, strict=True)
    ):
        raise ContractError(
            f"{path}: rows and predictions must be finite numbers (a category's value a "
            "string, a missing value null where the feature allows it)"
        )
    if not 0 < tolerance <= PROBABILITY_TOLERANCE:
        raise ContractError(f"{path}: tolerance must be in (0, {PROBABILITY_TOLERANCE}]")
    return Verification(rows, [[float(p)] for p in predictions], [], tolerance)


def _sample_value(value: Any, feature: dict[str, Any]) -> bool:
    """Whether a verification row's value has the type the feature takes (the server's decoder
    checks the rest when it repeats the proof)."""
    if value is None:
        return bool(feature.get("missing"))
    if feature["dtype"] == "category":
        return isinstance(value, str)
    return isinstance(value, float | int) and not isinstance(value, bool) and math.isfinite(value)


def read_profile(model_dir: Path, card: dict[str, Any]) -> Profile:
    """The reference profile, checked against the card and the profile's own rules (one line
    naming the key of the first problem)."""
    path = model_dir / PROFILE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ContractError(f"{path}: unreadable ({exc})") from None
    if not isinstance(data, dict):
        raise ContractError(f"{path}: must be a JSON object")
    regression = task_of(card) == "regression"
    needed = ("bins", "features", "score", "rows")
    for key in needed if regression else (*needed, "classes", "boundary_margin"):
        if key not in data:
            raise ContractError(f"{path}: the key {key!r} is missing")
    bins = data["bins"]
    if type(bins) is not int or not 2 <= bins <= 100:
        raise ContractError(f"{path}: bins must be an integer from 2 to 100, got {bins!r}")
    names = [str(f["name"]) for f in card["features"]]
    features = data["features"]
    if not isinstance(features, list) or len(features) != len(names):
        raise ContractError(f"{path}: features must list the card's {len(names)} features")
    profiles = []
    for index, (item, name) in enumerate(zip(features, names, strict=True)):
        where = f"features[{index}]"
        if not isinstance(item, dict) or item.get("name") != name:
            raise ContractError(f"{path}: {where}.name must be {name!r} (the card's order)")
        low: Any = item.get("min")
        high: Any = item.get("max")
        if not (_finite(low) and _finite(high) and low <= high):
            raise ContractError(f"{path}: {where}.min and .max must be finite, min <= max")
        profiles.append(
            FeatureProfile(name, _distribution(item, bins, path, where), float(low), float(high))
        )
    if regression:
        return _regression_profile(data, path, bins, tuple(profiles))
    shares = _class_shares(data["classes"], card["classes"], path, "classes")
    labels = (
        _class_shares(data["labels"], card["classes"], path, "labels") if "labels" in data else ()
    )
    score = data["score"]
    if not isinstance(score, dict):
        raise ContractError(f"{path}: score must be an object with kind, class, edges, ratios")
    kind, score_class = score.get("kind"), score.get("class")
    expected = SCORE_KINDS[0] if len(card["classes"]) == 2 else SCORE_KINDS[1]
    if kind != expected:
        raise ContractError(
            f"{path}: score.kind must be {expected!r} for {len(card['classes'])} classes"
        )
    if (kind == SCORE_KINDS[0]) != (score_class in card["classes"]) or (
        kind == SCORE_KINDS[1] and score_class is not None
    ):
        raise ContractError(
            f"{path}: score.class must be one of the card's classes for {SCORE_KINDS[0]}, "
            f"null for {SCORE_KINDS[1]}"
        )
    distribution = _distribution(score, bins, path, "score")
    margin = data["boundary_margin"]
    if not (_finite(margin) and 0 <= margin <= 1):
        raise ContractError(f"{path}: boundary_margin must be a number from 0 to 1")
    rows = data["rows"]
    if type(rows) is not int or rows < 1:
        raise ContractError(f"{path}: rows must be a positive integer, got {rows!r}")
    return Profile(
        bins=bins,
        features=tuple(profiles),
        classes=shares,
        labels=labels,
        score_kind=str(kind),
        score_class=score_class,
        score=distribution,
        boundary_margin=float(margin),
        rows=rows,
    )


def _regression_profile(
    data: dict[str, Any], path: Path, bins: int, features: tuple[FeatureProfile, ...]
) -> Profile:
    """The rest of a regression's profile: the score is the prediction's distribution (kind
    ``prediction``, class null); no class shares, labels or boundary."""
    score = data["score"]
    if not isinstance(score, dict) or score.get("kind") != PREDICTION_SCORE:
        raise ContractError(f"{path}: score.kind must be {PREDICTION_SCORE!r} for a regression")
    if score.get("class") is not None:
        raise ContractError(f"{path}: score.class must be null for a regression")
    for key in ("classes", "labels"):
        if data.get(key):
            raise ContractError(f"{path}: {key} is for a classification's profile")
    rows = data["rows"]
    if type(rows) is not int or rows < 1:
        raise ContractError(f"{path}: rows must be a positive integer, got {rows!r}")
    return Profile(
        bins=bins,
        features=features,
        classes=(),
        score_kind=PREDICTION_SCORE,
        score_class=None,
        score=_distribution(score, bins, path, "score"),
        boundary_margin=0.0,
        rows=rows,
    )


def _finite(value: Any) -> bool:
    return isinstance(value, float | int) and not isinstance(value, bool) and math.isfinite(value)


def _distribution(item: dict[str, Any], bins: int, path: Path, where: str) -> Distribution:
    """``edges`` (strictly increasing finite numbers, fewer than ``bins``) and their ``ratios``."""
    edges, ratios = item.get("edges"), item.get("ratios")
    if (
        not isinstance(edges, list)
        or len(edges) >= bins
        or not all(map(_finite, edges))
        or any(a >= b for a, b in pairwise(edges))
    ):
        raise ContractError(
            f"{path}: {where}.edges must be at most {bins - 1} increasing finite numbers"
        )
    if not isinstance(ratios, list) or len(ratios) != len(edges) + 1:
        raise ContractError(f"{path}: {where}.ratios must have len(edges) + 1 entries")
    _check_ratios(ratios, path, f"{where}.ratios")
    return Distribution(tuple(map(float, edges)), tuple(map(float, ratios)))


def _class_shares(
    value: Any, classes: Sequence[str], path: Path, key: str
) -> tuple[tuple[str, float], ...]:
    """A profile's map of class -> share, in the card's class order, checked."""
    if not isinstance(value, dict) or set(value) != set(classes):
        raise ContractError(f"{path}: {key} must map each of the card's classes to a ratio")
    shares = [value[c] for c in classes]
    _check_ratios(shares, path, key)
    return tuple((str(c), float(share)) for c, share in zip(classes, shares, strict=True))


def _check_ratios(ratios: list[Any], path: Path, where: str) -> None:
    if not all(_finite(r) and 0 <= r <= 1 for r in ratios) or not (
        abs(math.fsum(ratios) - 1) <= RATIO_SUM_TOLERANCE
    ):
        raise ContractError(f"{path}: {where} must be numbers from 0 to 1 summing to 1")


def load(model_dir: Path, pin: str = "") -> dict[str, Any]:
    """The card of a verified artifact: contract checked, file hashes checked (and pinned)."""
    card = read_card(model_dir)
    verify_files(model_dir, card, pin)
    return card
