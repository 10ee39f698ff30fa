"""The WSGI entry point uWSGI loads (``module = serving.wsgi:application``) in its master.

Runs before the workers fork: checks that several workers have a metrics directory to share
(``PROMETHEUS_MULTIPROC_DIR``), wipes it, loads and verifies the model, then
freezes the loaded objects out of the garbage collector's reach and raises its thresholds (a full
collection over the loaded scientific stack stalls a worker for tens of milliseconds). A model that
cannot be served, or a malformed setting, ends the process with one log line and exit status 1 —
never a server answering 500.
"""

from __future__ import annotations

import gc

from serving.app import ConfigError, create_app
from serving.logs import log
from serving.metrics import multiproc_dir, reset_multiproc_dir, shared_directory_problem
from serving.model import ModelError

GC_THRESHOLDS = (100_000, 50, 100)


def uwsgi_workers() -> int:
    """The worker count of the uWSGI server running this module (1 outside uWSGI)."""
    try:
        import uwsgi  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:
        return 1
    return int(uwsgi.numproc)


try:
    problem = shared_directory_problem(uwsgi_workers(), multiproc_dir())
    if problem:
        raise ConfigError(problem)
    reset_multiproc_dir()
    application = create_app()
except ModelError as exc:
    log("model_refused", level="error", error=str(exc))
    raise SystemExit(1) from None
except ConfigError as exc:
    log("config_refused", level="error", error=str(exc))
    raise SystemExit(1) from None

_server = application.server
log(
    "model_loaded",
    **_server.model.provenance.as_dict(),
    provenance_id=_server.model.provenance_id,
    inference_path=_server.model.inference_path,
    features=len(_server.model.features),
)
gc.collect()
gc.freeze()
gc.set_threshold(*GC_THRESHOLDS)
