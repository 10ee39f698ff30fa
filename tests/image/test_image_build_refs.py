"""The other GTO ref forms, and builds that must fail and say why in one line: a GTO ref that
resolves to nothing, and a registered model whose file does not match its model card."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from .conftest import build, require_podman
from .podman_cli import podman
from .registry_fixture import Registry, make_registry, move_stage

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        (
            "diagnosis-classifier#prod",
            "error: GTO ref diagnosis-classifier#prod resolves to no registered version",
        ),
        (
            "diagnosis-classifier#staging#7",
            "error: GTO ref diagnosis-classifier#staging#7 resolves to no registered version",
        ),
        ("diagnosis-classifier@v1.1.0", "error: /model/model.onnx: sha256 mismatch: the file has"),
    ],
    ids=["unassigned-stage", "no-such-assignment", "tampered-model"],
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


def test_a_build_log_keeps_the_output_and_shows_its_tail_on_failure(
    registry: Registry, tmp_path: Path
) -> None:
    """What `make demo` does: the engine's output goes to a file; a failure still says why."""
    require_podman()
    log = tmp_path / "logs" / "image-build.log"
    image = f"localhost/modelops/model-server:test-fail-{secrets.token_hex(4)}"
    done = build(registry, "diagnosis-classifier#prod", image, tmp_path, build_log=log)
    assert done.returncode != 0
    problem = "error: GTO ref diagnosis-classifier#prod resolves to no registered version"
    assert problem in done.stderr
    assert done.stderr.rstrip().endswith(f"error: image build failed; the whole log is {log}")
    whole = log.read_text()
    assert problem in whole and "STEP 1/" in whole
    tail = whole.splitlines()[-40:]
    assert "\n".join(tail) in done.stderr, "the log's last 40 lines are shown"
    rest = [line for line in done.stderr.splitlines() if line not in tail]
    expected = ("build log: ", "base images: ", "pass 1: ", "error: ")
    assert all(line.startswith(expected) for line in rest), rest


def test_builds_from_the_exact_assignment_tag_ci_passes(registry: Registry, tmp_path: Path) -> None:
    """CI builds from the immutable ``NAME#STAGE#N`` tag (docs/workflow.md)."""
    require_podman()
    image = f"localhost/modelops/model-server:test-exact-{secrets.token_hex(4)}"
    done = build(registry, f"{registry.name}#{registry.stage}#1", image, tmp_path)
    try:
        assert done.returncode == 0, done.stderr[-3000:]
        labels = json.loads(podman("image", "inspect", image).stdout)[0]["Config"]["Labels"]
        assert labels["io.modelops.model.version"] == registry.version
        assert labels["io.modelops.model.stage"] == registry.stage
        assert labels["io.modelops.model.sha256"] == registry.sha256
    finally:
        podman("rmi", "--force", image, check=False)


def test_a_moved_stage_is_fetched_again_not_taken_from_the_build_cache(tmp_path: Path) -> None:
    """Same MODEL_REF text, new target: the second build must ship the new model."""
    require_podman()
    registry = make_registry(tmp_path / "registry")
    ref = f"{registry.name}#{registry.stage}"
    image = f"localhost/modelops/model-server:test-moved-{secrets.token_hex(4)}"
    try:
        for version, sha256 in ((registry.version, registry.sha256), ("v1.2.0", "")):
            if not sha256:
                sha256 = move_stage(registry, version)
                assert sha256 != registry.sha256
            done = build(registry, ref, image, tmp_path)
            assert done.returncode == 0, done.stderr[-3000:]
            labels = json.loads(podman("image", "inspect", image).stdout)[0]["Config"]["Labels"]
            assert (labels["io.modelops.model.version"], labels["io.modelops.model.sha256"]) == (
                version,
                sha256,
            )
    finally:
        podman("rmi", "--force", image, check=False)
