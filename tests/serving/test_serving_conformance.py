"""Conformance to the Open Inference Protocol's own REST document, not only to one client.

fixtures/oip/open_inference_rest.yaml (beside this file) is the protocol's OpenAPI document,
unmodified (its README says where it comes from). For every path and method it lists (and the
unversioned spelling of each versioned path, which the protocol's prose makes optional), the test
sends requests to the app and holds each answer to the document:

- a status the document lists for the operation: the body validates against that response's
  schema (jsonschema, the document's own ``$ref`` graph), with the declared content type;
- any other status: an HTTP error status whose body holds the protocol's error object
  ``{"error": $string}`` (the prose: "a failed ... request must be indicated by an HTTP error
  status (typically 400). The HTTP body must contain the ... error object"). Our error bodies
  carry more members (code, status, field, request_id): the document's schemas allow them.

The requests cover success, each error the document lists (400 on infer: malformed JSON) and the
errors it leaves to the server (unknown model or version, invalid input, a model not loaded yet).
A test also fails if the document has an operation the walk does not cover. In process through
the app's test client (werkzeug's); the same walk through the real Nginx → uWSGI stack is the e2e
test below.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from serving_testkit import MODEL_NAME, TinyModel

from devstack.stack import Stack
from serving.app import create_app
from serving.model import Model
from serving.pipeline import Pipeline

HERE = Path(__file__).resolve().parent
SPEC_PATH = HERE / "fixtures" / "oip" / "open_inference_rest.yaml"
SPEC_SHA256 = "5c008987466684cefbd2675e624a6a39e6fefb9ab878df1aac2cc17e3e3a179b"
SPEC = yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))
SPEC_URI = "urn:open-inference-protocol:rest"
REGISTRY = Registry().with_resource(SPEC_URI, Resource(SPEC, specification=DRAFT202012))
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
VERSION = "v1.2.0"  # MODELOPS_MODEL_VERSION of the app fixture (conftest.PROVENANCE)
PARAMETER = re.compile(r"\$?\{([A-Za-z_]+)\}")
VERSIONED = "/versions/${MODEL_VERSION}"
# The protocol's error object, as the document defines it for metadata errors.
ERROR_SCHEMA = "#/components/schemas/metadata_model_error_response"


@dataclass(frozen=True)
class Exchange:
    """One request of the walk and the status the server must answer."""

    what: str
    method: str
    path: str
    status: int
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    body: bytes


def spec_operations() -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in SPEC["paths"].items()
        for method in item
        if method in METHODS
    }


def concrete(path: str, name: str = MODEL_NAME, version: str = VERSION) -> str:
    """A document path with its parameters filled in (``${X}`` or ``{X}``)."""
    values = {"MODEL_NAME": name, "MODEL_VERSION": version}
    return PARAMETER.sub(lambda m: values[m.group(1)], path)


def spellings(path: str) -> list[str]:
    """The path as written and, for a versioned model path, without ``/versions/...``."""
    plain = PARAMETER.sub(lambda m: "${" + m.group(1) + "}", path)
    return [plain, plain.replace(VERSIONED, "")] if VERSIONED in plain else [plain]


def _tensor(tiny_model: TinyModel, rows: int = 2) -> dict[str, Any]:
    x = tiny_model.x_test[:rows]
    return {
        "name": "input-0",
        "shape": list(x.shape),
        "datatype": "FP64",
        "data": x.ravel().tolist(),
    }


def exchanges(operation: tuple[str, str], tiny_model: TinyModel) -> list[Exchange]:
    """The requests the walk sends for one operation of the document, every spelling."""
    method, spec_path = operation
    infers = spec_path.endswith("/infer")
    good = (
        json.dumps({"id": "conf-1", "inputs": [_tensor(tiny_model)]}).encode() if infers else None
    )
    result: list[Exchange] = []
    for path in spellings(spec_path):
        versioned = VERSIONED in path
        ok = concrete(path)
        other_model = concrete(path, name="no-such-model")
        if spec_path in ("/v2/health/live", "/v2/health/ready", "/v2/"):
            result.append(Exchange("answers", method, ok, 200))
        elif infers:
            one_output = json.dumps(
                {"inputs": [_tensor(tiny_model, 1)], "outputs": [{"name": "predict"}]}
            ).encode()
            bad_shape = dict(_tensor(tiny_model), shape=[2, 29])
            result += [
                Exchange("infers", method, ok, 200, good, {"Content-Type": "application/json"}),
                Exchange("infers one output", method, ok, 200, one_output),
                Exchange("malformed JSON", method, ok, 400, b'{"inputs": ['),
                Exchange(
                    "invalid input", method, ok, 422, json.dumps({"inputs": [bad_shape]}).encode()
                ),
                Exchange("unknown model", method, other_model, 404, good),
            ]
        else:  # model metadata and model ready
            result += [
                Exchange("answers", method, ok, 200),
                Exchange("unknown model", method, other_model, 404),
            ]
        if versioned:
            result.append(
                Exchange("unknown version", method, concrete(path, version="v9.9.9"), 404, good)
            )
    return result


def operation_of(method: str, path: str) -> tuple[str, dict[str, Any]]:
    """The document's path and operation for a request path (either spelling)."""
    for spec_path, item in SPEC["paths"].items():
        for spelling in spellings(spec_path):
            pattern = re.escape(spelling)
            for name in ("MODEL_NAME", "MODEL_VERSION"):
                pattern = pattern.replace(re.escape("${" + name + "}"), "[^/]+")
            if re.fullmatch(pattern, path) and method.lower() in item:
                operation: dict[str, Any] = item[method.lower()]
                return spec_path, operation
    raise AssertionError(f"{method} {path} is no operation of the document")


def validate(schema_ref: str, instance: Any) -> None:
    """``instance`` against a schema of the document (a ``#/components/...`` reference)."""
    validator = Draft202012Validator({"$ref": SPEC_URI + schema_ref}, registry=REGISTRY)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.path))
    assert not errors, f"{schema_ref}: " + "; ".join(e.message for e in errors)


def conforms(exchange: Exchange, answer: Answer) -> None:
    """Hold one answer to the document (the module docstring says how)."""
    _, operation = operation_of(exchange.method, exchange.path)
    assert answer.status == exchange.status, (exchange.what, answer.status, answer.body[:300])
    declared = operation["responses"].get(str(answer.status))
    if declared is not None:
        content = declared.get("content") or {}
        if "application/json" in content:
            assert answer.content_type.split(";")[0].strip() == "application/json"
            validate(content["application/json"]["schema"]["$ref"], json.loads(answer.body))
    if answer.status >= 400:
        assert answer.content_type.split(";")[0].strip() == "application/json"
        validate(ERROR_SCHEMA, json.loads(answer.body))
    elif declared is None:
        pytest.fail(f"{exchange.what}: {answer.status} is no success the document lists")


def request_body_conforms(exchange: Exchange) -> None:
    """The walk's own valid requests are what the document describes (else it proves little)."""
    _, operation = operation_of(exchange.method, exchange.path)
    schema = (operation.get("requestBody") or {}).get("content", {}).get("application/json")
    if schema and exchange.body is not None and exchange.status == 200:
        validate(schema["schema"]["$ref"], json.loads(exchange.body))


def walk(tiny_model: TinyModel) -> Iterator[Exchange]:
    for operation in sorted(spec_operations()):
        yield from exchanges(operation, tiny_model)


def client_sender(app: Pipeline) -> Callable[[Exchange], Answer]:
    client = app.test_client()

    def send(exchange: Exchange) -> Answer:
        response = client.open(
            exchange.path,
            method=exchange.method,
            data=exchange.body,
            headers=exchange.headers,
        )
        return Answer(response.status_code, response.content_type or "", response.get_data())

    return send


def test_the_vendored_document_is_the_upstream_copy() -> None:
    assert hashlib.sha256(SPEC_PATH.read_bytes()).hexdigest() == SPEC_SHA256
    assert SPEC["info"]["title"] == "Data Plane" and SPEC["info"]["version"] == "2.0"


def test_the_walk_covers_every_operation_of_the_document(tiny_model: TinyModel) -> None:
    covered = {
        (exchange.method, operation_of(exchange.method, exchange.path)[0])
        for exchange in walk(tiny_model)
    }
    assert covered == spec_operations()
    assert len(spec_operations()) == 6  # live, ready, server metadata, model ready/metadata, infer


def test_every_path_and_response_of_the_document_answers_as_written(
    app: Pipeline, tiny_model: TinyModel
) -> None:
    send = client_sender(app)
    walked = list(walk(tiny_model))
    assert {e.what for e in walked} >= {"answers", "infers", "malformed JSON", "unknown version"}
    for exchange in walked:
        request_body_conforms(exchange)
        conforms(exchange, send(exchange))


def test_a_model_not_loaded_yet_answers_with_the_error_object(tiny_model: TinyModel) -> None:
    """Readiness and the model paths while the model loads: an error status and the error
    object (liveness and server metadata still answer as written)."""
    send = client_sender(create_app(model=Model(tiny_model.directory, version=VERSION)))
    for operation in sorted(spec_operations()):
        for exchange in exchanges(operation, tiny_model):
            if exchange.what not in ("answers", "infers"):
                continue
            loading = exchange.path in ("/v2/health/live", "/v2/")
            expected = Exchange(
                exchange.what,
                exchange.method,
                exchange.path,
                200 if loading else 503,
                exchange.body,
                exchange.headers,
            )
            conforms(expected, send(expected))


@pytest.mark.e2e
def test_the_real_stack_answers_every_path_of_the_document_as_written(
    stack: Stack, tiny_model: TinyModel
) -> None:
    """The same walk through Nginx and uWSGI: nothing between client and app changes an answer."""
    session = requests.Session()
    for exchange in walk(tiny_model):
        response = session.request(
            exchange.method,
            stack.url + exchange.path,
            data=exchange.body,
            headers=exchange.headers,
            timeout=10,
        )
        answer = Answer(
            response.status_code, response.headers.get("Content-Type", ""), response.content
        )
        conforms(exchange, answer)
