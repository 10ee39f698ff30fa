"""The records protocol: ``POST /predict``, rows as JSON records in, labels and probabilities out.

``{"instances": [{feature: number, ...}, ...]}`` → ``{"model_name": name, "model_version":
version, "classes": [...], "labels": [...], "probabilities": [[...], ...]}`` plus the
``X-Model-Provenance-Id`` header (the model named as v2 names it; the full provenance is one
request away, ``serving.provenance``); for a regression's model (``Model.regression``)
``{"model_name": name, "model_version": version, "predictions": [number, ...]}``, one predicted
value a row and no classes or probabilities (:func:`predictions_answer`).

Two ways in, one answer:

- **fast** (``RecordsDecoder``): msgspec decodes the body against a schema made from the model's
  features (one slotted struct per row, a float field per feature, no other keys), checking types
  as it reads: numbers only (booleans refused), every feature present, nothing unknown, nothing
  after the body. Parsing with a general JSON parser would build a dict per row and a key and a
  float object per value, all walked again to check them: for a 1,000-row body that is most of the
  request's CPU time. One row goes on to ``Model.predict_one`` (plain Python, no numpy call) when
  the model offers it.
- **careful** (``careful_matrix``): any JSON (``parse_json``), then checked row by row, naming the
  first problem. A model with a categorical feature or one that may be missing (the card says,
  ``Model.plain`` is false) always takes this path: a category is a JSON string, a missing value
  JSON null (or, for a category, ""), each decoded by modelcard.runtime.encode_column into the
  graph's coded rows.

The fast path never decides that a request is bad: when msgspec refuses a body, ``rows`` answers
None and the careful path takes the request and names the problem, so good and bad input get the
answers the careful path alone would give. tests/serving/test_serving_records.py holds the line:
whatever the fast path accepts, the careful path accepts too, with the same matrix bit for bit,
on generated bodies; and the one-row answer equals the matrix path's.
"""

from __future__ import annotations

import types
from functools import lru_cache
from itertools import chain
from typing import Any

import msgspec
import numpy as np
from msgspec.structs import astuple

from modelcard.runtime import InputError, Matrix, encode_rows
from serving.errors import ApiError, invalid
from serving.model import Model
from serving.protocols.common import (
    NUMBER_TYPES,
    bad_value,
    check_rows,
    describe,
    finite,
    parse_json,
    score,
    score_one,
)
from serving.provenance import HEADER
from serving.state import Answer, Call, ServerState

# --- the fast path ---------------------------------------------------------------------------


class RecordsDecoder:
    """Decodes records bodies for one feature list (the model's, in model order)."""

    def __init__(self, features: tuple[str, ...]) -> None:
        """Raises ValueError for no features, or a name msgspec refuses as a key."""
        if not features:
            raise ValueError("a records decoder needs at least one feature")
        self.width = len(features)
        # Struct fields need identifiers; the JSON keys are the feature names, whatever they are.
        fields = [f"f{index}" for index in range(self.width)]
        row = msgspec.defstruct(
            "Row",
            [(field, float) for field in fields],
            rename=dict(zip(fields, features, strict=True)),
            forbid_unknown_fields=True,
            gc=False,
        )
        body = msgspec.defstruct(
            "RecordsBody",
            [("instances", types.GenericAlias(list, (row,)))],
            forbid_unknown_fields=True,
        )
        self._decoder = msgspec.json.Decoder(body)

    def rows(self, raw: bytes) -> list[Any] | None:
        """The rows of a well-formed records body, or None: let the careful path look at it."""
        try:
            decoded = self._decoder.decode(raw)
        except (msgspec.MsgspecError, UnicodeDecodeError):  # a key not UTF-8: msgspec's own error
            return None
        rows: list[Any] = decoded.instances  # type: ignore[attr-defined]
        return rows

    @staticmethod
    def values(row: Any) -> tuple[float, ...]:
        """One decoded row's values, features in model order (the struct's field order)."""
        return astuple(row)

    def matrix(self, rows: list[Any]) -> Matrix:
        """Decoded rows as a float64 matrix, features in model order."""
        flat = np.fromiter(
            chain.from_iterable(map(astuple, rows)),
            dtype=np.float64,
            count=len(rows) * self.width,
        )
        return flat.reshape(len(rows), self.width)


@lru_cache(maxsize=4)
def decoder_for(features: tuple[str, ...]) -> RecordsDecoder | None:
    """The decoder for a feature list, built once per list; None when msgspec cannot take the
    names as keys (a quote, a backslash or a control character in one): then every request takes
    the careful path."""
    try:
        return RecordsDecoder(features)
    except ValueError:
        return None


# --- the careful path ------------------------------------------------------------------------


def careful_matrix(
    raw: bytes,
    features: tuple[str, ...],
    max_rows: int,
    columns: tuple[dict[str, Any], ...] | None = None,
) -> Matrix:
    """The body parsed as any JSON, then checked piece by piece; raises the first problem.
    ``columns`` (the card's feature entries of a model that is not plain) decode each value by
    its feature's kind instead: modelcard.runtime.encode_column."""
    body = parse_json(raw)
    if type(body) is not dict or "instances" not in body:
        raise invalid(
            'the body must be an object {"instances": [{feature: number, ...}]}', "instances"
        )
    if len(body) != 1:
        extra = sorted(k for k in body if k != "instances")[0]
        raise invalid(f"unknown key {extra!r}; the body has only 'instances'", extra)
    return records(body["instances"], features, max_rows, columns)


def records(
    instances: Any,
    features: tuple[str, ...],
    max_rows: int,
    columns: tuple[dict[str, Any], ...] | None = None,
) -> Matrix:
    """``[{feature: number, ...}, ...]`` → matrix; every feature present, no others. With
    ``columns``, a categorical feature's value is a string and one that may be missing may be
    null (:func:`coded_records`)."""
    if not isinstance(instances, list):
        raise invalid("'instances' must be a list of objects, one per row", "instances")
    check_rows(len(instances), max_rows)
    expected = frozenset(features)
    rows: list[list[Any]] = []
    for index, row in enumerate(instances):
        if type(row) is not dict or row.keys() != expected:
            raise _record_error(row, index, features)
        values = [row[name] for name in features]
        if columns is not None:
            rows.append(values)
            continue
        if not NUMBER_TYPES.issuperset(map(type, values)):
            name = next(n for n in features if type(row[n]) not in NUMBER_TYPES)
            raise bad_value(row[name], f"instances[{index}].{name}")
        rows.append(values)
    if columns is not None:
        return coded_records(rows, columns)
    try:
        matrix = np.array(rows, dtype=np.float64)
    except OverflowError as exc:
        raise invalid(f"a value is out of the float64 range: {exc}", "instances") from exc
    return finite_records(matrix, features)


def coded_records(rows: list[list[Any]], columns: tuple[dict[str, Any], ...]) -> Matrix:
    """Rows of values (features in model order) as the graph's coded rows: a 422 naming the
    first value its feature does not take (a number where a category is expected, an unseen
    category under ``unseen: error``, null where no value may be missing)."""
    try:
        return encode_rows(columns, rows)
    except InputError as exc:
        where = f"instances[{exc.row}].{exc.column}"
        raise invalid(f"{where} {exc.message}", where) from None


def finite_records(matrix: Matrix, features: tuple[str, ...]) -> Matrix:
    """``matrix`` (rows of records) when every value is finite; else a 422 naming the first."""
    return finite(matrix, lambda r, c: f"instances[{r}].{features[c]}")


def _record_error(row: Any, index: int, features: tuple[str, ...]) -> ApiError:
    where = f"instances[{index}]"
    if not isinstance(row, dict):
        return invalid(f"{where} must be an object of feature: number, got {describe(row)}", where)
    missing = [name for name in features if name not in row]
    if missing:
        return invalid(
            f"{where} lacks the feature {missing[0]!r} ({len(missing)} missing); "
            f"expected features: {', '.join(features)}",
            f"{where}.{missing[0]}",
        )
    unknown = sorted(str(key) for key in row if key not in set(features))
    return invalid(
        f"{where} has the unknown feature {unknown[0]!r}; expected features: {', '.join(features)}",
        f"{where}.{unknown[0]}",
    )


# --- the endpoint ----------------------------------------------------------------------------


def predictions_answer(model: Model, values: Any) -> Answer:
    """A regression's answer: the predicted value of each row (a sequence or a 1-d array), in
    request order."""
    if isinstance(values, np.ndarray):
        values = np.ascontiguousarray(values)  # orjson serialises contiguous arrays only
    payload = {
        "model_name": model.name,
        "model_version": model.provenance.version,
        "predictions": values,
    }
    return Answer(payload, {HEADER: model.provenance_id})


def predict(server: ServerState, call: Call) -> Answer:
    """``POST /predict``: one records body answered; raises ``ApiError``."""
    return predict_body(server, call.body())


def predict_body(server: ServerState, raw: bytes) -> Answer:
    """The answer to one /predict body: the fast path when it takes the body, else the careful
    one (the one place that decides which)."""
    model = server.require_model(server.model.name)
    decoder = decoder_for(model.feature_names) if model.plain else None
    rows = None if decoder is None else decoder.rows(raw)
    if decoder is None or rows is None:
        columns = None if model.plain else model.columns
        x = careful_matrix(raw, model.feature_names, server.max_rows, columns)
    else:
        check_rows(len(rows), server.max_rows)
        if len(rows) == 1:
            answer = _one_row(model, server, decoder.values(rows[0]))
            if answer is not None:
                return answer
        x = finite_records(decoder.matrix(rows), model.feature_names)
    proba = score(server, model, x, lambda row: f"instances[{row}]")
    if model.regression:
        return predictions_answer(model, proba[:, 0])
    return _answer(model, model.labels(proba), proba)


def _one_row(model: Model, server: ServerState, values: tuple[float, ...]) -> Answer | None:
    """The common single-row request in plain Python (no numpy call), or None to go the general
    way (the model has no plain-Python path, or a value is not finite)."""
    scored = score_one(server, model, values)
    if scored is None:
        return None
    proba, best = scored
    if model.regression:
        return predictions_answer(model, proba[:1])
    return _answer(model, [model.classes[best]], [proba])


def _answer(model: Model, labels: Any, probabilities: Any) -> Answer:
    """The one shape of a /predict answer: the model named, its classes, labels, probabilities;
    the provenance id in the header."""
    payload = {
        "model_name": model.name,
        "model_version": model.provenance.version,
        "classes": model.classes,
        "labels": labels,
        "probabilities": probabilities,
    }
    return Answer(payload, {HEADER: model.provenance_id})
