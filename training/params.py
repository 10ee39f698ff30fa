"""Typed, validated access to training/params.yaml: one section per stage.

Each stage reads only its own section at start-up. A missing key, an unknown key or a value of the
wrong type raises :class:`ParamsError` whose message is one line naming the key, e.g.
``training/params.yaml: train.C must be a number, got 'abc'``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

#: Metrics evaluate computes; each may carry a threshold in ``evaluate.thresholds``.
METRIC_NAMES = ("accuracy", "precision", "recall", "f1", "roc_auc")
#: Deterministic solvers only: the pipeline must reproduce dvc.lock byte for byte.
SOLVERS = ("lbfgs", "newton-cg", "newton-cholesky")


class ParamsError(ValueError):
    """params.yaml does not have the shape the stage needs (the message names the key)."""


@dataclass(frozen=True)
class PrepareParams:
    """How prepare splits the dataset."""

    seed: int
    test_size: float


@dataclass(frozen=True)
class TrainParams:
    """Hyper-parameters of StandardScaler + LogisticRegression."""

    C: float  # scikit-learn's own name for it
    max_iter: int
    tol: float
    solver: str
    fit_intercept: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EvaluateParams:
    """The quality gate: the minimum value of each listed metric on the test split."""

    thresholds: dict[str, float]


def load_section(path: Path, section: str) -> dict[str, Any]:
    """Return one top-level section of a params file as a mapping."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ParamsError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ParamsError(f"{path}: not valid YAML{where}") from None
    if not isinstance(document, dict):
        raise ParamsError(f"{path}: must be a mapping of stage sections")
    if section not in document:
        raise ParamsError(f"{path}: missing key {section}")
    value = document[section]
    if not isinstance(value, dict):
        raise ParamsError(f"{path}: {section} must be a mapping, got {value!r}")
    return value


class _Section:
    """Reads typed keys from one section and names the full key in every error."""

    def __init__(self, path: Path, name: str, values: dict[str, Any]) -> None:
        self.file = str(path)
        self.name = name
        self.values = values

    def _fail(self, key: str, what: str) -> ParamsError:
        return ParamsError(f"{self.file}: {self.name}.{key} {what}")

    def _get(self, key: str) -> Any:
        if key not in self.values:
            raise self._fail(key, "is missing")
        return self.values[key]

    def no_other_keys(self, *known: str) -> None:
        for key in self.values:
            if key not in known:
                raise self._fail(str(key), f"is not a known key (known: {', '.join(known)})")

    def integer(self, key: str, minimum: int) -> int:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(key, f"must be an integer, got {value!r}")
        if value < minimum:
            raise self._fail(key, f"must be >= {minimum}, got {value!r}")
        return value

    def number(self, key: str, *, low: float, high: float = math.inf) -> float:
        """A finite number with low < value <= high."""
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._fail(key, f"must be a number, got {value!r}")
        if not math.isfinite(value) or not low < value <= high:
            raise self._fail(key, f"must be in ({low:g}, {high:g}], got {value!r}")
        return float(value)

    def boolean(self, key: str) -> bool:
        value = self._get(key)
        if not isinstance(value, bool):
            raise self._fail(key, f"must be true or false, got {value!r}")
        return value

    def choice(self, key: str, allowed: tuple[str, ...]) -> str:
        value = self._get(key)
        if value not in allowed:
            raise self._fail(key, f"must be one of {', '.join(allowed)}, got {value!r}")
        return str(value)

    def mapping(self, key: str) -> _Section:
        value = self._get(key)
        if not isinstance(value, dict):
            raise self._fail(key, f"must be a mapping, got {value!r}")
        return _Section(Path(self.file), f"{self.name}.{key}", value)


def _section(path: Path, name: str) -> _Section:
    return _Section(path, name, load_section(path, name))


def load_prepare(path: Path) -> PrepareParams:
    s = _section(path, "prepare")
    s.no_other_keys("seed", "test_size")
    return PrepareParams(
        seed=s.integer("seed", minimum=0), test_size=s.number("test_size", low=0, high=0.5)
    )


def load_train(path: Path) -> TrainParams:
    s = _section(path, "train")
    s.no_other_keys("C", "max_iter", "tol", "solver", "fit_intercept")
    return TrainParams(
        C=s.number("C", low=0),
        max_iter=s.integer("max_iter", minimum=1),
        tol=s.number("tol", low=0),
        solver=s.choice("solver", SOLVERS),
        fit_intercept=s.boolean("fit_intercept"),
    )


def load_evaluate(path: Path) -> EvaluateParams:
    s = _section(path, "evaluate")
    s.no_other_keys("thresholds")
    t = s.mapping("thresholds")
    t.no_other_keys(*METRIC_NAMES)
    thresholds = {name: t.number(name, low=0, high=1) for name in METRIC_NAMES if name in t.values}
    return EvaluateParams(thresholds=thresholds)


@dataclass(frozen=True)
class PromotionParams:
    """How much worse than the model an environment runs a promoted model may be (gitops.gates).

    Not a stage of dvc.yaml: the promotion tool reads it from the target environment's branch.
    """

    regression_tolerance: float  # the largest drop of any gated metric, e.g. 0.01


def load_promotion(path: Path) -> PromotionParams:
    s = _section(path, "promotion")
    s.no_other_keys("regression_tolerance")
    return PromotionParams(regression_tolerance=s.number("regression_tolerance", low=0, high=1))
