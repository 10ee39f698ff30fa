"""Fixtures for the serving tests: a tiny model in a temp dir, the app, a real stack."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
# pytest puts tests/ on sys.path, where this directory would pass for a namespace package named
# "serving" and shadow the real one: make sure the real package is what gets imported.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
if getattr(sys.modules.get("serving"), "__file__", "") is None:
    for name in [m for m in sys.modules if m == "serving" or m.startswith("serving.")]:
        del sys.modules[name]
from serving_testkit import LOADING_MARKER, TinyModel, build_model  # noqa: E402
from werkzeug.test import Client  # noqa: E402

from devstack.stack import Stack, missing_servers  # noqa: E402
from serving import readiness  # noqa: E402
from serving.app import create_app  # noqa: E402
from serving.pipeline import Pipeline  # noqa: E402

PROVENANCE = {
    "MODELOPS_MODEL_VERSION": "v1.2.0",
    "MODELOPS_MODEL_STAGE": "staging",
    "MODELOPS_GIT_COMMIT": "0123456789abcdef0123456789abcdef01234567",
    "MODELOPS_IMAGE_DIGEST": "sha256:" + "d16e5700" * 8,
}


def need_nginx() -> None:
    """Skip where the stack cannot run Nginx: nginx and envsubst found as the stack finds them."""
    missing = missing_servers()
    if missing is not None:
        pytest.skip(missing)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return build_model(tmp_path_factory.mktemp("model") / "model")


@pytest.fixture(scope="session")
def app(tiny_model: TinyModel) -> Pipeline:
    config = {key.removeprefix("MODELOPS_"): value for key, value in PROVENANCE.items()}
    return create_app({"MODEL_DIR": str(tiny_model.directory), **config})


@pytest.fixture
def client(app: Pipeline) -> Client:
    return app.test_client()


@pytest.fixture(scope="session")
def stack(tiny_model: TinyModel) -> Iterator[Stack]:
    """One real Nginx + uWSGI stack shared by the tests that only send requests."""
    need_nginx()
    with Stack(tiny_model.directory, env=PROVENANCE) as running:
        yield running


def start_stack(model_dir: Path, **env: str) -> Stack:
    """A private stack for a test that stops or breaks it (the caller stops it)."""
    need_nginx()
    return Stack(model_dir, env={"PYTHONPATH": str(HERE), **PROVENANCE, **env}).start()


def wait_until_loading(stack: Stack, limit: float = 60) -> None:
    """Return once the uWSGI master of a spawned ``stack`` has begun to unpickle a
    ``SlowLoadingModel`` (its marker is in the log): the socket is bound, no worker exists."""
    assert stack.uwsgi is not None
    readiness.wait_until(
        lambda _: None if LOADING_MARKER in stack.uwsgi_log.read_text() else "not loading yet",
        limit,
        f"uWSGI loading the model (marker in {stack.uwsgi_log})",
        exited=readiness.first_exit({"uWSGI": stack.uwsgi}),
        log_tail=lambda: readiness.file_tails(stack.uwsgi_log),
    )
