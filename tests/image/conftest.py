"""What the image tests share: the build helper, the base images, a podman wrapper.

The session's image (fixtures ``registry`` and ``built_image``) is in builds.py, loaded for the
whole suite by tests/conftest.py: the pod smoke test (tests/deploy) runs the same image. It is
built once per session from serving/Dockerfile with images/build-model-server.sh, from a model
registered in a temp repo and pushed to a local DVC remote (registry_fixture.py).
Base images come from ``make images-base`` (a test-prereq); podman and buildah from
``make image-tools``. podman reads the repository's images/containers.conf (CONTAINERS_CONF).
"""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .podman_cli import pod_runner, podman, podman_env
from .registry_fixture import Registry

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "images"
# A credential in the DVC config secret that the fetch never needs: it must appear nowhere in
# the final image (layers, config, history).
CANARY = "canary-" + secrets.token_hex(12)


def upstream(key: str) -> str:
    """PYTHON_IMAGE, NGINX_IMAGE or DEBIAN_SUITE as images/upstream/Dockerfile pins them."""
    text = (IMAGES / "upstream" / "Dockerfile").read_text()
    patterns = {
        "PYTHON_IMAGE": r"^FROM (\S+) AS python$",
        "NGINX_IMAGE": r"^FROM (\S+) AS nginx$",
        "DEBIAN_SUITE": r"^ARG DEBIAN_SUITE=(\S+)$",
    }
    found = re.search(patterns[key], text, re.M)
    if found is None:
        raise KeyError(key)
    return found[1]


# The local stand-ins' own names (images/base-images.sh), after the Debian release they hold.
STAND_INS = {
    "PYTHON_IMAGE": f"localhost/modelops/base-python:{upstream('DEBIAN_SUITE')}",
    "NGINX_IMAGE": f"localhost/modelops/base-nginx:{upstream('DEBIAN_SUITE')}",
}


def base_images(*options: str) -> dict[str, str]:
    """What images/base-images.sh resolves: PYTHON_IMAGE and NGINX_IMAGE (with --candidates also
    the upstream and stand-in names of each), the names every build and pod uses."""
    answer: dict[str, str] = pod_runner().base_images(*options)
    return answer


def base_image(key: str) -> str:
    """PYTHON_IMAGE or NGINX_IMAGE as images/base-images.sh resolves it."""
    return base_images()[key]


def require_podman() -> None:
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed: run `make image-tools`")
    for key, name in base_images().items():
        if podman("image", "exists", name, check=False).returncode != 0:
            pytest.skip(f"base image {name} ({key}) missing: run `make images-base`")


@dataclass(frozen=True)
class BuiltImage:
    name: str
    registry: Registry
    inspect: dict[str, Any]
    git_commit: str
    fetch_image: str  # pass 1's image (stage model-fetch), kept for the secrets scan
    out: Path  # the build outputs next to the image (MODELOPS_IMAGE_OUT): sbom.cdx.json, digest
    stderr: str  # what the build script said

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.inspect["Config"].get("Labels") or {})

    @property
    def env(self) -> dict[str, str]:
        return dict(e.split("=", 1) for e in self.inspect["Config"].get("Env") or [])


def build(
    registry: Registry,
    ref: str,
    image: str,
    tmp: Path,
    fetch_image: str = "",
    build_log: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run images/build-model-server.sh for ``ref``; the DVC config secret carries the canary;
    the build outputs go to ``tmp``/out."""
    dvc_config = tmp / "dvc-config"
    dvc_config.write_text(
        "['remote \"unused-s3\"']\n"
        "    url = s3://modelops-nonexistent/dvc\n"
        "    access_key_id = AKIAMODELOPSCANARY\n"
        f"    secret_access_key = {CANARY}\n"
    )
    env = podman_env() | {
        "MODEL_REPO": str(registry.origin),
        "MODEL_REF": ref,
        "IMAGE": image,
        "MODELOPS_DVC_REMOTE_DIR": str(registry.dvc_remote),
        "MODELOPS_DVC_CONFIG": str(dvc_config),
        "MODELOPS_ENGINE": "podman",
        "MODELOPS_FETCH_IMAGE": fetch_image,
        "MODELOPS_IMAGE_OUT": str(tmp / "out"),
    }
    if build_log is not None:
        env["MODELOPS_BUILD_LOG"] = str(build_log)
    return subprocess.run(
        [str(IMAGES / "build-model-server.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
