"""The Flask application factory.

Configuration flows one way: ``DEFAULTS``, then ``MODELOPS_*`` environment variables, then the
``config`` mapping passed in (tests). The model is loaded and verified here, so under uWSGI it
happens once in the master, before the workers fork.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from serving.api import health, metrics, openapi, predict, v2
from serving.errors import ApiError, error_body, from_http_exception
from serving.fastpath import FastPath
from serving.logs import log
from serving.metrics import Metrics
from serving.model import Model
from serving.state import ServerState, json_response

DEFAULTS: dict[str, Any] = {
    "MODEL_DIR": "/app/model",
    "MODEL_NAME": "",
    "MODEL_VERSION": "",
    "MODEL_STAGE": "",
    "GIT_COMMIT": "",
    "IMAGE_DIGEST": "",
    "MODEL_SHA256": "",
    "MAX_ROWS": 10_000,
    "MAX_CONTENT_LENGTH": 10 * 1024 * 1024,
}
INT_KEYS = ("MAX_ROWS", "MAX_CONTENT_LENGTH")
REQUEST_ID_HEADER = "X-Request-ID"


class ConfigError(ValueError):
    """A setting the server cannot start with (the message names the environment variable)."""


def model_from_config(config: Mapping[str, Any]) -> Model:
    return Model(
        Path(str(config["MODEL_DIR"])),
        name=str(config["MODEL_NAME"]),
        version=str(config["MODEL_VERSION"]),
        stage=str(config["MODEL_STAGE"]),
        git_commit=str(config["GIT_COMMIT"]),
        image_digest=str(config["IMAGE_DIGEST"]),
        sha256_pin=str(config["MODEL_SHA256"]),
    )


def create_app(config: Mapping[str, Any] | None = None, *, model: Model | None = None) -> Flask:
    """Build the app; loads the model from the configuration unless one is passed in."""
    app = Flask(__name__)
    app.config.from_mapping(DEFAULTS)
    app.config.from_prefixed_env("MODELOPS", loads=str)
    if config:
        app.config.from_mapping(config)
    for key in INT_KEYS:
        try:
            app.config[key] = int(app.config[key])
        except ValueError:
            raise ConfigError(
                f"MODELOPS_{key} must be an integer, got {app.config[key]!r}"
            ) from None
    if model is None:
        model = model_from_config(app.config)
        model.load()
    server = ServerState(model=model, metrics=Metrics(), max_rows=app.config["MAX_ROWS"])
    server.metrics.describe_model(model)
    app.extensions["modelops"] = server

    for blueprint in (predict.bp, v2.bp, health.bp, metrics.bp, openapi.bp):
        app.register_blueprint(blueprint)
    _install_hooks(app, server)
    app.wsgi_app = FastPath(  # type: ignore[method-assign]
        app.wsgi_app, server, app.config["MAX_CONTENT_LENGTH"]
    )
    return app


def _install_hooks(app: Flask, server: ServerState) -> None:
    @app.before_request
    def start_timer() -> None:
        g.started = time.perf_counter()
        environ = request.environ
        g.request_id = (
            environ.get("REQUEST_ID") or environ.get("HTTP_X_REQUEST_ID") or uuid.uuid4().hex
        )

    @app.after_request
    def finish(response: Response) -> Response:
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        request_id = g.get("request_id", "")
        response.headers[REQUEST_ID_HEADER] = request_id
        rule = request.url_rule
        endpoint = rule.rule if rule is not None else "unmatched"
        server.metrics.observe_request(endpoint, response.status_code, elapsed)
        log(
            "request",
            request_id=request_id,
            method=request.method,
            path=request.path,
            status=response.status_code,
            duration_ms=round(elapsed * 1000, 3),
            pid=os.getpid(),
        )
        return response

    @app.errorhandler(ApiError)
    def api_error(error: ApiError) -> Response:
        return json_response(error_body(error, g.get("request_id", "")), error.status)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        error = from_http_exception(exc)
        response = json_response(error_body(error, g.get("request_id", "")), error.status)
        if error.status == 405 and exc.get_response().headers.get("Allow"):
            response.headers["Allow"] = exc.get_response().headers["Allow"]
        return response

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        log(
            "unhandled_error",
            level="error",
            request_id=g.get("request_id", ""),
            error=f"{type(exc).__name__}: {exc}",
        )
        error = ApiError(500, "internal error; see the server log for this request id")
        return json_response(error_body(error, g.get("request_id", "")), 500)
