"""What every handler shares: the server state, the request it is given and the answer it returns.

Handlers (``serving.protocols``, ``serving.routes``) are plain functions
``(ServerState, Call) -> Answer``; they raise ``ApiError`` for anything the client got wrong.
``serving.pipeline`` builds the ``Call``, runs the handler and turns the ``Answer`` (or the error)
into the HTTP response: handlers never see WSGI, headers they do not ask for, or status
lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from serving.errors import ApiError
from serving.metrics import Metrics
from serving.model import Model

JSON_MIMETYPE = "application/json"
CHUNK = 64 * 1024


@dataclass
class ServerState:
    """The served model, the metrics and the request limits; one per app (``create_app``)."""

    model: Model
    metrics: Metrics
    max_rows: int

    def require_model(self, name: str, version: str | None = None) -> Model:
        """The model called ``name`` (and ``version``, when given), ready to predict: else a 404
        naming the served one, or a 503 while it is not loaded (a model whose name comes from
        its metadata has none until then: any name waits for it)."""
        model = self.model
        if name != model.name and (model.ready or model.name):
            raise ApiError(404, f"unknown model {name!r}; this server serves {model.name!r}")
        if version is not None and version != model.provenance.version:
            raise ApiError(
                404,
                f"unknown version {version!r} of {name!r}; "
                f"served: {model.provenance.version or '(unversioned)'}",
            )
        if not model.ready:
            raise ApiError(503, "model is not loaded yet")
        return model


class Call:
    """One request as a handler sees it: the route's path arguments, headers, the body.

    Built by ``serving.pipeline`` for each request a route of the table answers. ``body()`` reads
    the body once, at most ``limit`` bytes (the pipeline has already refused a longer declared
    ``Content-Length``; a chunked body past the limit raises the 413 while it is read).
    """

    __slots__ = ("args", "environ", "limit")

    def __init__(self, environ: dict[str, Any], args: dict[str, str], limit: int) -> None:
        self.environ = environ
        self.args = args
        self.limit = limit

    def body(self) -> bytes:
        environ = self.environ
        try:
            length = int(environ.get("CONTENT_LENGTH") or "")
        except ValueError:
            return self._unsized_body()
        if length > self.limit:
            raise ApiError(413, "request body too large")
        return bytes(environ["wsgi.input"].read(length)) if length > 0 else b""

    def _unsized_body(self) -> bytes:
        """No (or no valid) Content-Length: a body the server marks as terminated (a chunked
        upload) is read to its end, refused past the limit; any other is empty, as werkzeug
        and Flask read it."""
        if not self.environ.get("wsgi.input_terminated"):
            return b""
        stream = self.environ["wsgi.input"]
        chunks: list[bytes] = []
        size = 0
        while chunk := stream.read(min(CHUNK, self.limit + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
            if size > self.limit:
                raise ApiError(413, "request body too large")
        return b"".join(chunks)

    def header(self, name: str) -> str | None:
        """A request header by its HTTP name (``Inference-Header-Content-Length``), or None."""
        value: str | None = self.environ.get("HTTP_" + name.upper().replace("-", "_"))
        return value


@dataclass(slots=True)
class Answer:
    """What a handler answers: a JSON-serialisable payload (numpy arrays too), or ``bytes`` sent
    as they are with ``content_type``; plus headers of its own (the provenance id)."""

    body: Any
    headers: dict[str, str] | None = None
    content_type: str = JSON_MIMETYPE
    status: int = 200
