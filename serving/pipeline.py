"""The request pipeline: the app itself, what uWSGI calls for every request.

``Pipeline`` is the WSGI application ``create_app`` (``serving.app``) returns and
``serving.wsgi`` hands to uWSGI; no framework dispatches in front of it or behind it. For every
request it:

1. takes the request id (Nginx's ``REQUEST_ID`` uwsgi param, else the client's ``X-Request-ID``,
   else a new one) and starts the clock;
2. refuses a declared body over the limit (413) before anything reads it;
3. dispatches through ``Router`` (``serving.routes``): a path and method of the route table to
   its handler, with a ``Call`` (``serving.state``); a path no rule has is a 404, a path whose
   rule lacks the method a 405 with ``Allow``: both answered here, like any other error;
4. turns what comes back into the response: the handler's ``Answer`` serialised by orjson, or an
   ``ApiError`` or any other exception into the one JSON error shape (``serving.errors``; an
   unexpected exception is a 500 plus one ``unhandled_error`` log line with the request id, never
   a stack trace);
5. adds ``X-Request-ID``, observes ``modelops_requests_total`` and
   ``modelops_request_duration_seconds`` (``endpoint`` = the matched rule, else ``unmatched``),
   and writes the one ``request`` log line.

``test_client()`` is werkzeug's test client on it (werkzeug is the only web library the app
uses, and only there): the tests drive the same object uWSGI does.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import orjson

from serving.errors import ApiError, error_body
from serving.logs import log
from serving.routes import Router
from serving.state import JSON_MIMETYPE, Call, ServerState

if TYPE_CHECKING:
    from werkzeug.test import Client

REQUEST_ID_HEADER = "X-Request-ID"
UNMATCHED = "unmatched"
NOT_FOUND = "no such endpoint; see /openapi.json"
INTERNAL = "internal error; see the server log for this request id"
REASONS = {status.value: f"{status.value} {status.phrase}" for status in HTTPStatus}


class Pipeline:
    """The app: WSGI, every request through the steps above. ``server`` is the served model,
    metrics and limits; ``router`` the route table it answers; ``max_content_length`` the body
    limit in bytes (``MODELOPS_MAX_CONTENT_LENGTH``)."""

    def __init__(self, server: ServerState, router: Router, max_content_length: int) -> None:
        self.server = server
        self.router = router
        self.max_content_length = max_content_length

    def test_client(self) -> Client:
        """werkzeug's test client on this app (the tests' way in, and a demo's)."""
        from werkzeug.test import Client

        return Client(self)

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        started = time.perf_counter()
        request_id = (
            environ.get("REQUEST_ID") or environ.get("HTTP_X_REQUEST_ID") or uuid.uuid4().hex
        )
        endpoint = UNMATCHED
        try:
            self._check_length(environ)
            match = self.router.match(
                environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "")
            )
            if match is None:
                raise ApiError(404, NOT_FOUND)
            route, endpoint, args = match
            answer = route.handler(self.server, Call(environ, args, self.max_content_length))
            body = answer.body
            if not isinstance(body, bytes):
                body = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
            status = answer.status
            result = _respond(
                environ,
                start_response,
                request_id,
                status,
                body,
                answer.content_type,
                answer.headers,
            )
        except Exception as exc:  # every error, expected or not, answered as JSON here
            status, body, headers = error_answer(exc, request_id)
            result = _respond(
                environ, start_response, request_id, status, body, JSON_MIMETYPE, headers
            )
        self._observe(environ, endpoint, status, started, request_id)
        return result

    def _check_length(self, environ: dict[str, Any]) -> None:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return  # no usable length: a chunked body, bounded while it is read
        if length > self.max_content_length:
            raise ApiError(413, "request body too large")

    def _observe(
        self,
        environ: dict[str, Any],
        endpoint: str,
        status: int,
        started: float,
        request_id: str,
    ) -> None:
        elapsed = time.perf_counter() - started
        self.server.metrics.observe_request(endpoint, status, elapsed)
        log(
            "request",
            request_id=request_id,
            method=environ.get("REQUEST_METHOD", ""),
            path=environ.get("PATH_INFO", ""),
            status=status,
            duration_ms=round(elapsed * 1000, 3),
            pid=os.getpid(),
        )


def _respond(
    environ: dict[str, Any],
    start_response: Callable[..., Any],
    request_id: str,
    status: int,
    body: bytes,
    content_type: str,
    headers: dict[str, str] | None,
) -> list[bytes]:
    response_headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
    if headers:
        response_headers.extend(headers.items())
    response_headers.append((REQUEST_ID_HEADER, request_id))
    start_response(REASONS.get(status, str(status)), response_headers)
    return [b""] if environ.get("REQUEST_METHOD") == "HEAD" else [body]


def error_answer(exc: Exception, request_id: str) -> tuple[int, bytes, dict[str, str] | None]:
    """Status, JSON body and headers for any exception a request raised: the one place that
    maps errors to answers. Unexpected exceptions are logged (``unhandled_error``, with the
    request id) and answered as a 500 that says only where to look."""
    if not isinstance(exc, ApiError):
        log(
            "unhandled_error",
            level="error",
            request_id=request_id,
            error=f"{type(exc).__name__}: {exc}",
        )
        exc = ApiError(500, INTERNAL)
    return exc.status, orjson.dumps(error_body(exc, request_id)), exc.headers
