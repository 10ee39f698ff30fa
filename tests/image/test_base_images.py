"""The base images `make images-base` provides (pulled, or the local stand-ins): what the model
server's Dockerfile and the pod rely on, and that asking again rebuilds nothing."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from .conftest import IMAGES, require_podman, upstream
from .podman_cli import podman, podman_env

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", autouse=True)
def _base_images() -> None:
    require_podman()


def config(image: str) -> dict[str, object]:
    return dict(json.loads(podman("image", "inspect", image).stdout)[0]["Config"])


def test_nginx_image_is_unprivileged_with_sh_envsubst_and_a_graceful_stop_signal() -> None:
    image = upstream("NGINX_IMAGE")
    cfg = config(image)
    assert cfg["User"] in {"101", "nginx"}
    assert cfg["StopSignal"] == "SIGQUIT"
    done = podman(
        "run", "--rm", "--read-only", "--tmpfs", "/tmp", "--network", "none",
        "--entrypoint", "sh", image, "-c", "id -u; command -v envsubst; nginx -t 2>&1",
    )  # fmt: skip
    uid, envsubst, *test = done.stdout.splitlines()
    assert uid == "101"
    assert envsubst.endswith("/envsubst")
    assert any("test is successful" in line for line in test), done.stdout


def test_python_image_makes_a_venv_and_adds_users() -> None:
    done = podman(
        "run", "--rm", "--network", "none", upstream("PYTHON_IMAGE"), "sh", "-c",
        "python3 -m venv /tmp/v && /tmp/v/bin/python -c 'import sys; print(sys.version_info[:2])'"
        " && command -v useradd && command -v groupadd",
    )  # fmt: skip
    version, useradd, groupadd = done.stdout.splitlines()
    assert version == "(3, 11)"
    assert useradd.endswith("/useradd") and groupadd.endswith("/groupadd")


def test_asking_again_rebuilds_nothing() -> None:
    started = time.monotonic()
    done = subprocess.run(
        [str(IMAGES / "build-base-images.sh")],
        env=podman_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        f"base image present: {upstream('PYTHON_IMAGE')}",
        f"base image present: {upstream('NGINX_IMAGE')}",
    ]
    assert time.monotonic() - started < 30
