"""The stack's floor: the same uWSGI/Flask configuration answering a constant, no model work.

Loaded by uWSGI instead of ``serving.wsgi`` (``MODELOPS_WSGI_MODULE=bench.floor:application``):
the real app, model loaded, plus two constant routes for the same POST body the benchmark sends:

- ``/bench/flask-constant``: a plain Flask route (request context, hooks, metrics, log line);
- ``/bench/wsgi-constant``: answered in front of Flask, like the prediction fast path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flask import Response, request

from serving.wsgi import application

CONSTANT = b'{"labels":["benign"]}'
_flask_wsgi = application.wsgi_app


@application.post("/bench/flask-constant")
def flask_constant() -> Response:
    request.get_data(cache=False)
    return Response(CONSTANT, mimetype="application/json")


def _wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ.get("PATH_INFO") == "/bench/wsgi-constant":
        environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        start_response(
            "200 OK",
            [("Content-Type", "application/json"), ("Content-Length", str(len(CONSTANT)))],
        )
        return [CONSTANT]
    return _flask_wsgi(environ, start_response)


application.wsgi_app = _wsgi  # type: ignore[method-assign]
