"""The other GTO ref forms, and builds that must fail and say why in one line: a GTO ref that
resolves to nothing, and a registered model whose file does not match its model card."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest
from sklearn.datasets import load_wine

from .conftest import build, require_podman
from .podman_cli import podman
from .registry_fixture import NAME, Registry, make_registry, move_stage, register_version

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        (f"{NAME}#prod", f"error: GTO ref {NAME}#prod resolves to no registered version"),
        (
            f"{NAME}#staging#7",
            f"error: GTO ref {NAME}#staging#7 resolves to no registered version",
        ),
        (f"{NAME}@v1.1.0", "error: /model/model.onnx: sha256 mismatch: the file has"),
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
    done = build(registry, f"{registry.name}#prod", image, tmp_path, build_log=log)
    assert done.returncode != 0
    problem = f"error: GTO ref {registry.name}#prod resolves to no registered version"
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


def test_a_three_class_model_is_built_into_an_image_that_serves_both_protocols(
    registry: Registry, tmp_path: Path
) -> None:
    """Another dataset (wine: 13 features, three classes) through the same build: the image
    runs its ONNX graph and answers /predict and /v2 infer with three probabilities."""
    require_podman()
    _, features, labels = register_version(registry, "v3.0.0", load_wine)
    image = f"localhost/modelops/model-server:test-wine-{secrets.token_hex(4)}"
    try:
        done = build(registry, f"{registry.name}@v3.0.0", image, tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        row = {name: float(value) for name, value in features.iloc[0].items()}
        script = (
            "import json, sys; from serving.app import create_app; "
            "from serving.metrics import reset_multiproc_dir; "
            "reset_multiproc_dir(); "  # as serving/wsgi.py does in the master
            "client = create_app().test_client(); row = json.loads(sys.argv[1]); "
            "p = client.post('/predict', json={'instances': [row]}).get_json(); "
            "t = {'name': 'x', 'shape': [1, len(row)], 'datatype': 'FP64', "
            "'data': list(row.values())}; "
            "v = client.post('/v2/models/" + registry.name + "/infer', "
            "json={'inputs': [t]}).get_json(); "
            "print(json.dumps({'predict': p, 'v2': v}))"
        )
        # /tmp writable, as the pod's emptyDir makes it: the metrics directory is there
        out = podman(
            "run", "--rm", "--read-only", "--tmpfs", "/tmp", "--network", "none", image,
            "python3", "-c", script, json.dumps(row),
        ).stdout  # fmt: skip
        answers = json.loads(out)
        assert answers["predict"]["classes"] == sorted(set(labels))
        assert answers["predict"]["labels"] == [labels.iloc[0]]
        assert len(answers["predict"]["probabilities"][0]) == 3
        outputs = {o["name"]: o for o in answers["v2"]["outputs"]}
        assert outputs["predict_proba"]["shape"] == [1, 3]
        assert outputs["predict"]["data"] == [labels.iloc[0]]
    finally:
        podman("rmi", "--force", image, check=False)
