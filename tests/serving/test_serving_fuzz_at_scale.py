"""Seeded fuzzing at scale through the real stack (Nginx -> uWSGI -> the app): 10,000 generated
requests to every endpoint that takes a body, in the e2e tier of ``make test`` (so CI runs it).

The endpoints are the POST operations of serving/openapi.json: ``/predict`` (records),
``/v2/models/{name}/infer`` and ``/v2/models/{name}/versions/{version}/infer`` (v2 tensors, JSON
and the binary extension). Each gets three generators, ``valid``, ``boundary`` and ``malformed``
(``PLAN``: how many each sends). A generator is a function of its case index: case ``i`` is drawn
from ``random.Random`` seeded with the generator's name and ``i``, so every machine and run sends
the same requests, and a failure names the generator and index that rebuild it. Each case says
what it must get:

- valid: 200 with the endpoint's answer shape (a label and a probability row per row sent, the
  rows summing to 1; the v2 outputs asked for, with their shapes);
- boundary (limits and extremes: the row limit and one past it, the body limit and one byte past
  it, the largest and smallest floats, an empty batch, ...): the status that boundary has;
- malformed (a valid body mutated: cut short, wrong types, missing, extra or unknown members,
  NaN and infinity, another model or version, a bad binary header, ...): its 4xx.

Every answer below 500; every 4xx with the one JSON error shape (serving/errors.py), its status
and the request id it was sent with. The cases go to the session's one stack over ``CONNECTIONS``
keep-alive connections at once (under a minute for all three on a shared 2-core machine). Then
each generator asserts that it sent its count and that Nginx's access log holds exactly its
request ids; the stack must still answer a known row as the training pipeline does, and no
worker may have logged an unhandled error. ``make fuzz`` (test_serving_fuzz.py) is the deeper,
slower run: hypothesis and schemathesis, with shrinking.
"""

from __future__ import annotations

import http.client
import json
import math
import random
import re
import struct
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import PROVENANCE
from serving_testkit import CLASS_NAMES, MODEL_NAME, TinyModel

from devstack.stack import Stack

pytestmark = pytest.mark.e2e
ERROR_KEYS = {"error", "code", "status", "field", "request_id"}
#: Generated requests per endpoint, at least (the issue's floor); PLAN must reach it.
PER_ENDPOINT = 10_000
#: Keep-alive connections sending at once.
CONNECTIONS = 4
VERSION = PROVENANCE["MODELOPS_MODEL_VERSION"]
INFER = f"/v2/models/{MODEL_NAME}/infer"
VERSIONED_INFER = f"/v2/models/{MODEL_NAME}/versions/{VERSION}/infer"
#: Nginx's client_max_body_size and the app's MODELOPS_MAX_ROWS default.
BODY_LIMIT = 10 * 1024 * 1024
MAX_ROWS = 10_000
OPENAPI = Path(__file__).resolve().parents[2] / "serving" / "openapi.json"


@dataclass
class Case:
    """One generated request and what it must get: ``expect`` (the statuses allowed) and, for a
    200, ``rows`` rows of answer (``outputs``: the v2 outputs asked for)."""

    path: str
    body: bytes
    expect: frozenset[int]
    rows: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    outputs: tuple[str, ...] = ("predict", "predict_proba")
    what: str = ""


@dataclass
class Generator:
    """``count`` cases of one kind for one endpoint; ``make(rng, index)`` draws case ``index``.
    ``sent`` counts the answers received (the run checks it against ``count``)."""

    endpoint: str
    kind: str
    count: int
    make: Callable[[random.Random, int], Case]
    sent: int = 0

    @property
    def name(self) -> str:
        return f"{self.endpoint} {self.kind}"

    @property
    def id_prefix(self) -> str:
        return "fuzz-" + self.name.replace("/", ".").replace(" ", "-").replace("{", "").replace(
            "}", ""
        )

    def case(self, index: int) -> Case:
        return self.make(random.Random(f"{self.name}:{index}"), index)  # noqa: S311 (not crypto)


# --- records (/predict) -----------------------------------------------------------------------


class Rows:
    """Rows drawn near the tiny model's test rows: each value scaled by up to +-50 %."""

    def __init__(self, model: TinyModel) -> None:
        self.features = list(model.features)
        self.x = model.x_test.tolist()

    def matrix(self, rng: random.Random, n: int, digits: int = 0) -> list[list[float]]:
        """``n`` rows; ``digits``: significant digits kept (a shorter body), else all."""
        rows = []
        for _ in range(n):
            base = self.x[rng.randrange(len(self.x))]
            row = [v * (0.5 + rng.random()) for v in base]
            rows.append([float(f"{v:.{digits}g}") for v in row] if digits else row)
        return rows

    def records(self, rng: random.Random, n: int, digits: int = 0) -> list[dict[str, Any]]:
        """``n`` rows as records: keys in any order, a few values written as integers."""
        rows = []
        for values in self.matrix(rng, n, digits):
            pairs = list(zip(self.features, values, strict=True))
            rng.shuffle(pairs)
            row = dict(pairs)
            for feature in rng.sample(self.features, rng.randrange(3)):
                row[feature] = round(row[feature])
            rows.append(row)
        return rows


def dumps(rng: random.Random, value: Any) -> bytes:
    """JSON in one of the layouts a client may send (compact, spaced, indented, padded)."""
    style = rng.randrange(4)
    if style == 0:
        return json.dumps(value, separators=(",", ":")).encode()
    if style == 1:
        return json.dumps(value).encode()
    if style == 2:
        return json.dumps(value, indent=1).encode()
    return b" \r\n\t" + json.dumps(value).encode() + b"\n "


def row_sizes(rng: random.Random) -> int:
    """Mostly one row (the common request), sometimes a batch, now and then 64."""
    return 64 if rng.random() < 0.02 else rng.choice([1, 1, 1, 2, 3, 5, 8])


def records_valid(rows: Rows) -> Callable[[random.Random, int], Case]:
    def make(rng: random.Random, index: int) -> Case:
        n = row_sizes(rng)
        body = dumps(rng, {"instances": rows.records(rng, n)})
        return Case("/predict", body, frozenset({200}), rows=n, what=f"{n} rows")

    return make


#: Finite values at float64's ends. Rows of them get a 200 of the right shape, but the tiny
#: model's scaler overflows on them and its probabilities come out NaN (answered as null): what
#: the app should answer then is not decided here, so those cases check the shape only.
EXTREMES = [1.7976931348623157e308, -1.7976931348623157e308, 5e-324, -5e-324, 0.0, -0.0, 2**53]


def records_boundary(rows: Rows) -> Callable[[random.Random, int], Case]:
    """Limits and extremes; the heavy ones (10,000 rows, a 10 MiB body) a few times a run."""

    def make(rng: random.Random, index: int) -> Case:
        def body(instances: Any) -> bytes:
            return json.dumps({"instances": instances}).encode()

        if index % HEAVY in (HEAVY - 2, HEAVY - 1):  # the row limit, and a row past it (under
            n = MAX_ROWS + index % HEAVY - (HEAVY - 2)  # the body limit)
            many = rows.records(rng, n, digits=2)
            return Case("/predict", body(many), _ok if n == MAX_ROWS else _too_many, n, what="max")
        if index % HEAVY in (HEAVY - 4, HEAVY - 3):  # a body of exactly the limit (the app's
            size = BODY_LIMIT + index % HEAVY - (HEAVY - 4)  # 422), a byte over it (Nginx's 413)
            padded = b'{"instances": [' + b" " * (size - 17) + b"]}"
            expect = frozenset({422 if size == BODY_LIMIT else 413})
            return Case("/predict", padded, expect, what=f"{size}-byte body")
        kind = rng.randrange(6)
        if kind == 0:  # every value an extreme float: probabilities summing to 1, or a 422
            row = {f: rng.choice(EXTREMES) for f in rows.features}  # naming the row (not null)
            return Case("/predict", body([row]), _ok | _invalid, 1, what="extreme values")
        if kind == 1:
            return Case("/predict", body([]), frozenset({422}), what="empty batch")
        if kind == 2:  # an integer past float64's range
            (row,) = rows.records(rng, 1)
            row[rng.choice(rows.features)] = 10**400 * rng.choice([1, -1])
            return Case("/predict", body([row]), frozenset({422}), what="int past float64")
        if kind == 3:  # an integer float64 only rounds
            (row,) = rows.records(rng, 1)
            row[rng.choice(rows.features)] = 2**70 + rng.randrange(1000)
            return Case("/predict", body([row]), _ok, 1, what="huge int")
        if kind == 4:  # a float's shortest and longest spellings
            (row,) = rows.records(rng, 1)
            text = body([row]).replace(b": ", b":")
            feature = rng.choice(rows.features).encode()
            start = text.index(b'"' + feature + b'":') + len(feature) + 3
            end = min(i for i in (text.find(b",", start), text.find(b"}", start)) if i >= 0)
            spelled = rng.choice([b"1e0", b"0.000000000000000000001e21", b"-0", b"1E+2", b"0.5e-3"])
            return Case("/predict", text[:start] + spelled + text[end:], _ok, 1, what="spelling")
        n = rng.randrange(1, 40)  # many rows, one of them the same row repeated
        return Case("/predict", body(rows.records(rng, 1) * n), _ok, n, what="repeated row")

    return make


#: The heavy boundary cases (the row limit, the body limit) are the last few of every HEAVY.
HEAVY = 1000
_ok = frozenset({200})
_bad_json = frozenset({400})
_invalid = frozenset({422})
_too_many = frozenset({413})


def records_malformed(rows: Rows) -> Callable[[random.Random, int], Case]:
    """A valid body with one thing wrong: cut short, or a member of the wrong kind."""

    def make(rng: random.Random, index: int) -> Case:
        n = rng.randrange(1, 4)
        instances = rows.records(rng, n)
        kind = rng.randrange(13)
        row = instances[rng.randrange(n)]
        feature = rng.choice(rows.features)
        if kind == 0:  # cut short: no proper prefix of compact JSON is JSON
            text = json.dumps({"instances": instances}, separators=(",", ":")).encode()
            return Case("/predict", text[: rng.randrange(len(text))], _bad_json, what="cut")
        if kind == 1:  # bytes that are not JSON (a digit or bracket first could be)
            junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
            return Case("/predict", b"\xff" + junk, _bad_json, what="junk")
        if kind == 2:
            row.pop(feature)
            what = "missing feature"
        elif kind == 3:
            row[feature.upper() + "_x"] = 1.0
            what = "unknown feature"
        elif kind == 4:
            row[feature] = rng.choice(["1.0", None, [1.0], {"v": 1.0}, True, False, ""])
            what = "not a number"
        elif kind == 5:
            instances[rng.randrange(n)] = rng.choice([[1.0] * 30, 1.0, "row", None])
            what = "row not an object"
        elif kind == 6:
            body: Any = rng.choice([instances, 1, "instances", None, True])
            return Case("/predict", json.dumps(body).encode(), _invalid, what="not an object")
        elif kind == 7:
            body = {"instances": instances, rng.choice(["x", "inputs", "Instances"]): 1}
            return Case("/predict", json.dumps(body).encode(), _invalid, what="extra key")
        elif kind == 8:
            body = {rng.choice(["instance", "inputs", "rows"]): instances}
            return Case("/predict", json.dumps(body).encode(), _invalid, what="no instances")
        elif kind == 9:
            body = {"instances": rng.choice([row, 1, "x", None])}
            return Case("/predict", json.dumps(body).encode(), _invalid, what="not a list")
        elif kind == 10:  # NaN and the infinities: Python's JSON writes their literals
            row[feature] = rng.choice([math.nan, math.inf, -math.inf])
            what = "not finite"
        elif kind == 11:  # a string that is not UTF-8
            text = json.dumps({"instances": instances}).encode()
            return Case("/predict", text.replace(b'"', b'"\xc3\x28', 1), _bad_json, what="utf-8")
        else:  # another model, or the records body sent to the v2 route
            text = json.dumps({"instances": instances}).encode()
            path = rng.choice(["/v2/models/other/infer", INFER])
            expect = frozenset({404}) if "other" in path else _invalid
            return Case(path, text, expect, what="wrong endpoint")
        return Case("/predict", json.dumps({"instances": instances}).encode(), _invalid, what=what)

    return make


# --- v2 tensors (/v2/models/{name}[/versions/{version}]/infer) ------------------------------------

V2_TYPES = ["FP64", "FP32", "FP16", "INT64", "INT32", "INT16", "UINT64", "UINT32"]


def v2_request(
    rng: random.Random, rows: Rows, n: int, path: str
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """A valid infer body for ``n`` rows in one of the protocol's layouts, and the outputs it asks
    for."""
    matrix = rows.matrix(rng, n)
    layout = rng.randrange(3)
    if layout == 0:  # one [n, 30] tensor, flat
        inputs = [{"name": "x", "shape": [n, 30], "datatype": "FP64", "data": flat(matrix)}]
    elif layout == 1:  # nested, integer data for an integer datatype
        datatype = rng.choice(V2_TYPES)
        data: Any = matrix
        if datatype.startswith(("INT", "UINT")):
            data = [[abs(round(v)) for v in row] for row in matrix]
        inputs = [{"name": "input-0", "shape": [n, 30], "datatype": datatype, "data": data}]
    else:  # one [n] tensor per feature, in any order
        columns = list(zip(rows.features, zip(*matrix, strict=True), strict=True))
        rng.shuffle(columns)
        inputs = [
            {"name": name, "shape": [n], "datatype": "FP64", "data": list(column)}
            for name, column in columns
        ]
    request: dict[str, Any] = {"inputs": inputs}
    if rng.random() < 0.3:
        request["id"] = f"req-{rng.randrange(10**6)}"
    outputs: tuple[str, ...] = ("predict", "predict_proba")
    if rng.random() < 0.3:
        outputs = tuple(rng.sample(outputs, rng.randrange(0, 3)))
        request["outputs"] = [{"name": name} for name in outputs]
    return request, outputs


def binary_case(rng: random.Random, rows: Rows, n: int, path: str) -> Case:
    """The binary tensor data extension: a JSON header, then little-endian FP64 data."""
    data = struct.pack(f"<{30 * n}d", *flat(rows.matrix(rng, n)))
    tensor = {"name": "x", "shape": [n, 30], "datatype": "FP64"}
    tensor["parameters"] = {"binary_data_size": len(data)}
    header = json.dumps({"inputs": [tensor]}).encode()
    return Case(
        path,
        header + data,
        _ok,
        n,
        headers={"Inference-Header-Content-Length": str(len(header))},
        what="binary",
    )


def v2_valid(rows: Rows, path: str) -> Callable[[random.Random, int], Case]:
    def make(rng: random.Random, index: int) -> Case:
        n = row_sizes(rng)
        if rng.random() < 0.15:
            return binary_case(rng, rows, n, path)
        request, outputs = v2_request(rng, rows, n, path)
        return Case(path, dumps(rng, request), _ok, n, outputs=outputs, what=f"{n} rows")

    return make


def v2_boundary(rows: Rows, path: str) -> Callable[[random.Random, int], Case]:
    def make(rng: random.Random, index: int) -> Case:
        def body(shape: list[int], data: Any, datatype: str = "FP64") -> bytes:
            tensor = {"name": "x", "shape": shape, "datatype": datatype, "data": data}
            return json.dumps({"inputs": [tensor]}).encode()

        if index % HEAVY in (HEAVY - 2, HEAVY - 1):  # the row limit, and one row past it
            n = MAX_ROWS + index % HEAVY - (HEAVY - 2)
            data = [v for row in rows.matrix(rng, n, digits=3) for v in row]
            expect = _ok if n == MAX_ROWS else _too_many
            return Case(path, body([n, 30], data), expect, n, what=f"{n} rows")
        kind = rng.randrange(5)
        if kind == 0:
            data = [rng.choice(EXTREMES) for _ in range(30)]
            return Case(path, body([1, 30], data), _ok | _invalid, 1, what="extreme values")
        if kind == 1:
            return Case(path, body([0, 30], []), _invalid, what="empty batch")
        if kind == 2:  # an explicit empty output list: an answer with no outputs
            request = {"inputs": json.loads(body([1, 30], rows.matrix(rng, 1)[0]))["inputs"]}
            request["outputs"] = []
            return Case(path, json.dumps(request).encode(), _ok, 1, outputs=(), what="no outputs")
        if kind == 3:  # the smallest binary part: one row
            return binary_case(rng, rows, 1, path)
        return Case(path, body([1, 30], rows.matrix(rng, 1)[0], "FP32"), _ok, 1, what="fp32")

    return make


def v2_malformed(rows: Rows, path: str) -> Callable[[random.Random, int], Case]:
    def make(rng: random.Random, index: int) -> Case:
        n = rng.randrange(1, 4)
        request, _ = v2_request(rng, rows, n, path)
        tensor = request["inputs"][rng.randrange(len(request["inputs"]))]
        kind = rng.randrange(14)
        text = json.dumps(request, separators=(",", ":")).encode()
        if kind == 0:
            return Case(path, text[: rng.randrange(len(text))], _bad_json, what="cut")
        if kind == 1:
            tensor["datatype"] = rng.choice(["BOOL", "BYTES", "fp64", "", "FP128", 64, None])
            what = "datatype"
        elif kind == 2:  # a shape that does not hold the data
            tensor["shape"] = [dim + rng.choice([1, 2, 7]) for dim in tensor["shape"]]
            what = "shape and data disagree"
        elif kind == 3:
            tensor["shape"] = rng.choice([[-1, 30], [n, -30], "n", None, [n, 30.5], []])
            what = "bad shape"
        elif kind == 4:
            tensor["data"] = rng.choice([["1"] * 30, [None] * 30, "data", None, {"v": 1}])
            what = "bad data"
        elif kind == 5:
            tensor.pop(rng.choice(["name", "shape", "datatype", "data"]))
            what = "missing member"
        elif kind == 6:
            request["inputs"] = rng.choice([[], {}, "x", None, [1]])
            what = "inputs"
        elif kind == 7:
            request["id"] = rng.choice([1, None, [], {}])
            what = "id"
        elif kind == 8:
            request["outputs"] = rng.choice([[{"name": "proba"}], "predict", [1], {}])
            what = "outputs"
        elif kind == 9:  # NaN and the infinities
            values = tensor["data"]
            while isinstance(values[0], list):
                values = values[0]
            values[0] = rng.choice([math.nan, math.inf, -math.inf])
            what = "not finite"
        elif kind == 10:  # another model, or a version that is not served
            other = rng.choice(
                ["/v2/models/other/infer", f"/v2/models/{MODEL_NAME}/versions/v0/infer"]
            )
            return Case(other, text, frozenset({404}), what="not served")
        elif kind == 11:  # a binary header that does not fit
            length = rng.choice(["x", "-1", "0", str(len(text) + 1), "1.5"])
            return Case(
                path,
                text,
                _bad_json,
                headers={"Inference-Header-Content-Length": length},
                what="binary header",
            )
        elif kind == 12:  # a binary part that overruns the body
            data = struct.pack("<30d", *rows.matrix(rng, 1)[0])
            part = {"name": "x", "shape": [1, 30], "datatype": "FP64"}
            part["parameters"] = {"binary_data_size": len(data) + rng.choice([1, 8, -1])}
            header = json.dumps({"inputs": [part]}).encode()
            return Case(
                path,
                header + data,
                _invalid,
                headers={"Inference-Header-Content-Length": str(len(header))},
                what="binary overrun",
            )
        else:  # a feature too few, or one too many
            if tensor["shape"] == [n]:
                request["inputs"].append(rng.choice([tensor, {**tensor, "name": "extra"}]))
            else:
                tensor["shape"] = [n, 29]
                tensor["data"] = [v for i, v in enumerate(flat(tensor["data"])) if i % 30]
            what = "feature count"
        return Case(path, json.dumps(request).encode(), _invalid, what=what)

    return make


def flat(data: Any) -> list[Any]:
    """Nested ``[[...], ...]`` data as one row-major list (flat data as it is)."""
    return [v for row in data for v in row] if data and isinstance(data[0], list) else list(data)


# --- the plan, the run and its checks ------------------------------------------------------------

#: Cases per generator kind; for each endpoint they add up to PER_ENDPOINT.
PLAN = {"valid": 5_000, "boundary": 2_000, "malformed": 3_000}
MAKERS: dict[str, dict[str, Callable[[Rows], Callable[[random.Random, int], Case]]]] = {
    "/predict": {
        "valid": records_valid,
        "boundary": records_boundary,
        "malformed": records_malformed,
    },
    **{
        path: {
            "valid": lambda rows, p=path: v2_valid(rows, p),
            "boundary": lambda rows, p=path: v2_boundary(rows, p),
            "malformed": lambda rows, p=path: v2_malformed(rows, p),
        }
        for path in (INFER, VERSIONED_INFER)
    },
}


def body_endpoints() -> list[str]:
    """The paths of serving/openapi.json's operations that take a body, filled in for the
    served model: the endpoints that must each get PER_ENDPOINT cases."""
    document = json.loads(OPENAPI.read_text())
    return sorted(
        path.replace("{name}", MODEL_NAME).replace("{version}", VERSION)
        for path, operations in document["paths"].items()
        if any(isinstance(op, dict) and "requestBody" in op for op in operations.values())
    )


def generators(model: TinyModel, plan: dict[str, int] = PLAN) -> list[Generator]:
    rows = Rows(model)
    return [
        Generator(endpoint, kind, count, MAKERS[endpoint][kind](rows))
        for endpoint in MAKERS
        for kind, count in plan.items()
    ]


def check_answer(case: Case, status: int, headers: http.client.HTTPMessage, raw: bytes) -> None:
    """What ``case`` must get (module docstring); an AssertionError names what it got."""
    assert status < 500, f"a {status}"
    assert status in case.expect, f"{status}, expected {sorted(case.expect)}"
    assert (headers.get("Content-Type") or "").startswith("application/json"), "not JSON"
    body = json.loads(raw)
    if status >= 400:
        assert set(body) == ERROR_KEYS, f"not the error shape: {sorted(body)}"
        assert body["status"] == status, "status differs"
        assert body["request_id"] == headers.get("X-Request-ID"), "request id"
        return
    if case.path == "/predict":
        assert body["labels"] is not None and len(body["labels"]) == case.rows, "labels"
        assert set(body["labels"]) <= set(CLASS_NAMES), "labels"
        proba = np.asarray(body["probabilities"], dtype=float)
        assert proba.shape == (case.rows, len(CLASS_NAMES)), f"probabilities {proba.shape}"
        assert np.allclose(proba.sum(axis=1), 1), "probabilities' sums"
        return
    assert body["model_name"] == MODEL_NAME, "model_name"
    outputs = {output["name"]: output for output in body["outputs"]}
    assert sorted(outputs) == sorted(case.outputs), f"outputs {sorted(outputs)}"
    if "predict" in outputs:
        assert outputs["predict"]["shape"] == [case.rows], "predict shape"
        assert len(outputs["predict"]["data"]) == case.rows, "predict data"
    if "predict_proba" in outputs:
        assert outputs["predict_proba"]["shape"] == [case.rows, 2], "predict_proba shape"
        proba = np.asarray(outputs["predict_proba"]["data"], dtype=float)
        assert proba.shape == (2 * case.rows,), "predict_proba data"
        assert np.allclose(proba.reshape(-1, 2).sum(axis=1), 1), "sums"


@dataclass
class Failure:
    generator: str
    index: int
    what: str
    problem: str
    answer: bytes

    def __str__(self) -> str:
        return (
            f"{self.generator} case {self.index} ({self.what}): {self.problem}; "
            f"answer {self.answer[:300]!r}"
        )


def run(
    host: str, port: int, plan: list[Generator], connections: int = CONNECTIONS
) -> list[Failure]:
    """Send every generator's cases, ``connections`` keep-alive connections at once (one thread
    each, taking every ``connections``-th case of the whole plan), each with X-Request-ID
    ``<generator's id prefix>-<index>``. Returns the failures (at most 20 a connection: past
    that, a connection stops); counts each answer in its generator's ``sent``."""
    work = [(g, index) for g in plan for index in range(g.count)]
    lock = threading.Lock()

    def send(offset: int) -> list[Failure]:
        failures: list[Failure] = []
        connection = http.client.HTTPConnection(host, port, timeout=60)
        try:
            for generator, index in work[offset::connections]:
                case = generator.case(index)
                headers = {
                    "Content-Type": "application/json",
                    **case.headers,
                    "X-Request-ID": f"{generator.id_prefix}-{index}",
                }
                try:
                    connection.request("POST", case.path, case.body, headers)
                    response = connection.getresponse()
                    raw = response.read()
                except (OSError, http.client.HTTPException) as exc:
                    failures.append(Failure(generator.name, index, case.what, repr(exc), b""))
                    connection.close()
                    connection = http.client.HTTPConnection(host, port, timeout=60)
                else:
                    with lock:
                        generator.sent += 1
                    try:
                        check_answer(case, response.status, response.headers, raw)
                    except Exception as exc:  # an answer it cannot even read fails too
                        problem = f"{type(exc).__name__}: {exc}"
                        failures.append(Failure(generator.name, index, case.what, problem, raw))
                    if response.will_close:
                        connection.close()
                        connection = http.client.HTTPConnection(host, port, timeout=60)
                if len(failures) >= 20:
                    break
        finally:
            connection.close()
        return failures

    with ThreadPoolExecutor(connections) as pool:
        return [failure for part in pool.map(send, range(connections)) for failure in part]


def check_plan(plan: list[Generator], endpoints: list[str]) -> None:
    """Every endpoint that takes a body has valid, boundary and malformed generators, which
    together send at least PER_ENDPOINT cases."""
    for endpoint in endpoints:
        kinds = {g.kind: g.count for g in plan if g.endpoint == endpoint}
        assert set(kinds) == {"valid", "boundary", "malformed"}, (endpoint, kinds)
        assert sum(kinds.values()) >= PER_ENDPOINT, (endpoint, kinds)


def check_counts(plan: list[Generator], nginx_log: str) -> None:
    """Each generator sent its count, and Nginx logged exactly its request ids."""
    logged: dict[str, set[str]] = {g.id_prefix: set() for g in plan}
    for line in nginx_log.splitlines():
        if line.startswith('{"time"') and '"request_id":"fuzz-' in line:
            request_id = json.loads(line)["request_id"]
            prefix = request_id.rsplit("-", 1)[0]
            if prefix in logged:
                logged[prefix].add(request_id)
    for g in plan:
        assert g.sent == g.count, f"{g.name}: sent {g.sent} of {g.count}"
        expected = {f"{g.id_prefix}-{index}" for index in range(g.count)}
        assert logged[g.id_prefix] == expected, (
            f"{g.name}: Nginx logged {len(logged[g.id_prefix])} of its {g.count} request ids"
        )


def test_ten_thousand_generated_requests_to_each_body_endpoint_get_no_5xx(
    stack: Stack, tiny_model: TinyModel
) -> None:
    plan = generators(tiny_model)
    check_plan(plan, body_endpoints())
    log_start = stack.nginx_log.stat().st_size
    failures = run("127.0.0.1", stack.port, plan)
    assert not failures, "\n".join(map(str, failures[:20]))
    with stack.nginx_log.open("rb") as log:
        log.seek(log_start)
        check_counts(plan, log.read().decode())
    # the stack still answers a known row as the pipeline does, and no worker hit an error
    body = json.dumps({"instances": [tiny_model.record(3)]}).encode()
    connection = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=10)
    connection.request("POST", "/predict", body, {"Content-Type": "application/json"})
    answer = json.loads(connection.getresponse().read())
    connection.close()
    expected = tiny_model.pipeline.predict_proba(tiny_model.x_test[3:4])
    np.testing.assert_allclose(answer["probabilities"], expected, atol=1e-12)
    log_text = stack.uwsgi_log.read_text()
    assert '"event":"unhandled_error"' not in log_text and "Traceback" not in log_text


# --- the harness can fail -------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    answer: Callable[[str, bytes], tuple[int, bytes]]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        assert isinstance(self.server, _Server)
        status, answer = self.server.answer(self.path, body)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.send_header("X-Request-ID", self.headers.get("X-Request-ID", ""))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def fake() -> Iterator[_Server]:
    server = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _error(status: int) -> bytes:
    return json.dumps(
        {"error": "x", "code": "x", "status": status, "field": None, "request_id": ""}
    ).encode()


def _records(body: bytes, extra: int) -> bytes:
    """A records answer shaped right but for ``extra`` more rows than sent."""
    try:
        n = len(json.loads(body)["instances"]) + extra
    except (ValueError, KeyError, TypeError):
        n = 0
    return json.dumps({"labels": ["benign"] * n, "probabilities": [[0.5, 0.5]] * n}).encode()


#: A server's defect: how it answers (path, body), and what the run's failures then say.
DEFECTS: dict[str, tuple[Callable[[str, bytes], tuple[int, bytes]], str]] = {
    "a 500": (lambda path, body: (500, _error(500)), "a 500"),
    "a 4xx not in the error shape": (lambda path, body: (422, b'{"error": "x"}'), "shape"),
    "malformed bodies accepted": (lambda path, body: (200, b'{"labels": []}'), r"expected \[4"),
    "valid bodies refused": (lambda path, body: (422, _error(422)), r"expected \[200\]"),
    "a row short": (lambda path, body: (200, _records(body, -1)), "labels"),
}


@pytest.mark.parametrize("defect", DEFECTS)
def test_the_harness_reports_each_defect_it_guards_against(
    fake: _Server, tiny_model: TinyModel, defect: str
) -> None:
    """A server with one defect fails the same run, on the cases that meet it: the checks are
    not a loop that cannot fail."""
    fake.answer, problem = DEFECTS[defect]
    plan = generators(tiny_model, {"valid": 30, "boundary": 30, "malformed": 30})
    failures = run("127.0.0.1", fake.server_address[1], plan, connections=2)
    assert failures, defect
    assert any(re.search(problem, str(f)) for f in failures), failures[:3]


def test_the_counts_fail_on_a_request_nginx_never_logged(tiny_model: TinyModel) -> None:
    """A generator short of its count, or a request id missing from Nginx's log, fails the run."""
    plan = generators(tiny_model, {"valid": 3, "boundary": 3, "malformed": 3})
    for g in plan:
        g.sent = g.count
    lines = [
        json.dumps({"time": "t", "request_id": f"{g.id_prefix}-{i}"}, separators=(",", ":"))
        for g in plan
        for i in range(g.count)
    ]
    check_counts(plan, "\n".join(lines))  # complete: passes
    with pytest.raises(AssertionError, match="Nginx logged 2 of its 3"):
        check_counts(plan, "\n".join(lines[1:]))
    plan[0].sent -= 1
    with pytest.raises(AssertionError, match="sent 2 of 3"):
        check_counts(plan, "\n".join(lines))
    short = generators(tiny_model, {"valid": 5_000, "boundary": 1, "malformed": 4_998})
    with pytest.raises(AssertionError, match="9999"):
        check_plan(short, body_endpoints())
    with pytest.raises(AssertionError, match="boundary"):
        check_plan(generators(tiny_model, {"valid": 10_000}), body_endpoints())
    check_plan(generators(tiny_model), body_endpoints())
