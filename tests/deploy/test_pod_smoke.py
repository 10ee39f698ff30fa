"""Pod smoke test: the dev overlay's rendered Deployment and ConfigMaps, run with podman kube play.

The model server image is built from serving/Dockerfile (images/build-model-server.sh) with a
model registered in a temp repo (the image tests' registry fixture) and tagged like a git SHA.
The dev overlay is deployed the GitOps way, in a temp copy: `kustomize edit set image` sets the
tag, the provenance patch names the model; `kubectl kustomize` renders it. Only what podman cannot
do on a host network is adapted: no container port mapping, a free loopback port for Nginx, unique
object names, and the upstream Nginx image's fully qualified name. Then a prediction goes through
the Nginx sidecar to the app, and both probe paths answer.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from image.registry_fixture import Registry, make_registry

from .conftest import ROOT, Docs, containers, documents, find, run

pytestmark = pytest.mark.e2e
CONTAINERS_CONF = ROOT / "images" / "containers.conf"


def podman_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", str(CONTAINERS_CONF))
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}:{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = env["GTO_NO_ANALYTICS"] = "1"
    return env


def podman(
    *args: str, check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["podman", *args],
        env=podman_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done


def upstream(key: str) -> str:
    for line in (ROOT / "images" / "upstream.env").read_text().splitlines():
        if line.startswith(f"{key}="):
            return line.split("=", 1)[1]
    raise KeyError(key)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any], dict[str, str]]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.load(answer), dict(answer.headers)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error), dict(error.headers)


@dataclass(frozen=True)
class Built:
    image: str
    tag: str
    registry: Registry


@dataclass(frozen=True)
class Pod:
    base: str
    rendered: Docs
    name: str


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    if shutil.which("podman") is None or shutil.which("catatonit") is None:
        pytest.skip("podman or catatonit missing: run make deploy-smoke-prereqs")
    if podman("image", "exists", upstream("NGINX_IMAGE"), check=False).returncode != 0:
        pytest.skip(f"{upstream('NGINX_IMAGE')} missing: run make images-base")
    with pytest.MonkeyPatch.context() as patch:  # dvc and gto of the project's venv
        patch.setenv("PATH", podman_env()["PATH"])
        registry = make_registry(tmp_path_factory.mktemp("registry"))
    tag = secrets.token_hex(20)  # shaped like the full git SHA a real build is tagged with
    image = f"localhost/modelops/model-server:{tag}"
    env = podman_env() | {
        "MODEL_REPO": str(registry.origin),
        "MODEL_REF": f"{registry.name}#{registry.stage}",
        "IMAGE": image,
        "MODELOPS_DVC_REMOTE_DIR": str(registry.dvc_remote),
        "MODELOPS_ENGINE": "podman",
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
    yield Built(image=image, tag=tag, registry=registry)
    podman("rmi", "--force", image, check=False)


def deploy_dev_overlay(built: Built, kustomize: str, kubectl: str, tmp: Path) -> Docs:
    """The dev overlay, pointed at the built image and its model the way a promotion PR does."""
    shutil.copytree(ROOT / "kustomize", tmp / "kustomize")
    dev = tmp / "kustomize" / "overlays" / "dev"
    run(kustomize, "edit", "set", "image", f"modelops/model-server=*:{built.tag}", cwd=dev)
    run(
        kustomize,
        "edit",
        "set",
        "image",
        f"nginxinc/nginx-unprivileged={upstream('NGINX_IMAGE')}",
        cwd=dev,
    )
    provenance = dev / "provenance.yaml"
    patch = yaml.safe_load(provenance.read_text())
    patch["spec"]["template"]["metadata"]["annotations"].update(
        {
            "modelops.io/model-version": built.registry.version,
            "modelops.io/model-sha256": built.registry.sha256,
        }
    )
    provenance.write_text(yaml.safe_dump(patch))
    return documents(run(kubectl, "kustomize", str(dev)).stdout)


def for_podman(docs: Docs, suffix: str, port: int) -> Docs:
    """The Deployment and ConfigMaps, adapted to podman on the host network (see module doc)."""
    kept = [d for d in docs if d["kind"] in {"Deployment", "ConfigMap"}]
    renamed = {d["metadata"]["name"]: f"{d['metadata']['name']}-{suffix}" for d in kept}
    for doc in kept:
        doc["metadata"].pop("namespace", None)
        doc["metadata"]["name"] = renamed[doc["metadata"]["name"]]
    pod = find(kept, "Deployment")["spec"]["template"]["spec"]
    for volume in pod["volumes"]:
        if "configMap" in volume:
            volume["configMap"]["name"] = renamed[volume["configMap"]["name"]]
    for container in pod["containers"]:
        container.pop("ports", None)  # host network: no port mapping
        for env in container.get("env", []):
            if env["name"] == "NGINX_LISTEN":
                env["value"] = f"127.0.0.1:{port}"
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            if probe in container:
                container[probe]["httpGet"]["port"] = port
    return kept


@pytest.fixture(scope="module")
def pod(
    built: Built, kustomize: str, kubectl: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pod]:
    tmp = tmp_path_factory.mktemp("smoke")
    rendered = deploy_dev_overlay(built, kustomize, kubectl, tmp)
    port = free_port()
    suffix = secrets.token_hex(3)
    manifest = tmp / "pod.yaml"
    manifest.write_text(yaml.safe_dump_all(for_podman(rendered, suffix, port)))
    base = f"http://127.0.0.1:{port}"
    try:
        podman("kube", "play", "--network", "host", str(manifest))
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if get(f"{base}/v2/health/ready")[0] == 200:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.5)
        else:
            logs = podman("pod", "logs", f"model-{suffix}-pod-0", check=False)
            raise AssertionError(
                f"the pod never became ready:\n{logs.stdout[-3000:]}{logs.stderr[-3000:]}"
            )
        yield Pod(base=base, rendered=rendered, name=f"model-{suffix}-pod-0")
    finally:
        podman("kube", "down", str(manifest), check=False)
        podman("pod", "rm", "--force", f"model-{suffix}-pod-0", check=False)
        for name in (f"model-uwsgi-{suffix}", f"model-nginx-{suffix}"):
            podman("volume", "rm", "--force", name, check=False)


def test_both_probe_paths_answer_through_the_nginx_sidecar(pod: Pod) -> None:
    nginx = containers(pod.rendered)["nginx"]
    ready = get(pod.base + nginx["readinessProbe"]["httpGet"]["path"])
    live = get(pod.base + nginx["livenessProbe"]["httpGet"]["path"])
    assert ready[:2] == (200, {"ready": True})
    assert live[:2] == (200, {"live": True})
    assert live[2].get("Server", "").startswith("nginx")


def test_a_prediction_goes_through_nginx_to_the_app_with_the_overlay_provenance(
    pod: Pod, built: Built
) -> None:
    status, body, headers = get(f"{pod.base}/predict", {"instances": [built.registry.sample]})
    assert status == 200, body
    assert body["labels"] == [built.registry.sample_label]
    provenance = headers["X-Model-Provenance"]
    assert f"git_commit={built.tag}" in provenance
    assert "stage=dev" in provenance and f"version={built.registry.version}" in provenance
    assert headers["Server"].startswith("nginx")


def test_both_containers_run_non_root_on_a_read_only_root_filesystem(pod: Pod) -> None:
    for container in ("app", "nginx"):
        info = json.loads(podman("inspect", f"{pod.name}-{container}").stdout)[0]
        assert info["HostConfig"]["ReadonlyRootfs"] is True, container
        assert info["Config"]["User"].split(":")[0] == "10001", container
        assert info["State"]["Running"] is True, container
