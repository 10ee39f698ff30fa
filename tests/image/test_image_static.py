"""The image build's logic without building: Dockerfile lint and pins, the mirror and engine
pickers, the build context filter and stage 1's model check."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

from .conftest import IMAGES, ROOT, upstream

DOCKERFILES = [ROOT / "serving" / "Dockerfile", *sorted(IMAGES.glob("*/Dockerfile"))]


def load_fetch_model() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "fetch_model", IMAGES / "model-stage" / "fetch_model.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_dockerfiles_are_hadolint_clean(dockerfile: Path) -> None:
    done = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "hadolint"), str(dockerfile)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_base_image_default_is_the_pinned_upstream_image() -> None:
    text = (ROOT / "serving" / "Dockerfile").read_text()
    default = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M)
    assert default and default[1] == upstream("PYTHON_IMAGE")
    for key in ("PYTHON_IMAGE", "NGINX_IMAGE"):
        name = upstream(key)
        # exact version tag (no floating "latest"/"3.11"), a digest only if it is a real one
        assert re.fullmatch(r"[a-z0-9/-]+:\d+\.\d+\.\d+[a-z0-9.-]*(@sha256:[0-9a-f]{64})?", name)


def test_every_stage_starts_from_a_build_arg_or_a_stage() -> None:
    for dockerfile in DOCKERFILES:
        for line in dockerfile.read_text().splitlines():
            if line.startswith("FROM "):
                source = line.split()[1]
                assert source.startswith("${") or source in {"scratch", "model-fetch"}, line


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {
                "sources.list.d/debian.sources": (
                    "Types: deb\nURIs: http://mirror.example/debian-security\n"
                    "Suites: bookworm-security\nComponents: main\n\n"
                    "Types: deb\nURIs: http://mirror.example/debian\n"
                    "Suites: bookworm bookworm-updates\nComponents: main\n"
                )
            },
            "http://mirror.example/debian",
        ),
        (
            {
                "sources.list": (
                    "# comment\n"
                    "deb http://security.example/debian-security bookworm-security main\n"
                    "deb [arch=amd64] https://mirror.example/debian bookworm main\n"
                )
            },
            "https://mirror.example/debian",
        ),
    ],
    ids=["deb822", "one-line"],
)
def test_debian_mirror_is_read_from_the_hosts_apt_config(
    tmp_path: Path, files: dict[str, str], expected: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    done = subprocess.run(
        [str(IMAGES / "debian-mirror.sh"), str(tmp_path)], capture_output=True, text=True
    )
    assert (done.returncode, done.stdout.strip()) == (0, expected)


def test_debian_mirror_without_apt_config_is_one_clear_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(IMAGES / "debian-mirror.sh"), str(tmp_path)], capture_output=True, text=True
    )
    assert done.returncode == 1
    assert (
        done.stderr.startswith("error: no Debian mirror configured")
        and done.stderr.count("\n") == 1
    )


def fake_tool(bin_dir: Path, name: str, status: int) -> None:
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / name).write_text(f"#!/bin/sh\nexit {status}\n")
    (bin_dir / name).chmod(0o755)


@pytest.mark.parametrize(
    ("tools", "expected"),
    [
        ({"docker": 0, "podman": 0}, "docker"),  # a Docker engine answers
        ({"docker": 1, "podman": 0}, "podman"),  # a docker client without an engine
        ({"docker": 1, "buildah": 0}, "buildah"),
    ],
)
def test_engine_prefers_a_running_docker_then_podman_then_buildah(
    tmp_path: Path, tools: dict[str, int], expected: str
) -> None:
    for name, status in tools.items():
        fake_tool(tmp_path / "bin", name, status)
    (tmp_path / "bin" / "env").symlink_to("/usr/bin/env")
    (tmp_path / "bin" / "bash").symlink_to("/bin/bash")
    env = {"PATH": str(tmp_path / "bin")}
    done = subprocess.run([str(IMAGES / "engine.sh")], env=env, capture_output=True, text=True)
    assert (done.returncode, done.stdout.strip()) == (0, expected)


def test_no_engine_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    for tool in ("bash", "env"):
        (tmp_path / "bin" / tool).symlink_to(f"/usr/bin/{tool}")
    done = subprocess.run(
        [str(IMAGES / "engine.sh")],
        env={"PATH": str(tmp_path / "bin")},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1 and done.stderr.count("\n") == 1
    assert "no container engine" in done.stderr


def test_build_context_holds_only_what_the_dockerfile_copies() -> None:
    rules = [
        line for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]  # fmt: skip
    assert rules[0] == "*", "everything is excluded first, then allowed by name"
    allowed = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    copied = set()
    for line in (ROOT / "serving" / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            copied |= set(line.split()[1:-1])
    assert copied <= allowed | {"serving/config/uwsgi.ini"}
    assert {"serving/Dockerfile", "**/__pycache__"} <= set(rules)


def test_the_build_script_refuses_missing_inputs_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(IMAGES / "build-model-server.sh")],
        env={"PATH": os.environ["PATH"], "MODEL_REF": "diagnosis-classifier#dev"},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert done.stderr == "error: MODEL_REPO is not set (git URL or path of the model repository)\n"


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("diagnosis-classifier#staging", ("diagnosis-classifier", "staging", False)),
        ("diagnosis-classifier#prod#3", ("diagnosis-classifier", "prod", True)),
        ("diagnosis-classifier@v1.2.0", ("diagnosis-classifier", "", False)),
    ],
)
def test_gto_refs_parse(ref: str, expected: tuple[str, str, bool]) -> None:
    assert load_fetch_model().parse_ref(ref) == expected


@pytest.mark.parametrize(
    "ref", ["diagnosis-classifier", "x@1.2.0", "x#", "x#dev#", "x@v1.0.0#dev", "../x@v1.0.0"]
)
def test_other_refs_are_refused_naming_the_forms(ref: str) -> None:
    module = load_fetch_model()
    with pytest.raises(module.FetchError, match="is not a GTO ref: use NAME#STAGE"):
        module.parse_ref(ref)


def write_model_dir(path: Path, *, sha256: str | None = None) -> str:
    path.mkdir()
    (path / "model.pkl").write_bytes(b"model bytes")
    actual = hashlib.sha256(b"model bytes").hexdigest()
    card = {
        "name": "diagnosis-classifier",
        "model_file": "model.pkl",
        "model_sha256": sha256 or actual,
    }
    (path / "metadata.json").write_text(json.dumps(card))
    return actual


def test_verify_accepts_a_model_matching_its_metadata(tmp_path: Path) -> None:
    actual = write_model_dir(tmp_path / "m")
    assert load_fetch_model().verify(tmp_path / "m", "diagnosis-classifier") == actual


def test_verify_refuses_a_tampered_model_naming_the_mismatch(tmp_path: Path) -> None:
    write_model_dir(tmp_path / "m", sha256="0" * 64)
    module = load_fetch_model()
    with pytest.raises(module.FetchError, match=r"sha256 mismatch for model\.pkl"):
        module.verify(tmp_path / "m", "diagnosis-classifier")


def test_verify_refuses_another_models_metadata(tmp_path: Path) -> None:
    write_model_dir(tmp_path / "m")
    module = load_fetch_model()
    with pytest.raises(module.FetchError, match="names model 'diagnosis-classifier'"):
        module.verify(tmp_path / "m", "other-model")


def test_check_refuses_build_args_that_differ_from_the_fetched_model(tmp_path: Path) -> None:
    record = {"name": "m", "version": "v1.0.0", "stage": "dev", "sha256": "ab"}
    (tmp_path / "p.json").write_text(json.dumps(record))
    module = load_fetch_model()
    common = ["check", "--provenance", str(tmp_path / "p.json"), "--name", "m", "--stage", "dev"]
    assert module.main([*common, "--version", "v1.0.0", "--sha256", "ab"]) == 0
    assert module.main([*common, "--version", "v2.0.0", "--sha256", "ab"]) == 1


def test_prune_keeps_only_the_model_and_its_card(tmp_path: Path) -> None:
    write_model_dir(tmp_path / "m")
    (tmp_path / "m" / ".gitignore").write_text("/model.pkl\n")
    load_fetch_model().prune(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["metadata.json", "model.pkl"]
