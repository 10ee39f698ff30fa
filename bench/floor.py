"""The stack's floor: the same uWSGI/Flask configuration answering a constant, no model work.

Loaded by uWSGI instead of ``serving.wsgi`` (``MODELOPS_WSGI_MODULE=bench.floor:application``):
the real app, model loaded, plus three constant routes for the same POST body the benchmark
sends, from the most to the least of the stack's own work:

- ``/bench/flask-constant``: a plain Flask route, which the request pipeline hands to Flask's
  dispatch (request context, hooks) and then counts and logs;
- ``/bench/pipeline-constant``: a route of the request pipeline's own table, as ``/predict`` is
  (``serving.pipeline``: request id, body limit, ``Call.body()``, metrics, the log line), whose
  handler answers a constant: everything a one-row prediction costs but the prediction;
- ``/bench/wsgi-constant``: answered in front of the pipeline (no metrics, no log line):
  transport and uWSGI alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flask import Response, request

from serving.pipeline import Pipeline
from serving.routes import ROUTES, Route, Router
from serving.state import Answer, Call, ServerState
from serving.wsgi import application

CONSTANT = b'{"labels":["benign"]}'


def pipeline_constant(server: ServerState, call: Call) -> Answer:
    """A table route's handler that reads the body and answers a constant."""
    call.body()
    return Answer(CONSTANT)


@application.post("/bench/flask-constant")
def flask_constant() -> Response:
    request.get_data(cache=False)
    return Response(CONSTANT, mimetype="application/json")


_pipeline = application.wsgi_app
assert isinstance(_pipeline, Pipeline), "serving.app no longer makes the pipeline the WSGI entry"
_with_constant = Pipeline(
    _pipeline.server,
    Router((*ROUTES, Route("POST", ("/bench/pipeline-constant",), pipeline_constant))),
    _pipeline.flask_wsgi,
    _pipeline.max_content_length,
)


def _wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ.get("PATH_INFO") == "/bench/wsgi-constant":
        environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        start_response(
            "200 OK",
            [("Content-Type", "application/json"), ("Content-Length", str(len(CONSTANT)))],
        )
        return [CONSTANT]
    return _with_constant(environ, start_response)


application.wsgi_app = _wsgi  # type: ignore[method-assign]
