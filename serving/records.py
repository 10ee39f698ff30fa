"""The /predict happy path: a records body decoded straight into typed rows, in one pass.

Parsing ``{"instances": [{feature: number, ...}, ...]}`` with a general JSON parser builds a dict
per row and a key and a float object per value, which then all have to be walked to check them:
for a 1,000-row body that is most of the request's CPU time. msgspec decodes the body against a
schema made from the model's features instead (one slotted struct per row, a float field per
feature, no other keys), checking types as it reads: numbers only (booleans refused), every
feature present, nothing unknown, nothing after the body.

This module never decides that a request is bad. When msgspec refuses a body, ``rows`` answers
None and the careful path (``parse_json`` + ``inputs.records``) takes the request and names the
problem, so good and bad input get the answers the careful path alone would give. A property test
(tests/serving/test_serving_records.py) checks the contract that makes that safe: whatever this
module accepts, the careful path accepts too, with the same matrix.
"""

from __future__ import annotations

import types
from functools import lru_cache
from itertools import chain
from typing import Any

import msgspec
import numpy as np
from msgspec.structs import astuple

from serving.compiled import Matrix


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
        except msgspec.MsgspecError:
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
