"""Typed, validated access to training/params.yaml: the data, one section per stage, the artifact.

Each stage reads only the sections it needs at start-up. A missing key, an unknown key or a value
of the wrong type raises :class:`ParamsError` whose message is one line naming the key, e.g.
``training/params.yaml: train.logistic_regression.C must be a number, got 'abc'``. Callers: the
stage scripts (prepare, train, evaluate), training.demo and training.report (the artifact and the
estimator), gitops.gates (the thresholds and the promotion tolerance), bench.models (every
family's section and the artifact's name). The artifact's name and description are read from here
by every tool outside the pipeline too (:func:`load_artifact`; ``python -m training.params
artifact.name`` for make and the workflows; scripts/render-artifact.py writes them into the
chart's values and the AppProject), so a fork renames its model in params.yaml alone. The
``train`` section's keys and checks are the estimator families' own (training/families/): each
family's schema reads its section through :class:`Section`.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import yaml

from training.columns import Categorical, Imputation, read_categorical, read_missing

#: What ``data.task`` may be: a label out of ``data.classes``, or a number.
TASKS = ("classification", "regression")
#: Metrics evaluate computes for a classification; each may carry a threshold in
#: ``evaluate.thresholds`` (a minimum).
METRIC_NAMES = ("accuracy", "precision", "recall", "f1", "roc_auc")
#: Metrics evaluate computes for a regression (``data.task: regression``): root mean squared
#: error, mean absolute error (in the target's unit, lower is better: a threshold is a maximum)
#: and the coefficient of determination (at most 1, higher is better: a minimum).
REGRESSION_METRIC_NAMES = ("rmse", "mae", "r2")
#: The metrics whose threshold is a maximum (an error); every other one's is a minimum.
LOWER_IS_BETTER = frozenset({"rmse", "mae"})
#: Each task's metrics (the one list evaluate, export and gitops.gates read).
TASK_METRICS = {"classification": METRIC_NAMES, "regression": REGRESSION_METRIC_NAMES}
#: The feature types a dataset may declare (what the model card and the server know).
FEATURE_TYPES = ("float64", "int64")
#: A GTO artifact name that is also a Kubernetes label value and a URL path segment.
ARTIFACT_NAME = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
#: The repository's params file (what the tools outside the pipeline read the artifact from).
PARAMS = Path(__file__).resolve().parent / "params.yaml"
#: A data file prepare can read.
DATA_SUFFIXES = (".csv",)


class ParamsError(ValueError):
    """params.yaml does not have the shape the stage needs (the message names the key)."""


#: The most bins a reference profile may have (modelcard.read_profile's limit: one series per
#: feature and bin, so the live metrics' cardinality stays bounded).
MAX_PROFILE_BINS = 100


@dataclass(frozen=True)
class DataParams:
    """What the raw data file holds: the ``data`` section (docs/training.md, "Using your own data").

    ``task`` is ``classification`` (``classes`` lists the labels) or ``regression`` (the target
    is a number; ``classes`` is empty and ``positive_class`` None). ``features`` is None for
    "every column but the target, in file order" (less ``exclude``);
    ``types`` maps each named exception to its type, every other feature has ``feature_type``;
    ``categorical`` names the columns of text categories and ``missing`` the columns that may miss
    values, with their imputation (both empty unless declared: training/columns.py).
    """

    file: str
    target: str
    classes: tuple[str, ...]
    positive_class: str | None  # binary problems only
    features: tuple[str, ...] | None
    exclude: tuple[str, ...]
    feature_type: str
    types: dict[str, str]
    task: str = "classification"
    categorical: dict[str, Categorical] = field(default_factory=dict)
    missing: dict[str, Imputation] = field(default_factory=dict)

    @property
    def regression(self) -> bool:
        return self.task == "regression"

    def type_of(self, column: str) -> str:
        return self.types.get(column, self.feature_type)

    @property
    def binary(self) -> bool:
        return len(self.classes) == 2

    @property
    def metric_average(self) -> str | None:
        """How evaluate averages precision, recall, F1 and ROC AUC, as the model card states it:
        ``binary`` (the positive class's) for two classes, else ``macro``; None for a regression
        (nothing is averaged over classes)."""
        if self.regression:
            return None
        return "binary" if self.positive_class is not None else "macro"


@dataclass(frozen=True)
class PrepareParams:
    """How prepare splits the dataset."""

    seed: int
    test_size: float


@dataclass(frozen=True)
class TrainParams:
    """The estimator ``train.estimator`` names and its own hyper-parameters (its section)."""

    estimator: str
    hyper: dict[str, Any]
    task: str = "classification"  # data.task: which of the family's pipelines train builds

    def as_dict(self) -> dict[str, Any]:
        """The hyper-parameters, as the model card's ``params`` records them."""
        return dict(self.hyper)


@dataclass(frozen=True)
class EvaluateParams:
    """The quality gate: the minimum value of each listed metric on the test split."""

    thresholds: dict[str, float]
    task: str = "classification"


@dataclass(frozen=True)
class ArtifactParams:
    """The GTO artifact the pipeline's model is registered as (training/dvc.yaml ``artifacts:``
    takes both from here through DVC templating)."""

    name: str
    description: str


def load_document(path: Path) -> dict[str, Any]:
    """The whole params file as a mapping."""
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
    return document


def load_section(path: Path, section: str) -> dict[str, Any]:
    """Return one top-level section of a params file as a mapping."""
    document = load_document(path)
    if section not in document:
        raise ParamsError(f"{path}: missing key {section}")
    value = document[section]
    if not isinstance(value, dict):
        raise ParamsError(f"{path}: {section} must be a mapping, got {value!r}")
    return value


class Section:
    """Reads typed keys from one section and names the full key in every error (also what the
    families' hyper-parameter kinds read through, training/families/_family.py)."""

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

    def optional_integer(self, key: str, minimum: int) -> int | None:
        """An integer, or null (scikit-learn's None: no limit)."""
        if self._get(key) is None:
            return None
        return self.integer(key, minimum)

    def number(
        self, key: str, *, low: float, high: float = math.inf, closed: bool = False
    ) -> float:
        """A finite number with low < value <= high (low <= value when ``closed``)."""
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._fail(key, f"must be a number, got {value!r}")
        above = low <= value if closed else low < value
        if not math.isfinite(value) or not (above and value <= high):
            opening = "[" if closed else "("
            raise self._fail(key, f"must be in {opening}{low:g}, {high:g}], got {value!r}")
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

    def text(self, key: str) -> str:
        value = self._get(key)
        if not isinstance(value, str) or not value.strip():
            raise self._fail(key, f"must be a non-empty string, got {value!r}")
        return value

    def names(self, key: str, *, minimum: int = 0) -> tuple[str, ...]:
        """A list of distinct non-empty strings (numbers are taken as their text: ``[0, 1]``)."""
        value = self._get(key)
        if not isinstance(value, list):
            raise self._fail(key, f"must be a list, got {value!r}")
        found = []
        for item in value:
            if isinstance(item, bool):
                raise self._fail(key, f"reads {item!r}: quote the label (YAML reads yes/no/on/off)")
            if not isinstance(item, str | int) or str(item) == "":
                raise self._fail(key, f"must list names (strings), got {item!r}")
            if str(item) in found:
                raise self._fail(key, f"lists {str(item)!r} twice")
            found.append(str(item))
        if len(found) < minimum:
            raise self._fail(key, f"must list at least {minimum}, got {len(found)}")
        return tuple(found)

    def mapping(self, key: str) -> Section:
        value = self._get(key)
        if not isinstance(value, dict):
            raise self._fail(key, f"must be a mapping, got {value!r}")
        return Section(Path(self.file), f"{self.name}.{key}", value)


def _section(path: Path, name: str) -> Section:
    return Section(path, name, load_section(path, name))


def load_data(path: Path) -> DataParams:
    """The ``data`` section: the raw file and how to read it."""
    s = _section(path, "data")
    s.no_other_keys(
        "file", "target", "classes", "positive_class", "features", "exclude", "feature_type",
        "types", "task", "categorical", "missing",
    )  # fmt: skip
    task = _task(s)
    file = s.text("file")
    if not file.endswith(DATA_SUFFIXES) or Path(file).is_absolute() or ".." in Path(file).parts:
        raise s._fail(
            "file",
            f"must be a {' or '.join(DATA_SUFFIXES)} file inside the repository, "
            f"relative to its root, got {file!r}",
        )
    target = s.text("target")
    classes, positive = _classes(s, task)
    features = s._get("features")
    selected: tuple[str, ...] | None
    if features == "all":
        selected = None
    elif isinstance(features, list):
        selected = s.names("features", minimum=1)
    else:
        raise s._fail("features", f"must be 'all' or a list of column names, got {features!r}")
    exclude = s.names("exclude") if "exclude" in s.values else ()
    if selected is not None and exclude:
        raise s._fail("exclude", "only goes with features: all (a list already names each column)")
    feature_type = s.choice("feature_type", FEATURE_TYPES)
    types: dict[str, str] = {}
    if "types" in s.values:
        t = s.mapping("types")
        for column in t.values:
            types[str(column)] = t.choice(str(column), FEATURE_TYPES)
    categorical = read_categorical(s.mapping("categorical")) if "categorical" in s.values else {}
    missing = read_missing(s.mapping("missing"), categorical) if "missing" in s.values else {}
    for column in categorical:
        if column in types:
            raise s._fail(
                "types", f"{column!r} is categorical (data.categorical): it has no number type"
            )
    if target in (*(selected or ()), *exclude, *types, *categorical, *missing):
        raise s._fail("target", f"{target!r} is also listed among the features")
    return DataParams(
        file=file,
        target=target,
        classes=classes,
        positive_class=positive,
        features=selected,
        exclude=exclude,
        feature_type=feature_type,
        types=types,
        task=task,
        categorical=categorical,
        missing=missing,
    )


def _task(s: Section) -> str:
    """``data.task``: classification when absent (what every params.yaml before it meant)."""
    return s.choice("task", TASKS) if "task" in s.values else TASKS[0]


def _classes(s: Section, task: str) -> tuple[tuple[str, ...], str | None]:
    """``data.classes`` and ``data.positive_class`` of a classification; a regression has
    neither (its target is a number), and names the key when one is given."""
    if task == "regression":
        for key in ("classes", "positive_class"):
            if key in s.values:
                raise s._fail(key, "is for classification only (data.task is regression): drop it")
        return (), None
    classes = s.names("classes", minimum=2)
    positive = s.values.get("positive_class")
    if len(classes) == 2:
        if str(s._get("positive_class")) not in classes:
            raise s._fail(
                "positive_class", f"must be one of {', '.join(classes)}, got {positive!r}"
            )
        return classes, str(positive)
    if positive is not None:
        raise s._fail(
            "positive_class",
            f"is for two classes only (data.classes lists {len(classes)}): drop it",
        )
    return classes, None


def load_task(path: Path) -> str:
    """``data.task`` alone (evaluate's thresholds, the promotion gates and the families read
    which metrics and pipelines apply without the rest of ``data``)."""
    return _task(_section(path, "data"))


def load_prepare(path: Path) -> PrepareParams:
    s = _section(path, "prepare")
    s.no_other_keys("seed", "test_size")
    return PrepareParams(
        seed=s.integer("seed", minimum=0), test_size=s.number("test_size", low=0, high=0.5)
    )


def load_train(path: Path) -> TrainParams:
    """``train.estimator`` (a registered family, training/families/) and the hyper-parameters of
    every family's section (all of them are checked, by the family's own schema, so a typo in a
    section not chosen today is caught before it is chosen)."""
    from training import families  # here, not at the top: the stage runner imports this module
    # before it pins the numeric libraries, and the families import numpy

    known = families.names()
    s = _section(path, "train")
    s.no_other_keys("estimator", *known)
    estimator = s.choice("estimator", known)
    task = load_task(path)
    if task not in families.get(estimator).tasks:
        fitting = families.for_task(task)
        raise s._fail(
            "estimator",
            f"{estimator} is not a {task} family (data.task is {task}); {task} families: "
            f"{', '.join(fitting)}",
        )
    hyper = {name: families.get(name).read(s.mapping(name)) for name in known if name in s.values}
    if estimator not in hyper:
        raise s._fail(
            estimator, f"is missing (the hyper-parameters of train.estimator {estimator})"
        )
    return TrainParams(estimator=estimator, hyper=hyper[estimator], task=task)


def load_hyper(path: Path, family: str) -> dict[str, Any]:
    """The checked hyper-parameters of ``train.<family>``, whichever family ``train.estimator``
    chooses (the benchmark builds every family from its section); ParamsError naming the key."""
    from training import families

    s = _section(path, "train")
    return families.get(family).read(s.mapping(family))


def load_evaluate(path: Path) -> EvaluateParams:
    """The thresholds of ``data.task``'s metrics (:data:`TASK_METRICS`): a classification
    metric in [0, 1]; rmse and mae > 0 (maxima); r2 at most 1 (a minimum). A metric of the other
    task is refused naming the key and the task's metrics."""
    s = _section(path, "evaluate")
    s.no_other_keys("thresholds")
    t = s.mapping("thresholds")
    task = load_task(path)
    names = TASK_METRICS[task]
    for key in t.values:
        other = next((k for k, v in TASK_METRICS.items() if k != task and key in v), None)
        if other is not None:
            raise t._fail(
                str(key),
                f"is a {other} metric (data.task is {task}); {task} metrics: {', '.join(names)}",
            )
    t.no_other_keys(*names)
    thresholds = {name: _threshold(t, name) for name in names if name in t.values}
    return EvaluateParams(thresholds=thresholds, task=task)


def _threshold(t: Section, name: str) -> float:
    if name in LOWER_IS_BETTER:
        return t.number(name, low=0)
    if name == "r2":
        return t.number(name, low=-math.inf, high=1)
    return t.number(name, low=0, high=1)


def meets(name: str, value: float, threshold: float) -> bool:
    """Whether ``value`` of the metric ``name`` passes its threshold: at most it for an error
    (:data:`LOWER_IS_BETTER`), at least it for every other metric."""
    return value <= threshold if name in LOWER_IS_BETTER else value >= threshold


def load_artifact(path: Path = PARAMS) -> ArtifactParams:
    """The ``artifact`` section: the one source of the model's name and description. Callers: the
    export stage and training.demo (their params file), and with the repository's
    (:data:`PARAMS`) gitops.register (its --name), gitops.demo, bench.models and
    scripts/render-artifact.py; make and the workflows through :func:`main`."""
    s = _section(path, "artifact")
    s.no_other_keys("name", "description")
    name = s.text("name")
    if not ARTIFACT_NAME.fullmatch(name) or len(name) > 63:
        raise s._fail(
            "name",
            "must be lowercase letters and digits in words joined by '-', at most 63 characters, "
            f"got {name!r}",
        )
    return ArtifactParams(name=name, description=s.text("description"))


@dataclass(frozen=True)
class ExportParams:
    """How the export stage writes the served model (training/export.py)."""

    # Serve the scikit-learn pickle when the ONNX export cannot convert the model; off, such a
    # model fails the stage. The card, /v2 model metadata and the metrics then say scikit-learn.
    allow_scikit_learn: bool
    # The reference profile's bins per feature and for the score (quantiles, training/profile.py:
    # what the drift signals count and the PSI compares), 2 to 100 as modelcard allows.
    profile_bins: int
    # A row is near the decision boundary when its two highest probabilities differ by less.
    boundary_margin: float


def load_export(path: Path) -> ExportParams:
    s = _section(path, "export")
    s.no_other_keys("allow_scikit_learn", "profile_bins", "boundary_margin")
    bins = s.integer("profile_bins", minimum=2)
    if bins > MAX_PROFILE_BINS:
        raise s._fail("profile_bins", f"must be at most {MAX_PROFILE_BINS}, got {bins}")
    return ExportParams(
        allow_scikit_learn=s.boolean("allow_scikit_learn"),
        profile_bins=bins,
        boundary_margin=s.number("boundary_margin", low=0, high=1, closed=True),
    )


@dataclass(frozen=True)
class PromotionParams:
    """How much worse than the model an environment runs a promoted model may be (gitops.gates).

    Not a stage of dvc.yaml: the promotion tool reads it from the target environment's branch.
    """

    # The largest drop of a gated score (accuracy, ..., r2), e.g. 0.01; for an error (rmse, mae:
    # in the target's unit) the largest growth as a fraction of the running model's, e.g. 0.01
    # lets an rmse of 50 grow to 50.5.
    regression_tolerance: float


def load_promotion(path: Path) -> PromotionParams:
    s = _section(path, "promotion")
    s.no_other_keys("regression_tolerance")
    return PromotionParams(regression_tolerance=s.number("regression_tolerance", low=0, high=1))


class _OneLineParser(argparse.ArgumentParser):
    """A usage error is one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see --help)\n")


#: What ``python -m training.params`` prints: the artifact's keys.
CLI_KEYS = ("artifact.name", "artifact.description")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training.params KEY [--params FILE]``: print the artifact's name or description
    (one line) for make (mk/image.mk's MODEL_REF) and the workflows (promote.yml's pull-request
    title); a bad file is one ``error:`` line and exit 1."""
    parser = _OneLineParser(
        prog="python -m training.params", description="Print one value of training/params.yaml."
    )
    parser.add_argument("key", choices=CLI_KEYS, help=", ".join(CLI_KEYS))
    parser.add_argument("--params", type=Path, default=PARAMS, help="default: training/params.yaml")
    args = parser.parse_args(argv)
    try:
        artifact = load_artifact(args.params)
    except ParamsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(artifact.name if args.key == "artifact.name" else artifact.description)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
