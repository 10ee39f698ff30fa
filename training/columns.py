"""Column kinds beyond plain numbers: categorical columns and columns that may miss values.

One module for every side of them, so that the rule is written once:

- params: :func:`read_categorical` and :func:`read_missing` read ``data.categorical`` and
  ``data.missing`` (training.params.load_data calls them; both default to none, so a dataset
  that declares neither trains exactly as before);
- the pipeline: :func:`preprocessor` is the step train puts before a family's pipeline, as a
  scikit-learn user would write it: a ``ColumnTransformer`` with, per column, a ``SimpleImputer``
  where missing values are allowed and a ``OneHotEncoder`` (the family's ``encoding`` is
  ``one_hot``: linear models) or an ``OrdinalEncoder`` (``ordinal``: the tree families) for a
  categorical column. Their categories are explicit: the listed ones, or the train split's values
  in sorted order (``learn``), plus an imputation's constant. No step at all when no column needs
  one;
- the card: :func:`card_features` reads each feature's kind, categories and imputation from the
  fitted step (what the server decodes requests with, modelcard.runtime.encode_column);
- the graph: :func:`to_onnx` writes the fitted step as ONNX nodes. The graph's input stays one
  float64 matrix: a category arrives as its index in the card's list (-1 for an unseen one under
  ``unseen: ignore``), a missing value as NaN (modelcard.runtime.encode_column, shared by the
  server and the proof), and the graph imputes (``Where(IsNaN(x), fill, x)``) and one-hot encodes
  (``Equal(code, k)``) as the fitted step does; an ordinal code is already the encoder's output;
- the proof: :func:`decorate` adds the rows every proof must cover (each category of each column,
  an unseen one where allowed, a missing value in each column that allows it, all at once) to the
  generated rows, and :func:`decode` turns coded rows back into the values a user sends, so the
  proof runs scikit-learn on those values and the graph on their encoding.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # params imports this module before the numeric libraries are pinned
    import numpy as np
    import pandas as pd
    from sklearn.compose import ColumnTransformer

    from training.graph import Graph
    from training.params import Section

#: ``categories: learn``: the train split's values, sorted.
LEARN = "learn"
#: What a categorical column does with a category it does not know (at prepare, in the proof and
#: when served): ``error`` refuses it, ``ignore`` encodes it as none of the known ones.
UNSEEN_RULES = ("error", "ignore")
#: Imputations of a column that may miss values (scikit-learn's SimpleImputer strategies);
#: ``constant`` is written ``{constant: value}``.
NUMERIC_IMPUTATIONS = ("mean", "median", "most_frequent")
CATEGORY_IMPUTATIONS = ("most_frequent",)
#: The encodings a family may ask for (training/families/_family.py ``Family.encoding``).
ENCODINGS = ("one_hot", "ordinal")
#: The name of the preprocessing step in a trained pipeline.
STEP = "columns"
#: The text the proof sends for an unseen category (with ``_`` added while a category has it).
UNSEEN_TEXT = "<unseen>"


@dataclass(frozen=True)
class Categorical:
    """``data.categorical.<column>``: its categories (None: learned from the train split) and
    what an unseen one does."""

    categories: tuple[str, ...] | None
    unseen: str


@dataclass(frozen=True)
class Imputation:
    """``data.missing.<column>``: the SimpleImputer strategy and, for ``constant``, its value."""

    strategy: str
    fill: float | str | None = None


def read_categorical(s: Section) -> dict[str, Categorical]:
    """``data.categorical``: ``{column: {categories: [..] | learn, unseen: error | ignore}}``."""
    found: dict[str, Categorical] = {}
    for column in s.values:
        entry = s.mapping(str(column))
        entry.no_other_keys("categories", "unseen")
        listed = entry._get("categories")
        categories = None if listed == LEARN else entry.names("categories", minimum=2)
        if listed != LEARN and not isinstance(listed, list):
            raise entry._fail("categories", f"must be a list or {LEARN!r}, got {listed!r}")
        found[str(column)] = Categorical(categories, entry.choice("unseen", UNSEEN_RULES))
    return found


def read_missing(s: Section, categorical: Mapping[str, Categorical]) -> dict[str, Imputation]:
    """``data.missing``: ``{column: mean | median | most_frequent | {constant: value}}`` (a
    categorical column: most_frequent or a constant string)."""
    found: dict[str, Imputation] = {}
    for key, value in s.values.items():
        column = str(key)
        is_category = column in categorical
        allowed = CATEGORY_IMPUTATIONS if is_category else NUMERIC_IMPUTATIONS
        if isinstance(value, dict):
            entry = s.mapping(column)
            entry.no_other_keys("constant")
            fill = entry._get("constant")
            if is_category:
                fill = entry.text("constant")
            elif isinstance(fill, bool) or not isinstance(fill, int | float):
                raise entry._fail("constant", f"must be a number, got {fill!r}")
            found[column] = Imputation("constant", fill)
        elif value in allowed:
            found[column] = Imputation(str(value))
        else:
            kind = "a categorical column" if is_category else "a numeric column"
            raise s._fail(
                column,
                f"must be one of {', '.join(allowed)} or {{constant: value}} for {kind}, "
                f"got {value!r}",
            )
    return found


# --- the pipeline step ---------------------------------------------------------------------


def needed(categorical: Mapping[str, Categorical], missing: Mapping[str, Imputation]) -> bool:
    """Whether any column needs a preprocessing step (else the pipeline is the family's own)."""
    return bool(categorical or missing)


def categories_of(
    column: str, spec: Categorical, imputation: Imputation | None, train: Any
) -> list[str]:
    """The encoder's categories: the listed ones, else the train split's values sorted; an
    imputation's constant is added last when it is not among them."""
    import pandas as pd

    if spec.categories is not None:
        found = list(spec.categories)
    else:
        found = sorted({str(v) for v in train[column] if not pd.isna(v)})
    if (
        imputation is not None
        and imputation.strategy == "constant"
        and imputation.fill not in found
    ):
        found.append(str(imputation.fill))
    return found


def preprocessor(
    features: Sequence[str],
    categorical: Mapping[str, Categorical],
    missing: Mapping[str, Imputation],
    encoding: str,
    train: pd.DataFrame,
) -> ColumnTransformer:
    """The untrained step for ``features`` (in order): one transformer per column, named after
    it, so the step's output columns follow the features (a one-hot column widens in place)."""
    import numpy as np
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

    if encoding not in ENCODINGS:
        raise ValueError(f"encoding {encoding!r} must be one of {', '.join(ENCODINGS)}")
    transformers: list[tuple[str, Any, list[str]]] = []
    for column in features:
        steps: list[tuple[str, Any]] = []
        imputation = missing.get(column)
        if imputation is not None:
            fill = imputation.fill if imputation.strategy == "constant" else None
            steps.append(("impute", SimpleImputer(strategy=imputation.strategy, fill_value=fill)))
        spec = categorical.get(column)
        if spec is not None:
            known = [categories_of(column, spec, imputation, train)]
            ignore = spec.unseen == "ignore"
            if encoding == "one_hot":
                encoder: Any = OneHotEncoder(
                    categories=known,
                    handle_unknown="ignore" if ignore else "error",
                    sparse_output=False,
                    dtype=np.float64,
                )
            else:
                encoder = OrdinalEncoder(
                    categories=known,
                    handle_unknown="use_encoded_value" if ignore else "error",
                    unknown_value=-1 if ignore else None,
                    dtype=np.float64,
                )
            steps.append(("encode", encoder))
        transformer: Any = "passthrough"
        if len(steps) == 1:
            transformer = steps[0][1]
        elif steps:
            transformer = Pipeline(steps)
        transformers.append((column, transformer, [column]))
    return ColumnTransformer(
        transformers, remainder="drop", sparse_threshold=0.0, verbose_feature_names_out=False
    )


@dataclass(frozen=True)
class Fitted:
    """One column of a fitted step: its categories and unseen rule (a category), its encoding
    (``one_hot``, ``ordinal`` or None) and its imputation (strategy and fitted fill)."""

    name: str
    categories: list[str] | None
    unseen: str | None
    encoding: str | None
    strategy: str | None
    fill: Any


def fitted_columns(step: ColumnTransformer) -> list[Fitted]:
    """The fitted step's columns in output order (ConversionError for a step not written by
    :func:`preprocessor`)."""
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, OrdinalEncoder

    from training.graph import ConversionError

    def identity(part: Any) -> bool:  # "passthrough", as the fitted step keeps it
        return (isinstance(part, str) and part == "passthrough") or (
            type(part) is FunctionTransformer and part.func is None
        )

    found = []
    for name, transformer, columns in step.transformers_:
        if name == "remainder":
            continue
        if list(columns) != [name]:
            raise ConversionError(f"cannot convert the column step {name!r}: one column each")
        parts = (
            [t for _, t in transformer.steps]
            if isinstance(transformer, Pipeline)
            else [transformer]
        )
        imputer = next((p for p in parts if isinstance(p, SimpleImputer)), None)
        encoder = next((p for p in parts if isinstance(p, OneHotEncoder | OrdinalEncoder)), None)
        known = [p for p in parts if identity(p) or p is imputer or p is encoder]
        if len(known) != len(parts):
            raise ConversionError(
                f"cannot convert the column step {name!r}: only SimpleImputer, OneHotEncoder "
                "and OrdinalEncoder"
            )
        categories = None if encoder is None else [str(c) for c in encoder.categories_[0]]
        unseen = None
        if encoder is not None:
            unseen = "error" if encoder.handle_unknown == "error" else "ignore"
        fill = None if imputer is None else imputer.statistics_[0]
        found.append(
            Fitted(
                name=str(name),
                categories=categories,
                unseen=unseen,
                encoding=None
                if encoder is None
                else ("one_hot" if isinstance(encoder, OneHotEncoder) else "ordinal"),
                strategy=None if imputer is None else str(imputer.strategy),
                fill=fill if fill is None or categories is not None else float(fill),
            )
        )
    return found


def card_features(
    model: Any, names: Sequence[str], types: Mapping[str, str]
) -> list[dict[str, Any]]:
    """The card's ``features``: each name with its dtype (``types``, float64 by default), and for
    a pipeline with a column step its categories, unseen rule and imputation, read from the fitted
    step (modelcard's contract)."""
    step = column_step(model)
    if step is None:
        return [{"name": name, "dtype": types.get(name, "float64")} for name in names]
    by_name = {column.name: column for column in fitted_columns(step)}
    features = []
    for name in names:
        column = by_name[name]
        entry: dict[str, Any] = {"name": name, "dtype": types.get(name, "float64")}
        if column.categories is not None:
            entry.update(dtype="category", categories=column.categories, unseen=column.unseen)
        if column.strategy is not None:
            fill = column.fill if isinstance(column.fill, str) else float(column.fill)
            entry["missing"] = {"strategy": column.strategy, "fill": fill}
        features.append(entry)
    return features


def column_step(model: Any) -> ColumnTransformer | None:
    """The pipeline's column step, if it has one (always its first)."""
    from sklearn.compose import ColumnTransformer

    steps = getattr(model, "steps", None)
    if steps and isinstance(steps[0][1], ColumnTransformer):
        step: ColumnTransformer = steps[0][1]
        return step
    return None


# --- the graph -----------------------------------------------------------------------------


def to_onnx(step: ColumnTransformer, current: str, g: Graph) -> str:
    """The fitted column step's nodes from the coded rows ``current``: impute NaN with each
    column's fill (its code for a category), then widen each one-hot column into one 0/1 column
    per category (an unseen code, -1, matches none); the name of the result."""
    import math

    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    columns = fitted_columns(step)
    if any(c.strategy is not None for c in columns):
        fills = []
        for column in columns:
            if column.strategy is None:
                fills.append(math.nan)  # no imputer: a NaN never reaches the graph (refused)
            elif column.categories is not None:
                fills.append(float(column.categories.index(str(column.fill))))
            else:
                fills.append(float(column.fill))
        nan, imputed = g.name(), g.name()
        g.nodes.append(helper.make_node("IsNaN", [current], [nan]))
        g.nodes.append(helper.make_node("Where", [nan, g.constant([fills]), current], [imputed]))
        current = imputed
    if not any(c.encoding == "one_hot" for c in columns):
        return current
    parts = []
    for index, column in enumerate(columns):
        picked = g.name()
        indices = g.name()
        g.initializers.append(numpy_helper.from_array(np.asarray([index], dtype=np.int64), indices))
        g.nodes.append(helper.make_node("Gather", [current, indices], [picked], axis=1))
        if column.encoding != "one_hot":
            parts.append(picked)
            continue
        assert column.categories is not None
        hits, widened = g.name(), g.name()
        codes = g.constant([list(map(float, range(len(column.categories))))])
        g.nodes.append(helper.make_node("Equal", [picked, codes], [hits]))
        g.nodes.append(helper.make_node("Cast", [hits], [widened], to=TensorProto.DOUBLE))
        parts.append(widened)
    out = g.name()
    g.nodes.append(helper.make_node("Concat", parts, [out], axis=1))
    return out


# --- the proof -----------------------------------------------------------------------------


def decorate(rows: np.ndarray, features: Sequence[dict[str, Any]], seed: int) -> np.ndarray:
    """Coded generated rows with the cases every proof covers: in the second half (the scattered
    rows) each categorical column's codes are drawn uniformly among its categories (and -1, an
    unseen one, under ``unseen: ignore``), and one value in ten of a column that allows missing
    values is missing (NaN); the first rows then hold each category of every categorical column
    in turn (and the unseen code), one missing value in each column that allows it and, next to
    it, the value it is imputed with (the boundary both sides must answer alike), and a row
    missing every value that may be missing. Plain features are left as they are (a plain model's
    rows are unchanged)."""
    import numpy as np

    rows = rows.copy()
    rng = np.random.default_rng(seed)
    half = len(rows) // 2

    def codes(feature: dict[str, Any]) -> list[int]:
        low = -1 if feature.get("unseen") == "ignore" else 0
        return list(range(low, len(feature["categories"])))

    for index, feature in enumerate(features):
        if feature.get("dtype") == "category":
            rows[half:, index] = rng.choice(codes(feature), size=len(rows) - half)
        if feature.get("missing"):
            rows[half:, index][rng.random(len(rows) - half) < 0.1] = np.nan
    categorical = [i for i, f in enumerate(features) if f.get("dtype") == "category"]
    nullable = [i for i, f in enumerate(features) if f.get("missing")]
    cycle = max((len(codes(features[i])) for i in categorical), default=0)
    special = 0
    for turn in range(cycle):
        for index in categorical:
            options = codes(features[index])
            rows[special, index] = options[turn % len(options)]
        special += 1
    for index in nullable:
        rows[special, index] = np.nan
        rows[special + 1, index] = _fill_code(features[index])  # the value a NaN is imputed with
        special += 2
    if nullable:
        rows[special, nullable] = np.nan
    return rows


def _fill_code(feature: dict[str, Any]) -> float:
    """The coded value a feature's missing value is imputed with (its category's index)."""
    fill = feature["missing"]["fill"]
    if feature.get("dtype") == "category":
        return float(feature["categories"].index(fill))
    return float(fill)


def decode(rows: np.ndarray, features: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Coded rows back as the values a user sends, one column per feature: a category's text
    (``<unseen>``, or it with more ``_``, for code -1), numbers as they are, NaN for a missing
    value (what read_split gives for an empty cell, and what SimpleImputer takes as missing)."""
    import math

    import pandas as pd

    data: dict[str, list[Any]] = {}
    for index, feature in enumerate(features):
        column = rows[:, index].tolist()
        if feature.get("dtype") == "category":
            unseen = UNSEEN_TEXT
            while unseen in feature["categories"]:
                unseen += "_"
            names = feature["categories"]
            data[feature["name"]] = [
                math.nan if math.isnan(v) else (unseen if v < 0 else names[int(v)]) for v in column
            ]
        else:
            data[feature["name"]] = [None if math.isnan(v) else v for v in column]
    frame = pd.DataFrame(data)
    for feature in features:
        if feature.get("dtype") != "category":
            frame[feature["name"]] = frame[feature["name"]].astype("float64")
    return frame
