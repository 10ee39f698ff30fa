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


def base_problems(key: str, name: str, labels: dict[str, str], holds: str) -> list[str]:
    """What is wrong with base image NAME for KEY, given its LABELS and what it HOLDS ("python
    3.11.2", read by running it): the upstream image pinned in images/upstream/Dockerfile holds
    the version of its tag and carries no stand-in label; the local stand-in has its own name
    and labels saying what it stands in for and what it holds, a version not the upstream's."""
    pinned = upstream(key)
    tag_version = re.search(r":(\d+\.\d+\.\d+)", pinned)
    assert tag_version is not None, pinned
    marks = {k: v for k, v in labels.items() if "stand-in-for" in k}
    if name == pinned:
        problems = [f"the upstream image carries a stand-in label: {marks}"] if marks else []
        if holds.split()[-1] != tag_version[1]:
            problems.append(f"the upstream image holds {holds}, not its tag's {tag_version[1]}")
        return problems
    if name != STAND_INS[key]:
        return [f"{name} is neither {pinned} nor the stand-in {STAND_INS[key]}"]
    problems = []
    if labels.get("io.modelops.base.stand-in-for") != pinned:
        problems.append(f"the stand-in's label stand-in-for is not {pinned}: {marks}")
    if labels.get("io.modelops.base.holds") != holds:
        problems.append(f"the stand-in's label holds is not what it holds, {holds}: {labels}")
    if not re.fullmatch(r"(python|nginx) \d+\.\d+\.\d+", holds) or tag_version[1] in holds:
        problems.append(f"a stand-in that holds {holds}, for {pinned}?")
    return problems


def held(key: str, name: str) -> str:
    """What the base image NAME holds, by running it: "python 3.11.2", "nginx 1.22.1"."""
    if key == "PYTHON_IMAGE":
        done = podman("run", "--rm", "--network", "none", name, "python3", "--version")
        return "python " + done.stdout.split()[1]
    done = podman("run", "--rm", "--network", "none", "--entrypoint", "nginx", name, "-v")
    return "nginx " + done.stderr.strip().rsplit("/", 1)[1]


@pytest.mark.parametrize("key", ["PYTHON_IMAGE", "NGINX_IMAGE"])
def test_a_base_image_is_the_pinned_upstream_or_a_stand_in_saying_what_it_stands_in_for(
    key: str,
) -> None:
    require_podman()
    name = base_image(key)
    labels = config(name)["Labels"] or {}
    assert isinstance(labels, dict)
    assert base_problems(key, name, labels, held(key, name)) == []


@pytest.mark.parametrize("key", ["PYTHON_IMAGE", "NGINX_IMAGE"])
def test_the_base_image_check_tells_each_kind_from_a_wrong_one(key: str) -> None:
    pinned, stand_in = upstream(key), STAND_INS[key]
    kind = "python" if key == "PYTHON_IMAGE" else "nginx"
    tag_version = pinned.split(":")[1].split("-")[0].split("@")[0]
    debian = f"{kind} 3.11.2" if kind == "python" else f"{kind} 1.22.1"
    good = {"io.modelops.base.stand-in-for": pinned, "io.modelops.base.holds": debian}
    # where the upstream image can be pulled (GitHub's runners), and where only a stand-in exists
    assert base_problems(key, pinned, {"maintainer": "x"}, f"{kind} {tag_version}") == []
    assert base_problems(key, stand_in, good, debian) == []
    # a stand-in under the upstream name, an upstream image of another version, a stand-in
    # labelled for an older pin or holding what its label does not say, an unknown name
    assert base_problems(key, pinned, good, debian) != []
    assert base_problems(key, pinned, {}, debian) != []
    assert base_problems(key, stand_in, {**good, "io.modelops.base.stand-in-for": "x:1"}, debian)
    assert base_problems(key, stand_in, good, f"{kind} 9.9.9") != []
    assert base_problems(key, "docker.io/library/other:1", {}, debian) != []


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
