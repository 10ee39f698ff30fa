"""Pod smoke test: the dev overlay's rendered Deployment and ConfigMaps, run with podman kube play.

The model server image is built from serving/Dockerfile (images/build-model-server.sh) with a
model registered in a temp repo (the image tests' registry fixture) and tagged like a git SHA.
images/pod.py, the local pod runner, deploys the dev overlay the GitOps way in a temp copy (its
`images:` entries, the model server pinned as NAME:TAG@DIGEST like a deploy pull request pins it,
and the provenance patch naming that model), renders it with `kubectl
kustomize` and adapts only what podman on the host network needs (no port mapping, a free
loopback port for Nginx, unique object names). Then a prediction goes through the Nginx sidecar to
the app, and both probe paths answer.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from image.podman_cli import pod_runner, podman, podman_env, require_kubectl
from image.registry_fixture import Registry, make_registry

from .conftest import ROOT, containers

pytestmark = pytest.mark.e2e

POD = pod_runner()
Pod = POD.Pod


@dataclass(frozen=True)
class Built:
    image: str
    tag: str
    digest: str  # what the build wrote to MODELOPS_IMAGE_OUT/digest
    registry: Registry


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    if shutil.which("podman") is None or shutil.which("catatonit") is None:
        pytest.skip("podman or catatonit missing: run make deploy-smoke-prereqs")
    nginx_image = POD.base_images()["NGINX_IMAGE"]
    if podman("image", "exists", nginx_image, check=False).returncode != 0:
        pytest.skip(f"{nginx_image} missing: run make images-base")
    with pytest.MonkeyPatch.context() as patch:  # dvc and gto of the project's venv
        patch.setenv("PATH", podman_env()["PATH"])
        registry = make_registry(tmp_path_factory.mktemp("registry"))
    tag = secrets.token_hex(20)  # shaped like the full git SHA a real build is tagged with
    image = f"localhost/modelops/model-server:{tag}"
    out = tmp_path_factory.mktemp("image-out")  # the build writes the image's digest there
    env = podman_env() | {
        "MODEL_REPO": str(registry.origin),
        "MODEL_REF": f"{registry.name}#{registry.stage}",
        "IMAGE": image,
        "MODELOPS_DVC_REMOTE_DIR": str(registry.dvc_remote),
        "MODELOPS_ENGINE": "podman",
        "MODELOPS_IMAGE_OUT": str(out),
    }
    done = subprocess.run(
        [str(ROOT / "images" / "build-model-server.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, f"image build failed:\n{done.stderr[-4000:]}"
    digest = (out / "digest").read_text().strip()
    yield Built(image=image, tag=tag, digest=digest, registry=registry)
    podman("rmi", "--force", image, check=False)


@pytest.fixture(scope="module")
def pod(built: Built) -> Iterator[Pod]:
    """The dev overlay with the built image, pinned by tag and digest as the overlays pin it, and
    its model's provenance, played and ready."""
    require_kubectl()
    provenance = {
        "modelops.io/model-version": built.registry.version,
        "modelops.io/model-sha256": built.registry.sha256,
    }
    # NotReadyError: one line, then the containers' logs
    pinned = f"{built.image}@{built.digest}"
    with POD.running_pod(pinned, "dev", annotations=provenance) as running:
        yield running


def test_both_probe_paths_answer_through_the_nginx_sidecar(pod: Pod) -> None:
    nginx = containers(pod.rendered)["nginx"]
    ready = POD.call(pod.base + nginx["readinessProbe"]["httpGet"]["path"])
    live = POD.call(pod.base + nginx["livenessProbe"]["httpGet"]["path"])
    assert ready[:2] == (200, {"ready": True})
    assert live[:2] == (200, {"live": True})
    assert live[2].get("Server", "").startswith("nginx")


def test_a_prediction_goes_through_nginx_to_the_app(pod: Pod, built: Built) -> None:
    """The answer only: that every source of provenance names the same release (pod, registry,
    rendered manifests, GTO) is tests/workflows/test_act_image.py's, on a release promote.yml
    really built and pushed."""
    status, body, headers = POD.call(f"{pod.base}/predict", {"instances": [built.registry.sample]})
    assert status == 200, body
    assert body["labels"] == [built.registry.sample_label]
    assert headers["Server"].startswith("nginx")


def test_both_containers_run_non_root_on_a_read_only_root_filesystem(pod: Pod) -> None:
    for container in ("app", "nginx"):
        info = json.loads(podman("inspect", f"{pod.name}-{container}").stdout)[0]
        assert info["HostConfig"]["ReadonlyRootfs"] is True, container
        assert info["Config"]["User"].split(":")[0] == "10001", container
        assert info["State"]["Running"] is True, container
