"""The application factory: configuration, the model, and the request pipeline that is the app.

Configuration flows one way: ``DEFAULTS``, then ``MODELOPS_*`` environment variables (only the
keys of ``DEFAULTS``), then the ``config`` mapping passed in (tests). The model is loaded and
verified here, so under uWSGI it happens once in the master, before the workers fork.

``create_app`` returns ``serving.pipeline.Pipeline``: the WSGI application uWSGI calls, which
answers every request itself through the route table (``serving.routes``), 404 and 405 included.
No web framework dispatches a request; Flask is not used.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from serving.metrics import Metrics
from serving.model import Model
from serving.pipeline import Pipeline
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


def load_config(
    config: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """``DEFAULTS``, overridden by ``MODELOPS_<KEY>`` from ``environ`` (default ``os.environ``),
    then by ``config``; integers checked. Raises ``ConfigError`` naming the variable."""
    environ = os.environ if environ is None else environ
    settings = dict(DEFAULTS)
    settings.update(
        {key: environ[f"MODELOPS_{key}"] for key in DEFAULTS if f"MODELOPS_{key}" in environ}
    )
    settings.update(config or {})
    for key in INT_KEYS:
        try:
            settings[key] = int(settings[key])
        except ValueError:
            raise ConfigError(f"MODELOPS_{key} must be an integer, got {settings[key]!r}") from None
    if str(settings["MONITORING"]) not in MONITORING_VALUES:
        raise ConfigError(f"MODELOPS_MONITORING must be on or off, got {settings['MONITORING']!r}")
    return settings


def create_app(config: Mapping[str, Any] | None = None, *, model: Model | None = None) -> Pipeline:
    """The app (the request pipeline over the route table); loads the model from the
    configuration unless one is passed in. Raises ``ConfigError`` or ``ModelError``."""
    settings = load_config(config)
    if model is None:
        model = model_from_config(settings)
        model.load()
    monitoring = MONITORING_VALUES[str(settings["MONITORING"])]
    server = ServerState(
        model=model, metrics=Metrics(monitoring=monitoring), max_rows=settings["MAX_ROWS"]
    )
    server.metrics.describe_model(model)
    return Pipeline(server, Router(ROUTES), settings["MAX_CONTENT_LENGTH"])
