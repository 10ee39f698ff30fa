"""The Open Inference Protocol server a team would deploy instead: MLServer, scikit-learn runtime.

Caller: ``bench.run`` (``make bench``, its ``<family>/mlserver`` cells) and
tests/serving/test_serving_bench.py. MLServer and ``mlserver-sklearn`` are pinned in their own
lock, requirements/mlserver.txt (their FastAPI pin conflicts with the dev lock's; scikit-learn,
numpy, scipy and joblib are held to dev.txt's versions, so the pickle loads as it was written),
installed by ``make mlserver`` into :data:`VENV`.

:func:`write_repository` writes an MLServer model repository for one family: ``settings.json``
(the server) and ``<model>/model-settings.json`` (``mlserver_sklearn.SKLearnModel`` loading the
family's ``reference.pkl``, the same fitted pipeline the FastAPI reference serves), under the
model name the stack serves, so both answer the same ``/v2/models/<name>/infer`` bodies.

Given its best shot, with the settings its documentation names for performance
(docs/benchmarks.md#mlserver-given-its-best-shot says what each measured):

- ``parallel_workers`` :data:`PARALLEL_WORKERS`: MLServer's HTTP process hands each inference
  to that many worker processes (0: the HTTP process predicts itself, on one core);
- ``debug`` false (no access log), ``metrics_endpoint`` null (no Prometheus server, no
  per-request metrics), ``gzip_enabled`` false (no compression middleware); no adaptive batching
  (``max_batch_size`` 0: it only adds a wait to a one-row request);
- one native thread per process (the bench's ``OMP_NUM_THREADS=1``), like the stack's workers;
- uvloop (< 0.22: MLServer 1.7.1 with parallel workers crashes at start with 0.23) and
  httptools, which uvicorn picks when they are installed;
- the request names no ``outputs``, as the stack's bodies do: the runtime then answers
  ``predict`` (the labels) only, less than the stack's labels and probabilities.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
from pathlib import Path
from typing import Any

from bench import models

ROOT = Path(__file__).resolve().parents[1]
#: MLServer's own venv, written by `make mlserver` (mk/serving.mk) from requirements/mlserver.txt.
VENV = ROOT / ".tools" / "mlserver-venv"
#: The inference worker processes behind MLServer's HTTP process: the best of those measured
#: (docs/benchmarks.md#mlserver-given-its-best-shot).
PARALLEL_WORKERS = 0
RUNTIME = "mlserver_sklearn.SKLearnModel"


def executable(venv: Path = VENV) -> Path:
    """The ``mlserver`` command of ``venv``."""
    return venv / "bin" / "mlserver"


def settings(http_port: int, grpc_port: int, parallel_workers: int) -> dict[str, Any]:
    """MLServer's server settings (``settings.json``) for the benchmark, on 127.0.0.1."""
    return {
        "debug": False,
        "host": "127.0.0.1",
        "http_port": http_port,
        "grpc_port": grpc_port,
        "parallel_workers": parallel_workers,
        "metrics_endpoint": None,
        "gzip_enabled": False,
        "load_models_at_startup": True,
    }


def write_repository(
    model: models.BenchModel,
    directory: Path,
    http_port: int,
    grpc_port: int,
    parallel_workers: int = PARALLEL_WORKERS,
) -> Path:
    """Write ``directory``'s MLServer repository for ``model`` (its ``reference.pkl`` under the
    stack's model name) and return ``directory``, for ``mlserver start <directory>``."""
    model_dir = directory / models.MODEL_NAME
    model_dir.mkdir(parents=True, exist_ok=True)
    (directory / "settings.json").write_text(
        json.dumps(settings(http_port, grpc_port, parallel_workers), indent=2) + "\n"
    )
    model_settings = {
        "name": models.MODEL_NAME,
        "implementation": RUNTIME,
        "parameters": {"uri": str(model.reference.resolve())},
    }
    (model_dir / "model-settings.json").write_text(json.dumps(model_settings, indent=2) + "\n")
    return directory


def environment(threads: dict[str, str]) -> dict[str, str]:
    """The server's environment: this one without the dev venv's Python settings (MLServer runs
    its own venv's interpreter), with ``threads`` (the native thread pools' sizes)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, **threads}


#: The distributions of MLServer's venv whose versions the report states.
LIBRARIES = (
    "mlserver",
    "mlserver-sklearn",
    "scikit-learn",
    "numpy",
    "uvicorn",
    "uvloop",
    "httptools",
)


def versions(venv: Path = VENV) -> dict[str, str]:
    """The versions of :data:`LIBRARIES` in ``venv`` ("not installed" for each missing)."""
    paths = [str(p) for p in venv.glob("lib/python*/site-packages")]
    found = {
        (d.metadata["Name"] or "").lower().replace("_", "-"): d.version
        for d in importlib.metadata.distributions(path=paths)
    }
    return {name: found.get(name, "not installed") for name in LIBRARIES}
