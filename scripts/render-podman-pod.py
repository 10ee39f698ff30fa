#!/usr/bin/env python3
"""Render an overlay's Deployment and ConfigMaps for `podman kube play`, and optionally run them.

The overlay is deployed the GitOps way in a temporary copy of kustomize/: `kustomize edit set
image` points it at IMAGE (and the Nginx sidecar at NGINX_IMAGE), `kubectl kustomize` renders it.
Only what podman on the host network needs is then adapted: no `ports:` (podman refuses port
mappings there), Nginx on 127.0.0.1:PORT (NGINX_LISTEN and the probes), no namespace, and object
names with SUFFIX so that parallel runs do not collide. Used by the pod smoke test
(tests/deploy/test_pod_smoke.py) and by `make demo-deploy`.

usage: scripts/render-podman-pod.py render --image IMAGE [--port N] [options]   # YAML on stdout
       scripts/render-podman-pod.py demo --image IMAGE [options]   # play, predict, print, remove

A pod not ready within 90 s, or a container that exits, ends `demo` with `error:` and one line
saying what it waited for, then the last lines of each container's log (serving.readiness).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: the checkout's serving package
    sys.path.insert(0, str(ROOT))
from serving import readiness  # noqa: E402

Docs = list[dict[str, Any]]


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


def tool(name: str) -> str:
    pinned = ROOT / ".tools" / "bin" / name
    return str(pinned) if pinned.exists() else name


def run(*args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"{Path(args[0]).name} {' '.join(args[1:3])} failed: {done.stderr.strip()}"
        )
    return done.stdout


def render_overlay(
    env: str, image: str, nginx_image: str, annotations: dict[str, str], work: Path
) -> Docs:
    """The overlay's manifests after the image (and provenance) change a promotion PR makes."""
    shutil.copytree(ROOT / "kustomize", work / "kustomize")
    overlay = work / "kustomize" / "overlays" / env
    name, _, tag = image.rpartition(":")
    kustomize = tool("kustomize")
    run(kustomize, "edit", "set", "image", f"modelops/model-server={name}:{tag}", cwd=overlay)
    run(
        kustomize, "edit", "set", "image", f"nginxinc/nginx-unprivileged={nginx_image}", cwd=overlay
    )
    if annotations:
        provenance = overlay / "provenance.yaml"
        patch = yaml.safe_load(provenance.read_text())
        patch["spec"]["template"]["metadata"]["annotations"].update(annotations)
        provenance.write_text(yaml.safe_dump(patch))
    return [d for d in yaml.safe_load_all(run(tool("kubectl"), "kustomize", str(overlay))) if d]


def for_podman(docs: Docs, suffix: str, port: int) -> Docs:
    """The Deployment and ConfigMaps, adapted to podman on the host network (see above)."""
    kept = [d for d in docs if d["kind"] in {"Deployment", "ConfigMap"}]
    renamed = {d["metadata"]["name"]: f"{d['metadata']['name']}-{suffix}" for d in kept}
    for doc in kept:
        doc["metadata"].pop("namespace", None)
        doc["metadata"]["name"] = renamed[doc["metadata"]["name"]]
    (deployment,) = [d for d in kept if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    for volume in pod["volumes"]:
        if "configMap" in volume:
            volume["configMap"]["name"] = renamed[volume["configMap"]["name"]]
    for container in pod["containers"]:
        container.pop("ports", None)
        for variable in container.get("env", []):
            if variable["name"] == "NGINX_LISTEN":
                variable["value"] = f"127.0.0.1:{port}"
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            if probe in container:
                container[probe]["httpGet"]["port"] = port
    return kept


def pod_name(docs: Docs) -> str:
    """The name podman gives the Deployment's pod."""
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    return f"{deployment['metadata']['name']}-pod-0"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def podman_env() -> dict[str, str]:
    """The environment podman runs in: the repository's containers.conf unless one is set."""
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", str(ROOT / "images" / "containers.conf"))
    return env


def podman(*args: str, check: bool = True) -> str:
    done = subprocess.run(
        ["podman", *args], env=podman_env(), capture_output=True, text=True, check=False
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args[:2])} failed: {done.stderr.strip()}")
    return done.stdout


def remove(manifest: Path, docs: Docs) -> None:
    """Remove the pod and the ConfigMap volumes podman made for it (kube down leaves those)."""
    podman("kube", "down", str(manifest), check=False)
    podman("pod", "rm", "--force", pod_name(docs), check=False)
    for doc in docs:
        if doc["kind"] == "ConfigMap":
            podman("volume", "rm", "--force", doc["metadata"]["name"], check=False)


def call(url: str, body: object = None) -> tuple[int, Any, dict[str, str]]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 (loopback)
            return answer.status, json.load(answer), dict(answer.headers)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error), dict(error.headers)


def wait_ready(base: str, docs: Docs, timeout: float = 90) -> None:
    """Return once the played pod of ``docs`` answers ``/v2/health/ready`` at ``base`` through
    Nginx. A container that exits, or no answer within ``timeout`` seconds: ``NotReadyError``
    (serving.readiness) with the last lines of each container's ``podman logs``."""
    pod = pod_name(docs)
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    names = [f"{pod}-{c['name']}" for c in deployment["spec"]["template"]["spec"]["containers"]]
    containers = readiness.Containers(names, podman_env())
    readiness.wait_ready(
        f"{base}/v2/health/ready",
        timeout,
        f"the pod {pod}",
        exited=containers.exited,
        log_tail=containers.log_tail,
    )


def sample_row() -> dict[str, float]:
    """The first row of the bundled data set, by the contract's snake_case feature names."""
    import re

    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    names = [re.sub(r"[^0-9a-z]+", "_", n.lower()).strip("_") for n in bunch.feature_names]
    return {n: float(v) for n, v in zip(names, bunch.data[0], strict=True)}


def provenance_from_labels(image: str) -> dict[str, str]:
    """The model version and sha256 the image's labels name, as the overlay's annotations."""
    labels = json.loads(podman("image", "inspect", image, "--format", "{{json .Config.Labels}}"))
    keys = {"modelops.io/model-version": "version", "modelops.io/model-sha256": "sha256"}
    found = {
        key: (labels or {}).get(f"io.modelops.model.{label}", "") for key, label in keys.items()
    }
    return {key: value for key, value in found.items() if value}


def demo(env: str, image: str, nginx_image: str) -> int:
    """Play the overlay's pod, print both probes and one prediction, remove the pod.

    The overlay's provenance patch gets the image's model version and sha256 (from its labels),
    as the promotion pull request would set them; the sha256 pins the model the server loads."""
    port, suffix = free_port(), secrets.token_hex(3)
    annotations = provenance_from_labels(image)
    with tempfile.TemporaryDirectory(prefix="modelops-pod-") as tmp:
        rendered = render_overlay(env, image, nginx_image, annotations, Path(tmp))
        docs = for_podman(rendered, suffix, port)
        manifest = Path(tmp) / "pod.yaml"
        manifest.write_text(yaml.safe_dump_all(docs))
        base = f"http://127.0.0.1:{port}"
        try:
            podman("kube", "play", "--network", "host", str(manifest))
            wait_ready(base, docs, 90)
            print(f"{env} overlay as a pod (podman kube play): {image}")
            for path in ("/v2/health/ready", "/v2/health/live"):
                print(f"GET {path} -> {call(base + path)[:2]}")
            status, body, headers = call(f"{base}/predict", {"instances": [sample_row()]})
            print(f"POST /predict -> {status} {body}")
            print(f"provenance: {headers.get('X-Model-Provenance', '')}")
        finally:
            remove(manifest, docs)
    return 0 if status == 200 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["render", "demo"])
    parser.add_argument("--image", required=True, help="model server image, NAME:TAG")
    parser.add_argument("--nginx-image", help="default: images/base-images.sh's NGINX_IMAGE")
    parser.add_argument("--env", default="dev", help="overlay directory name")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--suffix", default="local")
    args = parser.parse_args(argv)
    if ":" not in args.image.rpartition("/")[2]:
        print(f"error: --image {args.image!r} has no tag (NAME:TAG)", file=sys.stderr)
        return 2
    args.nginx_image = args.nginx_image or base_image("NGINX_IMAGE")
    try:
        if args.command == "demo":
            return demo(args.env, args.image, args.nginx_image)
        with tempfile.TemporaryDirectory(prefix="modelops-pod-") as tmp:
            docs = render_overlay(args.env, args.image, args.nginx_image, {}, Path(tmp))
        print(yaml.safe_dump_all(for_podman(docs, args.suffix, args.port)), end="")
    except (RuntimeError, OSError) as error:  # NotReadyError, URLError
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
