"""A WSGI fast path for the two prediction endpoints, in front of Flask's dispatch.

On a one-row prediction Flask's request context, routing, hooks and response objects cost more
than validating and predicting. ``FastPath`` wraps ``app.wsgi_app`` and answers only
``POST /predict`` and ``POST /v2/models/<name>[/versions/<version>]/infer`` with a known
``Content-Length``; everything else (other paths and methods, chunked bodies) goes to Flask
unchanged. Both paths call the same functions (``predict_payload``, ``infer_payload``) and give
the same answers, headers, error shape, metrics and log line.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

import orjson

from serving.api.predict import predict_payload
from serving.api.v2 import infer_payload
from serving.errors import ApiError, error_body
from serving.logs import log
from serving.state import ServerState

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
V2_PREFIX = "/v2/models/"
V2_SUFFIX = "/infer"
REASONS = {status.value: f"{status.value} {status.phrase}" for status in HTTPStatus}


class FastPath:
    """WSGI middleware: prediction requests answered directly, the rest by Flask."""

    def __init__(self, wsgi: WsgiApp, server: ServerState, max_content_length: int) -> None:
        self.wsgi = wsgi
        self.server = server
        self.max_content_length = max_content_length

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "POST":
            return self.wsgi(environ, start_response)
        path = environ.get("PATH_INFO", "")
        try:
            length = int(environ.get("CONTENT_LENGTH") or "")
        except ValueError:
            return self.wsgi(environ, start_response)
        if path == "/predict":
            endpoint = "/predict"
            name: str | None = None
            version: str | None = None
        elif path.startswith(V2_PREFIX) and path.endswith(V2_SUFFIX):
            parts = path[len(V2_PREFIX) : -len(V2_SUFFIX)].split("/")
            if len(parts) == 1 and parts[0]:
                endpoint, name, version = "/v2/models/<name>/infer", parts[0], None
            elif len(parts) == 3 and parts[1] == "versions" and parts[0] and parts[2]:
                endpoint = "/v2/models/<name>/versions/<version>/infer"
                name, version = parts[0], parts[2]
            else:
                return self.wsgi(environ, start_response)
        else:
            return self.wsgi(environ, start_response)
        return self._answer(environ, start_response, endpoint, name, version, length)

    def _answer(
        self,
        environ: dict[str, Any],
        start_response: Callable[..., Any],
        endpoint: str,
        name: str | None,
        version: str | None,
        length: int,
    ) -> Iterable[bytes]:
        started = time.perf_counter()
        request_id = (
            environ.get("REQUEST_ID") or environ.get("HTTP_X_REQUEST_ID") or uuid.uuid4().hex
        )
        headers: dict[str, str] = {}
        try:
            if length > self.max_content_length:
                raise ApiError(413, "request body too large")
            raw = environ["wsgi.input"].read(length) if length else b""
            if name is None:
                payload, headers = predict_payload(self.server, raw)
            else:
                binary = environ.get("HTTP_INFERENCE_HEADER_CONTENT_LENGTH")
                payload, headers = infer_payload(self.server, name, version, raw, binary)
            status = 200
            body = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
        except ApiError as error:
            status = error.status
            body = orjson.dumps(error_body(error, request_id))
        except Exception as exc:  # answered as JSON 500 and logged, never a stack trace
            log("unhandled_error", level="error", request_id=request_id, error=f"{exc!r}")
            status = 500
            internal = ApiError(500, "internal error; see the server log for this request id")
            body = orjson.dumps(error_body(internal, request_id))
        start_response(
            REASONS.get(status, str(status)),
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                *headers.items(),
                ("X-Request-ID", request_id),
            ],
        )
        elapsed = time.perf_counter() - started
        self.server.metrics.observe_request(endpoint, status, elapsed)
        log(
            "request",
            request_id=request_id,
            method="POST",
            path=environ.get("PATH_INFO", ""),
            status=status,
            duration_ms=round(elapsed * 1000, 3),
            pid=os.getpid(),
        )
        return [body]
