"""What an estimator family is: :class:`Family`, and the hyper-parameter kinds its schema lists.

A family's module (training/families/<name>.py) builds one :class:`Family` and registers it
(``training.families.register``); the registry's readers then take everything from it: params
validation (``train.<name>``'s keys and their checks), the train stage (the untrained pipeline),
the export (the estimator's ONNX graph), the benchmark and docs/training.md's table. The kinds
here read a key through params' checks (:class:`training.params.Section`: every error names the
key and what is allowed) and describe it in the same terms for the docs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # params imports the registry lazily; nothing here needs it at run time
    from sklearn.pipeline import Pipeline

    from training.graph import Graph
    from training.params import Section


@dataclass(frozen=True)
class Param:
    """One hyper-parameter: its key in ``train.<family>`` and a note for the docs."""

    key: str
    note: str = ""

    def read(self, section: Section) -> Any:
        raise NotImplementedError

    def allowed(self) -> str:
        """What the key takes, as the docs table says it (markdown)."""
        raise NotImplementedError

    def describe(self) -> str:
        note = f"; {self.note}" if self.note else ""
        return f"`{self.key}` ({self.allowed()}{note})"


@dataclass(frozen=True)
class Integer(Param):
    """An integer >= ``minimum``; with ``optional``, null too (scikit-learn's None: no limit)."""

    minimum: int = 0
    optional: bool = False

    def read(self, section: Section) -> int | None:
        if self.optional:
            return section.optional_integer(self.key, minimum=self.minimum)
        return section.integer(self.key, minimum=self.minimum)

    def allowed(self) -> str:
        return f"integer ≥ {self.minimum}" + (", or `null`: no limit" if self.optional else "")


@dataclass(frozen=True)
class Number(Param):
    """A finite number in (low, high], or [low, high] when ``closed``."""

    low: float = 0.0
    high: float = math.inf
    closed: bool = False

    def read(self, section: Section) -> float:
        return section.number(self.key, low=self.low, high=self.high, closed=self.closed)

    def allowed(self) -> str:
        if self.high == math.inf:
            return f"{'≥' if self.closed else '>'} {self.low:g}"
        return f"{'[' if self.closed else '('}{self.low:g}, {self.high:g}]"


@dataclass(frozen=True)
class Choice(Param):
    """One of ``options``."""

    options: tuple[str, ...] = ()

    def read(self, section: Section) -> str:
        return section.choice(self.key, self.options)

    def allowed(self) -> str:
        return ", ".join(f"`{option}`" for option in self.options)


@dataclass(frozen=True)
class Boolean(Param):
    """true or false."""

    def read(self, section: Section) -> bool:
        return section.boolean(self.key)

    def allowed(self) -> str:
        return "`true` or `false`"


@dataclass(frozen=True)
class Family:
    """One estimator family: ``train.estimator: <name>`` chooses it, ``train.<name>`` holds its
    hyper-parameters.

    - ``summary``: the pipeline in a few words (the docs table's);
    - ``params``: the schema of ``train.<name>``, in the order the model card lists them;
      every key is required and no other is allowed;
    - ``pipeline(hyper)``: the untrained scikit-learn Pipeline for checked hyper-parameters,
      whose last step is the estimator; what is not a hyper-parameter (one job, ...) is fixed
      there, for reproducibility;
    - ``estimators``: the fitted estimator classes ``to_onnx`` converts (the export finds the
      family of a pipeline's last step by its class);
    - ``to_onnx(estimator, graph, current)``: writes the fitted estimator's nodes into ``graph``,
      from the tensor ``current`` (the rows after the pipeline's earlier steps, float64) to
      ``OUTPUT`` (float64 probabilities in ``classes_`` order) for a classifier, to
      ``PREDICTION`` (float64, one column: the predicted value) for a regressor. It raises
      ``training.graph.ConversionError`` naming what it cannot convert;
    - ``regression``: the untrained Pipeline of the family's regressor (``data.task:
      regression``) for the same checked hyper-parameters, or None for a classification-only
      family; its estimator's class is in ``estimators`` too;
    - ``pipeline`` None: a regression-only family (``regression`` must then be given);
    - ``encoding``: how the column step before the pipeline encodes a categorical column for it
      (training/columns.py): ``one_hot`` (what linear models need) or ``ordinal`` (the category's
      index: what trees split on), the default.

    A family that does both reads one section for both (``train.random_forest`` is the forest
    whatever it predicts): the hyper-parameters, their checks and the tree walk of the graph are
    the same, so the registry keeps one name per estimator kind.
    """

    name: str
    summary: str
    params: tuple[Param, ...]
    pipeline: Callable[[Mapping[str, Any]], Pipeline] | None
    estimators: tuple[type, ...]
    to_onnx: Callable[[Any, Graph, str], None]
    regression: Callable[[Mapping[str, Any]], Pipeline] | None = None
    encoding: str = "ordinal"

    @property
    def tasks(self) -> tuple[str, ...]:
        """The ``data.task`` values the family trains for (classification, regression or both)."""
        return tuple(
            task
            for task, builder in (
                ("classification", self.pipeline),
                ("regression", self.regression),
            )
            if builder is not None
        )

    def build(self, hyper: Mapping[str, Any], task: str) -> Pipeline:
        """The untrained pipeline for ``task``; ValueError naming the family's tasks for another."""
        builder = self.regression if task == "regression" else self.pipeline
        if builder is None:
            raise ValueError(
                f"family {self.name!r} does not train for {task} (it does {', '.join(self.tasks)})"
            )
        return builder(hyper)

    def read(self, section: Section) -> dict[str, Any]:
        """The checked hyper-parameters of ``train.<name>``; ParamsError naming a bad key."""
        section.no_other_keys(*(param.key for param in self.params))
        return {param.key: param.read(section) for param in self.params}
