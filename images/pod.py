"""The model server pod, run locally with ``podman kube play``: the app image and the Nginx
sidecar sharing an emptyDir for the uWSGI socket, Nginx configured only by the serving config
files (mounted from a ConfigMap, unchanged), every container non-root with a read-only root
filesystem. Used by the image tests and by ``make demo-image``.

    python images/pod.py demo --image IMAGE [--nginx-image IMAGE]

plays the pod on a free loopback port, waits until it is ready, sends one prediction (the first
row of the bundled data set) and prints the answer with its provenance, then removes the pod. A
pod not ready within 90 s, or a container that exits, ends it with ``error:`` and one line saying
what it waited for, followed by the last lines of both containers' logs (serving.readiness).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python images/pod.py`: the checkout's serving package
    sys.path.insert(0, str(ROOT))
from serving.readiness import Containers, wait_ready  # noqa: E402

CONFIG = ROOT / "serving" / "config"
APP_UID = 10001
NGINX_UID = 101  # the upstream unprivileged image's user; the stand-in uses the same


def base_image(key: str) -> str:
    """PYTHON_IMAGE or NGINX_IMAGE as images/base-images.sh resolves it (upstream or stand-in)."""
    out = subprocess.run(
        [str(ROOT / "images" / "base-images.sh")],
        env=podman_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines())[key]


def podman_env() -> dict[str, str]:
    """The environment podman runs in: the repository's containers.conf unless one is set."""
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", str(ROOT / "images" / "containers.conf"))
    return env


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["podman", *args], env=podman_env(), capture_output=True, text=True, check=False
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)} failed: {done.stderr.strip()}")
    return done


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def restricted(uid: int) -> dict[str, Any]:
    """Pod Security Standards "restricted", as the chart sets it."""
    return {
        "runAsUser": uid,
        "runAsGroup": uid,
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }


def manifest(
    name: str, image: str, nginx_image: str, port: int, socket_dir: Path
) -> list[dict[str, Any]]:
    """ConfigMap (serving/config's Nginx files, unchanged) + Pod (app, Nginx sidecar).

    The socket volume is a hostPath to ``socket_dir`` (mode 1777), not an emptyDir: Kubernetes
    creates an emptyDir world-writable, podman chowns it to the user of whichever container
    mounts it first, so with an emptyDir uWSGI (uid 10001) cannot bind its socket whenever the
    Nginx container (uid 101) happens to start first."""
    files = ("nginx.conf.template", "nginx-start.sh")
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{name}-nginx"},
        "data": {f: (CONFIG / f).read_text() for f in files},
    }
    socket_mount = {"name": "socket", "mountPath": "/run/modelops"}
    tmp = "/tmp"  # noqa: S108 (the container's /tmp, an emptyDir)
    app = {
        "name": "app",
        "image": image,
        "securityContext": restricted(APP_UID),
        "volumeMounts": [socket_mount, {"name": "app-tmp", "mountPath": tmp}],
    }
    nginx = {
        "name": "nginx",
        "image": nginx_image,
        "command": ["sh", "/etc/modelops/nginx/nginx-start.sh"],
        "env": [{"name": "NGINX_LISTEN", "value": f"127.0.0.1:{port}"}],
        "securityContext": restricted(NGINX_UID),
        "volumeMounts": [
            socket_mount,
            {"name": "nginx-tmp", "mountPath": tmp},
            {"name": "nginx-conf", "mountPath": "/etc/modelops/nginx", "readOnly": True},
        ],
    }
    volumes: list[dict[str, Any]] = [
        {"name": "socket", "hostPath": {"path": str(socket_dir), "type": "Directory"}}
    ]
    volumes += [{"name": v, "emptyDir": {}} for v in ("app-tmp", "nginx-tmp")]
    volumes.append({"name": "nginx-conf", "configMap": {"name": f"{name}-nginx"}})
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [app, nginx], "volumes": volumes},
    }
    return [config_map, pod]


@contextmanager
def running_pod(image: str, nginx_image: str, timeout: float = 90) -> Iterator[str]:
    """Play the pod, yield its base URL once ready; remove pod and volumes by name afterwards.

    Not ready within ``timeout`` seconds, or a container exited: ``NotReadyError``
    (serving.readiness) with the last lines of both containers' logs."""
    name = f"modelops-{secrets.token_hex(4)}"
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pod.yaml"
        socket_dir = Path(tmp) / "socket"
        socket_dir.mkdir()
        socket_dir.chmod(0o1777)
        docs = manifest(name, image, nginx_image, port, socket_dir)
        path.write_text(yaml.safe_dump_all(docs))
        containers = Containers(
            [f"{name}-{c['name']}" for c in docs[1]["spec"]["containers"]], podman_env()
        )
        try:
            podman("kube", "play", "--network", "host", str(path))
            base = f"http://127.0.0.1:{port}"
            wait_ready(
                f"{base}/v2/health/ready",
                timeout,
                f"the pod {name}",
                exited=containers.exited,
                log_tail=containers.log_tail,
            )
            yield base
        finally:
            podman("kube", "down", str(path), check=False)
            podman("pod", "rm", "--force", name, check=False)
            podman("volume", "rm", "--force", f"{name}-nginx", check=False)


def sample_row() -> dict[str, float]:
    """The first row of the bundled data set, by the contract's snake_case feature names."""
    import re

    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    names = [re.sub(r"[^0-9a-z]+", "_", n.lower()).strip("_") for n in bunch.feature_names]
    return {n: float(v) for n, v in zip(names, bunch.data[0], strict=True)}


def demo(image: str, nginx_image: str) -> int:
    with running_pod(image, nginx_image) as base:
        body = json.dumps({"instances": [sample_row()]}).encode()
        request = urllib.request.Request(  # noqa: S310 (loopback URL)
            f"{base}/predict", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
            payload = json.load(answer)
            provenance = answer.headers.get("X-Model-Provenance", "")
    print(f"image: {image} (pod: app + {nginx_image} sidecar, podman kube play)")
    print(f"prediction: {payload['labels'][0]}  probabilities {payload['probabilities'][0]}")
    print(f"provenance: {provenance}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="run the pod, send one prediction, remove the pod")
    d.add_argument("--image", required=True)
    d.add_argument("--nginx-image", help="default: images/base-images.sh's NGINX_IMAGE")
    args = parser.parse_args(argv)
    args.nginx_image = args.nginx_image or base_image("NGINX_IMAGE")
    try:
        return demo(args.image, args.nginx_image)
    except (RuntimeError, OSError) as exc:  # NotReadyError, URLError
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
