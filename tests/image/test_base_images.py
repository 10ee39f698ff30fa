"""The base images `make images-base` provides (pulled, or local stand-ins under their own names,
labelled with what they stand in for and what they hold), as images/base-images.sh resolves
them: what the model server's Dockerfile and the pod rely on, and that asking again rebuilds
nothing. (Which image is chosen when: test_image_static.py, with a scripted engine.)"""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest

from .conftest import IMAGES, STAND_INS, base_image, require_podman, upstream
from .podman_cli import podman, podman_env

pytestmark = pytest.mark.e2e


def config(image: str) -> dict[str, object]:
    return dict(json.loads(podman("image", "inspect", image).stdout)[0]["Config"])


def test_nginx_image_is_unprivileged_with_sh_envsubst_and_a_graceful_stop_signal() -> None:
    require_podman()
    image = base_image("NGINX_IMAGE")
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
    require_podman()
    done = podman(
        "run", "--rm", "--network", "none", base_image("PYTHON_IMAGE"), "sh", "-c",
        "python3 -m venv /tmp/v && /tmp/v/bin/python -c 'import sys; print(sys.version_info[:2])'"
        " && command -v useradd && command -v groupadd",
    )  # fmt: skip
    version, useradd, groupadd = done.stdout.splitlines()
    assert version == "(3, 11)"
    assert useradd.endswith("/useradd") and groupadd.endswith("/groupadd")


@pytest.mark.parametrize("key", ["PYTHON_IMAGE", "NGINX_IMAGE"])
def test_a_stand_in_has_its_own_name_and_labels_saying_what_it_stands_in_for_and_holds(
    key: str,
) -> None:
    require_podman()
    name = base_image(key)
    if name != STAND_INS[key]:
        pytest.skip(f"{key} is {name}, not a local stand-in")  # a failure in CI
    labels = config(name)["Labels"]
    assert isinstance(labels, dict)
    assert labels["io.modelops.base.stand-in-for"] == upstream(key)
    holds = labels["io.modelops.base.holds"]
    if key == "PYTHON_IMAGE":
        done = podman("run", "--rm", "--network", "none", name, "python3", "--version")
        assert holds == "python " + done.stdout.split()[1]
    else:
        done = podman("run", "--rm", "--network", "none", "--entrypoint", "nginx", name, "-v")
        assert holds == "nginx " + done.stderr.strip().rsplit("/", 1)[1]
    assert re.fullmatch(r"(python|nginx) \d+\.\d+\.\d+", holds)
    assert holds.split()[1] not in upstream(key), "a stand-in that holds the upstream version?"


def test_asking_again_rebuilds_nothing() -> None:
    require_podman()
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
    described = subprocess.run(
        [str(IMAGES / "base-images.sh"), "--describe"],
        env=podman_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    expected = []
    for key, kind in (("PYTHON_IMAGE", "python"), ("NGINX_IMAGE", "nginx")):
        name = base_image(key)
        if name == STAND_INS[key]:
            assert f"{kind} {name} (local stand-in for {upstream(key)}, holds " in described
            expected.append(f"base image present: {name} (local stand-in for {upstream(key)})")
        else:
            assert f"{kind} {name} (upstream)" in described
            expected.append(f"base image present: {name} (upstream)")
    # An image under an upstream name that is a stand-in (left by an older build of the stand-ins)
    # is untagged, saying so; nothing else is done.
    untagged = [line for line in done.stderr.splitlines() if line.startswith("untagged ")]
    assert all(": a local stand-in, not the upstream image" in line for line in untagged)
    assert [line for line in done.stderr.splitlines() if line not in untagged] == expected
    assert time.monotonic() - started < 30
