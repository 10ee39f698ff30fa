"""The local pod runner: an overlay's rendered manifests, run with ``podman kube play``.

The one way this project runs the model server pod on a machine without Kubernetes: the image
tests, the pod smoke test (tests/deploy/test_pod_smoke.py), ``make demo-image`` (and so ``make
demo``) and ``make demo-deploy`` all go through ``running_pod``. No pod spec is written here: the
overlay is deployed the GitOps way in a temporary copy of kustomize/ (its ``images:`` entries point
at IMAGE and at the Nginx image, its provenance patch at the model the image's labels name, as a
promotion pull request would) and rendered with ``kubectl kustomize``. Then only what podman on the
host network needs is adapted (``for_podman``): no ``ports:`` (podman refuses port mappings
there), Nginx on 127.0.0.1:PORT (NGINX_LISTEN and its httpGet probes), no namespace, object
names with a suffix so that parallel runs do not collide. Deployment and ConfigMaps are played;
the rest of the overlay (Service, HPA, PDB, NetworkPolicy, ServiceAccount) has no meaning to
podman.

podman runs no preStop hooks: ``stop`` is the kubelet's part of a pod's stop, played on a running
Pod (each container's preStop hook, all at once, then each container's stop signal when its own
hook has returned, SIGKILL at the end of the rendered terminationGracePeriodSeconds).
tests/deploy/test_pod_drain.py stops pods that way under load; ``playing`` itself removes a pod
at once (``podman kube down``). podman has no terminating pod either: with the Deployment's
restartPolicy (Always) it starts Nginx again when its preStop hook has stopped it, and that Nginx
serves while uWSGI stops. A pod played ``stoppable`` gets ``restartPolicy: OnFailure`` instead,
which restarts no container that has stopped cleanly (the kubelet restarts none of a terminating
pod) and still restarts one that fails; podman 4.3 then no longer restarts a container whose
liveness probe fails (it sets that action for Always only), so only pods meant for ``stop`` are
played that way.

    python images/pod.py render --image IMAGE [--env ENV] [--port N]   # the YAML, on stdout
    python images/pod.py demo --image IMAGE [--env ENV]   # play, probe, predict, print, remove

``running_rendered`` plays an environment's committed rendered manifests as they are
(``rendered/<env>/manifests.yaml``, images pinned by digest): the GitOps demo (gitops.demo) runs
each environment that way. Images are never pulled (``imagePullPolicy: IfNotPresent``): the model
server image is the one built here, found by its digest.

The Nginx image defaults to the one images/base-images.sh resolves (the upstream image, or its
local stand-in). A pod not ready within 90 s, or a container that exits, ends ``demo`` with
``error:`` and one line saying what it waited for, then the last lines of each container's log
(serving.readiness).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import copy
import json
import math
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python images/pod.py`: the checkout's serving package
    sys.path.insert(0, str(ROOT))
from gitops.rendered import deployment as model_deployment  # noqa: E402
from gitops.rendered import is_relay  # noqa: E402
from serving import readiness  # noqa: E402
from serving.provenance import FIELDS as PROVENANCE_FIELDS  # noqa: E402
from serving.provenance import HEADER as PROVENANCE_HEADER  # noqa: E402

Docs = list[dict[str, Any]]
# The image names the chart renders, which an overlay's `images:` entries replace.
MODEL_SERVER = "modelops/model-server"


def podman_env() -> dict[str, str]:
    """The environment podman runs in: the repository's containers.conf unless one is set."""
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", str(ROOT / "images" / "containers.conf"))
    return env


def podman(*args: str, check: bool = True) -> str:
    """``podman ARGS``' stdout; with ``check``, a failure raises RuntimeError with its stderr."""
    done = subprocess.run(
        ["podman", *args], env=podman_env(), capture_output=True, text=True, check=False
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args[:2])} failed: {done.stderr.strip()}")
    return done.stdout


def base_images(*options: str) -> dict[str, str]:
    """images/base-images.sh's answer: PYTHON_IMAGE and NGINX_IMAGE, the base images every build
    and pod uses (with ``--candidates`` also PYTHON_UPSTREAM, NGINX_UPSTREAM, ..._STAND_IN)."""
    done = subprocess.run(
        [str(ROOT / "images" / "base-images.sh"), *options],
        env=podman_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"images/base-images.sh failed: {done.stderr.strip()}")
    return dict(line.split("=", 1) for line in done.stdout.splitlines())


def stand_in_for(image: str) -> str:
    """What the local image stands in for ("" for an upstream image: see images/base-images.sh)."""
    done = subprocess.run(
        [str(ROOT / "images" / "base-images.sh"), "--stand-in-for", image],
        env=podman_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip()


def tool(name: str) -> str:
    """The pinned binary from .tools/bin (make tools), else the one on PATH."""
    pinned = ROOT / ".tools" / "bin" / name
    return str(pinned) if pinned.exists() else name


def run(*args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"{Path(args[0]).name} {' '.join(args[1:3])} failed: {done.stderr.strip()}"
        )
    return done.stdout


def image_entry(name: str, image: str) -> dict[str, str]:
    """A kustomize ``images:`` entry replacing ``name`` with ``image`` (NAME[:TAG][@DIGEST])."""
    reference, _, digest = image.partition("@")
    repository, tag = reference, ""
    if ":" in reference.rpartition("/")[2]:
        repository, _, tag = reference.rpartition(":")
    entry = {"name": name, "newName": repository}
    if tag:
        entry["newTag"] = tag
    if digest:
        entry["digest"] = digest
    return entry


def set_images(overlay: Path, images: dict[str, str]) -> None:
    """Point the overlay's ``images:`` entries at ``images`` (chart name -> image), in its
    kustomization.yaml: the one-line change a deploy pull request makes, written with PyYAML
    here rather than `kustomize edit set image`, so that one kustomize (kubectl's) does it all."""
    path = overlay / "kustomization.yaml"
    kustomization = yaml.safe_load(path.read_text())
    entries = [e for e in kustomization.get("images", []) if e["name"] not in images]
    entries += [image_entry(name, image) for name, image in images.items()]
    kustomization["images"] = entries
    path.write_text(yaml.safe_dump(kustomization, sort_keys=False))


def render_overlay(
    env: str, image: str, nginx_image: str, annotations: dict[str, str], work: Path
) -> Docs:
    """The overlay's manifests after the image (and provenance) change a promotion PR makes,
    rendered by ``kubectl kustomize`` in a copy of kustomize/ under ``work``."""
    shutil.copytree(ROOT / "kustomize", work / "kustomize")
    overlay = work / "kustomize" / "overlays" / env
    if not overlay.is_dir():
        overlays = sorted(p.name for p in overlay.parent.iterdir() if p.is_dir())
        raise RuntimeError(f"no overlay {env!r}: use one of {', '.join(overlays)}")
    nginx_upstream = base_images("--candidates")["NGINX_UPSTREAM"]
    nginx_name = image_entry(nginx_upstream, nginx_upstream)["newName"]
    set_images(overlay, {MODEL_SERVER: image, nginx_name: nginx_image})
    if annotations:
        provenance = overlay / "provenance.yaml"
        patch = yaml.safe_load(provenance.read_text())
        patch["spec"]["template"]["metadata"]["annotations"].update(annotations)
        provenance.write_text(yaml.safe_dump(patch))
    return [d for d in yaml.safe_load_all(run(tool("kubectl"), "kustomize", str(overlay))) if d]


def for_podman(docs: Docs, suffix: str, port: int, stoppable: bool = False) -> Docs:
    """The Deployment and ConfigMaps, adapted to podman on the host network; ``stoppable``:
    restartPolicy OnFailure, for ``stop`` (see above)."""
    # the model server's; the retraining relay's Deployment (monitoring on) has nothing to play
    kept = [d for d in docs if d["kind"] in {"Deployment", "ConfigMap"} and not is_relay(d)]
    renamed = {d["metadata"]["name"]: f"{d['metadata']['name']}-{suffix}" for d in kept}
    for doc in kept:
        doc["metadata"].pop("namespace", None)
        doc["metadata"]["name"] = renamed[doc["metadata"]["name"]]
    pod = deployment(kept)["spec"]["template"]["spec"]
    if stoppable:
        pod["restartPolicy"] = "OnFailure"
    # podman 4.3 makes each emptyDir a named volume called as the pod's volume: two pods played
    # at once would share them (one Nginx talking to the other pod's uWSGI socket). Suffixed too.
    scratch = {}
    for volume in pod["volumes"]:
        if "configMap" in volume:
            volume["configMap"]["name"] = renamed[volume["configMap"]["name"]]
        if "emptyDir" in volume:
            scratch[volume["name"]] = volume["name"] = f"{volume['name']}-{suffix}"
    for container in pod["containers"]:
        for mount in container.get("volumeMounts", []):
            mount["name"] = scratch.get(mount["name"], mount["name"])
        container.pop("ports", None)
        container["imagePullPolicy"] = "IfNotPresent"  # the local image, by its digest
        for variable in container.get("env", []):
            if variable["name"] == "NGINX_LISTEN":
                variable["value"] = f"127.0.0.1:{port}"
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            if "httpGet" in container.get(probe, {}):  # Nginx's; the app's are exec probes
                container[probe]["httpGet"]["port"] = port
    return kept


def deployment(docs: Docs) -> dict[str, Any]:
    """The model server's Deployment among DOCS, rendered or played: gitops.rendered's choice
    (with monitoring on, the retraining relay's Deployment beside it is not the one)."""
    return model_deployment(docs)


def pod_name(docs: Docs) -> str:
    """The name podman gives the Deployment's pod."""
    return f"{deployment(docs)['metadata']['name']}-pod-0"


def container_names(docs: Docs) -> list[str]:
    """The names podman gives the pod's containers (POD-CONTAINER)."""
    pod = pod_name(docs)
    return [
        f"{pod}-{c['name']}" for c in deployment(docs)["spec"]["template"]["spec"]["containers"]
    ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def remove(manifest: Path, docs: Docs) -> None:
    """Remove the pod and the ConfigMap and emptyDir volumes podman made for it (kube down
    leaves those)."""
    podman("kube", "down", str(manifest), check=False)
    podman("pod", "rm", "--force", pod_name(docs), check=False)
    for doc in docs:
        if doc["kind"] == "ConfigMap":
            podman("volume", "rm", "--force", doc["metadata"]["name"], check=False)
    for volume in deployment(docs)["spec"]["template"]["spec"]["volumes"]:
        if "emptyDir" in volume:  # a named volume in podman 4.3 (for_podman)
            podman("volume", "rm", "--force", volume["name"], check=False)


def provenance_from_labels(image: str) -> dict[str, str]:
    """The model version and sha256 the image's labels name, as the overlay's annotations (what
    the promotion pull request sets; the sha256 pins the model the server loads)."""
    labels = json.loads(podman("image", "inspect", image, "--format", "{{json .Config.Labels}}"))
    keys = {"modelops.io/model-version": "version", "modelops.io/model-sha256": "sha256"}
    found = {
        key: (labels or {}).get(f"io.modelops.model.{label}", "") for key, label in keys.items()
    }
    return {key: value for key, value in found.items() if value}


@dataclass(frozen=True)
class Pod:
    base: str  # http://127.0.0.1:PORT, Nginx of the pod
    name: str  # the pod's name in podman
    rendered: Docs  # the overlay as kubectl kustomize rendered it (before the podman changes)
    played: Docs  # what podman played


@contextmanager
def running_pod(
    image: str,
    env: str = "dev",
    nginx_image: str | None = None,
    annotations: dict[str, str] | None = None,
    timeout: float = 90,
    stoppable: bool = False,
) -> Iterator[Pod]:
    """Play overlay ``env`` with ``image``; yield the Pod once ``/v2/health/ready`` answers
    through Nginx; remove pod and volumes afterwards.

    ``annotations`` (default: ``provenance_from_labels(image)``) go into the overlay's provenance
    patch; ``nginx_image`` defaults to images/base-images.sh's NGINX_IMAGE; ``stoppable``: a pod
    for ``stop`` (restartPolicy OnFailure, see above). Not ready within
    ``timeout`` seconds, or a container exited: ``NotReadyError`` (serving.readiness) with the
    last lines of each container's ``podman logs``."""
    nginx = nginx_image or base_images()["NGINX_IMAGE"]
    provenance = provenance_from_labels(image) if annotations is None else annotations
    with tempfile.TemporaryDirectory(prefix="modelops-pod-") as tmp:
        rendered = render_overlay(env, image, nginx, provenance, Path(tmp))
        with playing(rendered, timeout, stoppable=stoppable) as pod:
            yield pod


def nginx_container(docs: Docs) -> dict[str, Any]:
    """The Deployment's Nginx container (the one that is not the model server)."""
    containers = deployment(docs)["spec"]["template"]["spec"]["containers"]
    found: list[dict[str, Any]] = [
        c for c in containers if MODEL_SERVER not in c["image"] and c["name"] != "app"
    ]
    (nginx,) = found
    return nginx


@contextmanager
def running_rendered(
    text: str, nginx_image: str | None = None, timeout: float = 90, tls_verify: bool = True
) -> Iterator[Pod]:
    """Play an environment's rendered manifests (TEXT) as they are, but for the Nginx image,
    which becomes ``nginx_image`` (default: images/base-images.sh's NGINX_IMAGE, the upstream
    or its local stand-in); yield the Pod once ready, remove it afterwards. A model server image
    not in local storage is pulled by its digest (``tls_verify=False``: from a plain-HTTP
    registry, such as the tests' loopback one)."""
    rendered = [d for d in yaml.safe_load_all(text) if d]
    nginx_container(rendered)["image"] = nginx_image or base_images()["NGINX_IMAGE"]
    with playing(rendered, timeout, tls_verify) as pod:
        yield pod


@contextmanager
def playing(
    rendered: Docs, timeout: float, tls_verify: bool = True, stoppable: bool = False
) -> Iterator[Pod]:
    """Play RENDERED (adapted by ``for_podman``) on a free loopback port; yield the Pod once
    ``/v2/health/ready`` answers through Nginx; remove pod and volumes afterwards."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="modelops-pod-") as tmp:
        played = for_podman(copy.deepcopy(rendered), secrets.token_hex(3), port, stoppable)
        manifest = Path(tmp) / "pod.yaml"
        manifest.write_text(yaml.safe_dump_all(played))
        pod = Pod(f"http://127.0.0.1:{port}", pod_name(played), rendered, played)
        containers = readiness.Containers(container_names(played), podman_env())
        try:
            tls = [] if tls_verify else ["--tls-verify=false"]
            podman("kube", "play", "--network", "host", *tls, str(manifest))
            readiness.wait_ready(
                f"{pod.base}/v2/health/ready",
                timeout,
                f"the pod {pod.name}",
                exited=containers.exited,
                log_tail=containers.log_tail,
            )
            yield pod
        finally:
            remove(manifest, played)


# The kubelet's floor for the stop signal's grace after a preStop hook used up the period
# (kuberuntime's minimumGracePeriodInSeconds).
MINIMUM_GRACE = 2


@dataclass(frozen=True)
class ContainerStop:
    """How ``stop`` stopped one container; times in seconds from the start of the stop."""

    name: str  # the container's name in the pod spec ("app", "nginx")
    hook_status: int | None  # its preStop's exit status (None: no hook run)
    hook_output: str  # what the hook wrote (stdout and stderr)
    signalled: float  # when the stop signal went (``podman stop``)
    stopped: float  # when the container had stopped
    exit_code: int  # the container's exit status (137: SIGKILL after the grace period)


def stop(pod: Pod, pre_stop: bool = True) -> dict[str, ContainerStop]:
    """Stop POD as the kubelet stops a pod's containers (kuberuntime's killContainer, one thread
    per container, all at once): run the container's ``lifecycle.preStop.exec`` command in it
    (``podman exec``); when the hook has returned, send the container its stop signal (``podman
    stop``: the image's STOPSIGNAL, SIGTERM for the app, SIGQUIT for Nginx), and SIGKILL once
    the pod's ``terminationGracePeriodSeconds``, counted from the start, are over (at least
    MINIMUM_GRACE s after the signal, as the kubelet grants). A hook still running at the end of
    the period is abandoned, as the kubelet abandons it. ``pre_stop=False`` plays a pod without
    hooks: every stop signal at once. Returns each container's ContainerStop, by pod-spec
    name; the pod stays (stopped) until ``playing`` removes it. Play POD ``stoppable``: podman
    would restart a container its preStop hook ends (see above)."""
    spec = deployment(pod.played)["spec"]["template"]["spec"]
    grace = float(spec.get("terminationGracePeriodSeconds", 30))
    started = time.monotonic()

    def stop_one(container: dict[str, Any]) -> ContainerStop:
        name = f"{pod.name}-{container['name']}"
        hook = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command")
        status, output = None, ""
        if pre_stop and hook:
            try:
                done = subprocess.run(
                    ["podman", "exec", name, *hook],
                    env=podman_env(),
                    capture_output=True,
                    text=True,
                    timeout=grace,
                    check=False,
                )
                status, output = done.returncode, done.stdout + done.stderr
            except subprocess.TimeoutExpired:
                output = f"preStop still running after {grace:g} s: abandoned"
        signalled = time.monotonic() - started
        left = max(MINIMUM_GRACE, math.ceil(grace - signalled))
        podman("stop", "--time", str(left), name, check=False)
        stopped = time.monotonic() - started
        code = podman("inspect", name, "--format", "{{.State.ExitCode}}", check=False)
        return ContainerStop(
            container["name"], status, output, signalled, stopped, int(code.strip() or -1)
        )

    with concurrent.futures.ThreadPoolExecutor(len(spec["containers"])) as threads:
        stops = list(threads.map(stop_one, spec["containers"]))
    return {s.name: s for s in stops}


def call(url: str, body: object = None) -> tuple[int, Any, dict[str, str]]:
    """GET (or POST ``body`` as JSON) ``url``: status, JSON answer, headers."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 (loopback)
            return answer.status, json.load(answer), dict(answer.headers)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error), dict(error.headers)


def sample_row() -> dict[str, float]:
    """The first row of the bundled data set, by the contract's snake_case feature names."""
    import re

    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    names = [re.sub(r"[^0-9a-z]+", "_", n.lower()).strip("_") for n in bunch.feature_names]
    return {n: float(v) for n, v in zip(names, bunch.data[0], strict=True)}


def demo(env: str, image: str, nginx_image: str | None) -> int:
    """Play overlay ``env``'s pod, print both probes and one prediction with its provenance."""
    nginx = nginx_image or base_images()["NGINX_IMAGE"]
    replaced = stand_in_for(nginx)
    print(
        f"pod: the {env} overlay (kubectl kustomize, podman kube play): app {image}, "
        f"nginx {nginx}" + (f" (local stand-in for {replaced})" if replaced else "")
    )
    with running_pod(image, env, nginx) as pod:
        for path in ("/v2/health/ready", "/v2/health/live"):
            status, body, _ = call(pod.base + path)
            print(f"GET {path} -> {status} {json.dumps(body)}")
        status, body, headers = call(f"{pod.base}/predict", {"instances": [sample_row()]})
        if status == 200:
            _, metadata, _ = call(f"{pod.base}/v2/models/{body['model_name']}")
    if status != 200:
        print(f"error: POST /predict -> {status} {json.dumps(body)}", file=sys.stderr)
        return 1
    print(f"prediction: {body['labels'][0]}  probabilities {body['probabilities'][0]}")
    print(f"provenance id ({PROVENANCE_HEADER}): {headers.get(PROVENANCE_HEADER, '')}")
    parameters = metadata["parameters"]
    shown = {key: parameters.get(key, "") for key in (*PROVENANCE_FIELDS, "provenance_id")}
    print(f"provenance (model metadata): {json.dumps(shown)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["render", "demo"])
    parser.add_argument("--image", required=True, help="model server image, NAME:TAG")
    parser.add_argument("--env", default="dev", help="overlay directory name (default: dev)")
    parser.add_argument("--nginx-image", help="default: images/base-images.sh's NGINX_IMAGE")
    parser.add_argument("--port", type=int, default=8080, help="render: Nginx's loopback port")
    parser.add_argument("--suffix", default="local", help="render: suffix of the object names")
    args = parser.parse_args(argv)
    if ":" not in args.image.rpartition("/")[2]:
        print(f"error: --image {args.image!r} has no tag (NAME:TAG)", file=sys.stderr)
        return 2
    try:
        if args.command == "demo":
            return demo(args.env, args.image, args.nginx_image)
        nginx = args.nginx_image or base_images()["NGINX_IMAGE"]
        with tempfile.TemporaryDirectory(prefix="modelops-pod-") as tmp:
            docs = render_overlay(args.env, args.image, nginx, {}, Path(tmp))
        print(yaml.safe_dump_all(for_podman(docs, args.suffix, args.port)), end="")
    except (RuntimeError, OSError) as error:  # NotReadyError, URLError
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
