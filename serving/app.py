"""The Flask application factory.

Configuration flows one way: ``DEFAULTS``, then ``MODELOPS_*`` environment variables, then the
``config`` mapping passed in (tests). The model is loaded and verified here, so under uWSGI it
happens once in the master, before the workers fork.

The app's WSGI entry is ``serving.pipeline.Pipeline``: it answers every path of the route table
(``serving.routes``) itself and hands any other path to Flask's own dispatch, which holds only
what other code registers on the app (``@app.post(...)``: the benchmark's floor does) and answers
404 for the rest. Flask is set to let every exception through (``PROPAGATE_EXCEPTIONS``,
``TRAP_HTTP_EXCEPTIONS``) so that the pipeline answers errors, and one hook tells the pipeline
which rule matched (the metrics label): request ids, body limits, error bodies, metrics and the
log line are the pipeline's alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask, request

from serving.metrics import Metrics
from serving.model import Model
from serving.pipeline import ENDPOINT_KEY, Pipeline
from serving.routes import ROUTES, Router
from serving.state import ServerState

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
    "MONITORING": "on",
}
#: MODELOPS_MONITORING: "off" leaves out the drift signals (docs/monitoring.md, the benchmark's
#: cost cell); "on" by default.
MONITORING_VALUES = {"on": True, "off": False}
INT_KEYS = ("MAX_ROWS", "MAX_CONTENT_LENGTH")


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
    monitoring = MONITORING_VALUES.get(str(app.config["MONITORING"]))
    if monitoring is None:
        raise ConfigError(
            f"MODELOPS_MONITORING must be on or off, got {app.config['MONITORING']!r}"
        )
    if model is None:
        model = model_from_config(app.config)
        model.load()
    server = ServerState(
        model=model, metrics=Metrics(monitoring=monitoring), max_rows=app.config["MAX_ROWS"]
    )
    server.metrics.describe_model(model)
    app.extensions["modelops"] = server

    # Every exception out of Flask's dispatch, HTTP errors included, goes to the pipeline.
    app.config["PROPAGATE_EXCEPTIONS"] = True
    app.config["TRAP_HTTP_EXCEPTIONS"] = True

    @app.before_request
    def tell_the_pipeline_the_rule() -> None:
        if request.url_rule is not None:
            request.environ[ENDPOINT_KEY] = request.url_rule.rule

    app.wsgi_app = Pipeline(  # type: ignore[method-assign]
        server, Router(ROUTES), app.wsgi_app, app.config["MAX_CONTENT_LENGTH"]
    )
    return app
