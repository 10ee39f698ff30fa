"""The stack's floor: the same uWSGI configuration answering a constant, no model work.

Loaded by uWSGI instead of ``serving.wsgi`` (``MODELOPS_WSGI_MODULE=bench.floor:application``):
the real app, model loaded, plus three constant answers for the same POST body the benchmark
sends, from the most to the least of the stack's own work:

- ``/bench/flask-constant``: a plain Flask app's route answering the constant, in front of the
  app: Flask's dispatch (request context, routing, response object), the cost the request
  pipeline does without (no metrics, no log line);
- ``/bench/pipeline-constant``: a route of the request pipeline's own table, as ``/predict`` is
  (``serving.pipeline``: request id, body limit, ``Call.body()``, metrics, the log line), whose
  handler answers a constant: everything a one-row prediction costs but the prediction;
- ``/bench/wsgi-constant``: answered in front of the pipeline (no metrics, no log line):
  transport and uWSGI alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, Response, request

from serving.pipeline import Pipeline
from serving.routes import ROUTES, Route, Router
from serving.state import Answer, Call, ServerState
from serving.wsgi import application as app

CONSTANT = b'{"labels":["benign"]}'


def pipeline_constant(server: ServerState, call: Call) -> Answer:
    """A table route's handler that reads the body and answers a constant."""
    call.body()
    return Answer(CONSTANT)


flask_app = Flask(__name__)


@flask_app.post("/bench/flask-constant")
def flask_constant() -> Response:
    request.get_data(cache=False)
    return Response(CONSTANT, mimetype="application/json")


_with_constant = Pipeline(
    app.server,
    Router((*ROUTES, Route("POST", ("/bench/pipeline-constant",), pipeline_constant))),
    app.max_content_length,
)


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The floor's WSGI entry: the two constants answered in front of the app, else the app
    with the pipeline's constant route."""
    path = environ.get("PATH_INFO")
    if path == "/bench/wsgi-constant":
        environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        start_response(
            "200 OK",
            [("Content-Type", "application/json"), ("Content-Length", str(len(CONSTANT)))],
        )
        return [CONSTANT]
    if path == "/bench/flask-constant":
        result: Iterable[bytes] = flask_app(environ, start_response)
        return result
    return _with_constant(environ, start_response)
