"""Builds that must fail, and say why in one line: a GTO ref that resolves to nothing, and a
registered model whose file does not match its model card (tampered or corrupted)."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from .conftest import build, podman, require_podman
from .registry_fixture import Registry

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        (
            "diagnosis-classifier#prod",
            "error: GTO ref diagnosis-classifier#prod resolves to no registered version",
        ),
        ("diagnosis-classifier@v1.1.0", "error: sha256 mismatch for model.pkl: metadata.json"),
    ],
    ids=["unassigned-stage", "tampered-model"],
)
def test_build_fails_naming_the_problem(
    registry: Registry, tmp_path: Path, ref: str, message: str
) -> None:
    require_podman()
    assert registry.tampered_version == "v1.1.0"
    image = f"localhost/modelops/model-server:test-fail-{secrets.token_hex(4)}"
    done = build(registry, ref, image, tmp_path)
    assert done.returncode != 0
    assert sum(line.startswith(message) for line in done.stderr.splitlines()) == 1, done.stderr[
        -3000:
    ]
    assert podman("image", "exists", image, check=False).returncode != 0
