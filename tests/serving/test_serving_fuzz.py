"""Property-based fuzzing of the real stack: no generated request may get a 5xx.

The shrinking half of the fuzzing (hypothesis reports a failing request made as small as it can):
the volume, 10,000 seeded requests to each endpoint that takes a body, is
test_serving_fuzz_at_scale.py's, in every ``make test``. Four generators here, each run
``MODELOPS_FUZZ_EXAMPLES`` times (40 in the default test run; ``make fuzz``, the deeper run, sets
10,000):

- schemathesis generates requests (valid and invalid) from serving/openapi.json for every
  operation;
- every endpoint of that document gets requests with any method, query string, headers
  (request id, content type, the binary-extension header) and body, and counts them: each gets at
  least ``MODELOPS_FUZZ_EXAMPLES``;
- hypothesis mutates valid ``/predict`` rows and v2 tensors value by value (each of these two
  counts its requests: exactly ``MODELOPS_FUZZ_EXAMPLES``).

schemathesis' generator stops early where an operation's space is exhausted (an operation with no
parameters and no body), so it is not counted.

Every answer must be below 500, and every error (but HEAD's) must have the one JSON error shape.
``test_the_harness_fails_on_a_5xx`` runs the endpoint generator against a server that answers 500
to one kind of request, and shows the harness reports it.
"""

from __future__ import annotations

import json
import os
import re
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from conftest import PROVENANCE
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.generation.case import Case
from serving_testkit import MODEL_NAME, TinyModel

from devstack.stack import Stack

pytestmark = pytest.mark.e2e
OPENAPI = Path(__file__).resolve().parents[2] / "serving" / "openapi.json"
SCHEMA = schemathesis.openapi.from_path(OPENAPI)
ERROR_KEYS = {"error", "code", "status", "field", "request_id"}
#: Generated requests per generator (and per endpoint): `make fuzz` sets 10,000.
EXAMPLES = int(os.environ.get("MODELOPS_FUZZ_EXAMPLES", "40"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)
_SESSION = requests.Session()


def check(response: requests.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if response.status_code >= 400 and response.request.method != "HEAD":
        assert set(response.json()) == ERROR_KEYS, response.text[:500]


@SCHEMA.parametrize()
@FUZZ
def test_no_generated_request_gets_a_5xx(case: Case, stack: Stack) -> None:
    if (
        case.path_parameters
        and "name" in case.path_parameters
        and case.path_parameters["name"] == ""
    ):
        case.path_parameters["name"] = MODEL_NAME
    check(case.call(base_url=stack.url, session=_SESSION, timeout=10))


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=6,
)

# --- every endpoint, any request ------------------------------------------------------------

ENDPOINTS = sorted(
    (method.upper(), path)
    for path, operations in json.loads(OPENAPI.read_text())["paths"].items()
    for method in operations
    if method in {"get", "post"}
)
METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
# what a header value may hold on the wire (requests refuses CR, LF and leading spaces)
header_text = st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=40)
segment = st.text(max_size=12).map(lambda text: urllib.parse.quote(text, safe=""))


@st.composite
def requests_to(draw: st.DrawFn, method: str, path: str) -> dict[str, Any]:
    """One request to the endpoint METHOD PATH: mostly its own method, path parameters the
    served model's or anything, any query string, headers and body."""
    filled = re.sub(r"\{name\}", lambda _: draw(st.sampled_from([MODEL_NAME]) | segment), path)
    version = PROVENANCE["MODELOPS_MODEL_VERSION"]
    filled = re.sub(r"\{version\}", lambda _: draw(st.just(version) | segment), filled)
    query = draw(st.dictionaries(st.text(max_size=6), st.text(max_size=12), max_size=3))
    headers = {
        name: value
        for name, value in {
            "Content-Type": draw(
                st.sampled_from(["application/json", "application/octet-stream", "text/plain"])
                | header_text
            ),
            "X-Request-ID": draw(st.none() | header_text),
            "Inference-Header-Content-Length": draw(
                st.none() | st.integers(-5, 5000).map(str) | header_text
            ),
            "Accept": draw(st.none() | header_text),
        }.items()
        if value is not None
    }
    body = draw(
        st.none()
        | st.binary(max_size=200)
        | json_values.map(lambda value: json.dumps(value).encode())
        | st.lists(json_values, max_size=3).map(
            lambda rows: json.dumps({"instances": rows, "inputs": rows}).encode()
        )
    )
    return {
        "method": draw(st.just(method) | st.sampled_from(METHODS)),
        "url": filled + ("?" + urllib.parse.urlencode(query) if query else ""),
        "headers": headers,
        "data": body,
    }


def fuzz_endpoint(base_url: str, method: str, path: str) -> int:
    """Send ``EXAMPLES`` generated requests to the endpoint; each answer must pass ``check``.
    Returns how many were sent (hypothesis reports a failing one, shrunk, as the test's error)."""
    sent = 0

    @given(request=requests_to(method, path))
    @FUZZ
    def run(request: dict[str, Any]) -> None:
        nonlocal sent
        sent += 1
        url = base_url + request.pop("url")
        check(_SESSION.request(url=url, timeout=10, **request))

    run()
    return sent


@pytest.mark.parametrize(("method", "path"), ENDPOINTS, ids=[f"{m} {p}" for m, p in ENDPOINTS])
def test_no_request_to_an_endpoint_gets_a_5xx(stack: Stack, method: str, path: str) -> None:
    assert fuzz_endpoint(stack.url, method, path) >= EXAMPLES


class _BrokenHandler(BaseHTTPRequestHandler):
    """Answers the JSON error shape (404) to everything but a request with a body of more than
    ten bytes, which gets a 500."""

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        status = 500 if length > 10 else 404
        body = json.dumps(dict.fromkeys(ERROR_KEYS, "x")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("do_"):  # do_GET, do_POST, ...: every method
            return self._answer
        raise AttributeError(name)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def broken_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _BrokenHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_harness_fails_on_a_5xx(broken_server: str) -> None:
    """A fuzz run that meets a 500 fails, and names the request (hypothesis' falsifying
    example): the harness is not a loop that cannot fail."""
    with pytest.raises(AssertionError, match=r"\(500, "):
        fuzz_endpoint(broken_server, "POST", "/predict")


# --- mutated rows and tensors -----------------------------------------------------------------


@st.composite
def mutated_rows(draw: st.DrawFn, features: list[str]) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(features, 1.0)
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.sampled_from(["drop", "add", "replace"]))
        if action == "drop" and row:
            row.pop(draw(st.sampled_from(sorted(row))))
        elif action == "add":
            row[draw(st.text(max_size=12))] = draw(json_values)
        elif row:
            row[draw(st.sampled_from(sorted(row)))] = draw(json_values)
    return row


def test_mutated_records_never_get_a_5xx(stack: Stack, tiny_model: TinyModel) -> None:
    sent = 0

    @given(rows=st.lists(mutated_rows(tiny_model.features), max_size=3))
    @FUZZ
    def run(rows: list[dict[str, Any]]) -> None:
        nonlocal sent
        sent += 1
        body = json.dumps({"instances": rows})  # infinities become the Infinity literal
        response = _SESSION.post(f"{stack.url}/predict", data=body, timeout=10)
        check(response)
        if response.status_code == 200:
            assert len(response.json()["labels"]) == len(rows)

    run()
    assert sent == EXAMPLES


def test_mutated_tensors_never_get_a_5xx(stack: Stack) -> None:
    shapes = st.lists(st.integers(-1, 40), min_size=0, max_size=3)
    datatypes = st.sampled_from(["FP64", "FP32", "INT64", "UINT8", "BOOL", "BYTES", "fp64", ""])
    data = st.lists(st.floats(allow_nan=False) | st.integers() | json_values, max_size=70)

    sent = 0

    @given(shape=shapes, datatype=datatypes, data=data, name=st.text(max_size=10))
    @FUZZ
    def run(shape: list[int], datatype: str, data: list[Any], name: str) -> None:
        nonlocal sent
        sent += 1
        tensor = {"name": name, "shape": shape, "datatype": datatype, "data": data}
        body = json.dumps({"inputs": [tensor]})
        check(_SESSION.post(f"{stack.url}/v2/models/{MODEL_NAME}/infer", data=body, timeout=10))

    run()
    assert sent == EXAMPLES
