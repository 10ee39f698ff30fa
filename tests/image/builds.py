"""The session's model-server image, for every test that needs one (the image tests, the pod
smoke test): a plugin of the whole suite (tests/conftest.py's ``pytest_plugins``), so that it is
built once, not once per test package.

``registry``: a model registered in a temp repo (registry_fixture.py); ``built_image``: that
model's image built by images/build-model-server.sh, tagged with HEAD's full SHA under a namespace
of its own, removed at the end of the session.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Iterator

import pytest

from .conftest import ROOT, BuiltImage, build, require_podman
from .podman_cli import podman
from .registry_fixture import Registry, make_registry


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    return make_registry(tmp_path_factory.mktemp("registry"))


@pytest.fixture(scope="session")
def built_image(
    registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BuiltImage]:
    require_podman()
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    # Tagged with HEAD's full SHA like a real build (an overlay takes the tag for the git commit),
    # under a namespace of its own so that parallel sessions do not collide; the repository is
    # .../model-server, as the provenance transformer expects of every model server image.
    token = secrets.token_hex(4)
    name = f"localhost/modelops-test-{token}/model-server:{commit}"
    fetch = f"localhost/modelops/model-server-fetch:test-{token}"
    ref = f"{registry.name}#{registry.stage}"
    tmp = tmp_path_factory.mktemp("b")
    done = build(registry, ref, name, tmp, fetch_image=fetch)
    assert done.returncode == 0, f"image build failed:\n{done.stderr[-6000:]}"
    assert done.stdout.strip() == name
    inspect = json.loads(podman("image", "inspect", name).stdout)[0]
    yield BuiltImage(
        name=name,
        registry=registry,
        inspect=inspect,
        git_commit=commit,
        fetch_image=fetch,
        out=tmp / "out",
        stderr=done.stderr,
    )
    podman("rmi", "--force", name, fetch, check=False)
