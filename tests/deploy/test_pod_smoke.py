"""Pod smoke test: the dev overlay's rendered Deployment and ConfigMaps, run with podman kube play.

The model server image is the session's (tests/image/builds.py, shared with the image tests):
built from serving/Dockerfile (images/build-model-server.sh) with a model registered in a temp
repo, tagged with HEAD's full SHA.
images/pod.py, the local pod runner, deploys the dev overlay the GitOps way in a temp copy (its
`images:` entries, the model server pinned as NAME:TAG@DIGEST like a deploy pull request pins it,
and the provenance patch naming that model), renders it with `kubectl
kustomize` and adapts only what podman on the host network needs (no port mapping, a free
loopback port for Nginx, unique object names). Then a prediction goes through the Nginx sidecar to
the app, and both probe paths answer.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from image.conftest import BuiltImage
from image.podman_cli import pod_runner, podman, require_kubectl
from image.registry_fixture import Registry

from serving import readiness

from .conftest import containers

pytestmark = pytest.mark.e2e

POD = pod_runner()
Pod = POD.Pod


@dataclass(frozen=True)
class Built:
    image: str
    digest: str  # what the build wrote to MODELOPS_IMAGE_OUT/digest
    registry: Registry


@pytest.fixture(scope="module")
def built(built_image: BuiltImage) -> Built:
    """The session's model-server image (tests/image/builds.py: built once for the image tests
    and this one), tagged with HEAD's full SHA as a real build is."""
    if shutil.which("catatonit") is None:
        pytest.skip("catatonit missing: run make deploy-smoke-prereqs")
    nginx_image = POD.base_images()["NGINX_IMAGE"]
    if podman("image", "exists", nginx_image, check=False).returncode != 0:
        pytest.skip(f"{nginx_image} missing: run make images-base")
    digest = (built_image.out / "digest").read_text().strip()
    return Built(image=built_image.name, digest=digest, registry=built_image.registry)


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


def test_the_app_prestop_hook_sees_nginx_running_in_the_other_container(pod: Pod) -> None:
    """The app's preStop, run as rendered in the app container, waits on the lock the Nginx
    container holds in the socket directory they share: with Nginx running it waits its limit
    (lowered to 1 s here) and says so. The pod's full stop under load, hooks included, is
    test_pod_drain.py's."""
    app = containers(pod.played)["app"]
    command = app["lifecycle"]["preStop"]["exec"]["command"]
    assert command == ["sh", "/etc/modelops/uwsgi/uwsgi-prestop.sh"]
    done = podman("exec", "-e", "MODELOPS_PRESTOP_WAIT=1", f"{pod.name}-app", *command)
    assert done.stderr == "uwsgi-prestop.sh: Nginx still runs after 1 s; uWSGI stops anyway\n"


def _started(container: str) -> tuple[str, int]:
    """When the container last started, and how often podman restarted it."""
    info = json.loads(podman("inspect", container).stdout)[0]
    return info["State"]["StartedAt"], info.get("RestartCount", 0)


def test_a_hung_app_fails_its_own_probes_while_nginx_passes_its_own(pod: Pod) -> None:
    """Last in this module: it restarts the app container.

    Every process of the app container is stopped (SIGSTOP from the host): the app hangs with its
    socket open. The app's probes are run as the kubelet runs exec probes, the rendered command
    inside the container (podman exec); Nginx's as the kubelet runs httpGet probes, a GET from
    outside on the rendered path and port. The app's fail, Nginx's pass. Then podman's own health
    check, which podman 4.3 made from the app's livenessProbe when it played the pod (it ignores
    readiness probes, and runs checks only when asked without systemd), fails as often as the
    probe's failureThreshold, and podman restarts the app container (its on-failure action), not
    Nginx; the app comes back ready."""
    played = containers(pod.played)
    app, nginx = played["app"], played["nginx"]
    app_name, nginx_name = f"{pod.name}-app", f"{pod.name}-nginx"

    def exec_probe(probe: str) -> subprocess.CompletedProcess[str]:
        return podman("exec", app_name, *app[probe]["exec"]["command"], check=False, timeout=60)

    def http_probe(probe: str) -> int:
        get = nginx[probe]["httpGet"]
        return int(POD.call(f"http://127.0.0.1:{get['port']}{get['path']}")[0])

    health = json.loads(podman("inspect", app_name).stdout)[0]["Config"]["Healthcheck"]
    assert "serving.probe" in " ".join(health["Test"]), health
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        done = exec_probe(probe)
        assert done.returncode == 0, (probe, done.stderr)
    assert [http_probe("readinessProbe"), http_probe("livenessProbe")] == [200, 200]
    assert podman("healthcheck", "run", app_name, check=False).returncode == 0
    nginx_before, app_before = _started(nginx_name), _started(app_name)

    host_pids = [int(pid) for pid in podman("top", app_name, "hpid").stdout.split()[1:]]
    assert host_pids, "the app container runs processes"
    for pid in host_pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        for probe in ("readinessProbe", "livenessProbe"):
            done = exec_probe(probe)
            assert done.returncode == 1, (probe, done.stdout, done.stderr)
            assert "no answer within 4 s" in done.stderr, done.stderr
        assert [http_probe("readinessProbe"), http_probe("livenessProbe")] == [200, 200]
        answers = [
            podman("healthcheck", "run", app_name, check=False, timeout=120)
            for _ in range(app["livenessProbe"]["failureThreshold"])
        ]
        assert [a.returncode for a in answers] == [1] * len(answers), answers
    finally:
        for pid in host_pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    readiness.wait_ready(f"{pod.base}/v2/health/ready", 120, "the restarted app container")
    assert _started(app_name) != app_before, "podman restarted the app container"
    assert _started(nginx_name) == nginx_before, "and left Nginx alone"
    assert exec_probe("readinessProbe").returncode == 0
