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
import yaml

from training.params import load_artifact

from .conftest import IMAGES, ROOT, STAND_INS, upstream

DOCKERFILES = [ROOT / "serving" / "Dockerfile", *sorted(IMAGES.glob("*/Dockerfile"))]
#: The list of upstream base images, as FROM lines for Dependabot: never built.
UPSTREAM_LIST = IMAGES / "upstream" / "Dockerfile"
#: The artifact's name (training/params.yaml), what the refs and the model card name.
NAME = load_artifact().name


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


def test_the_base_images_are_pinned_by_tag_and_digest_once_as_from_lines_dependabot_reads() -> None:
    text = (ROOT / "serving" / "Dockerfile").read_text()
    # No default of its own: images/base-images.sh passes the one image it resolves.
    assert re.search(r"^ARG PYTHON_IMAGE$", text, re.M)
    dependabot = yaml.safe_load((ROOT / ".github" / "dependabot.yml").read_text())
    docker = [u for u in dependabot["updates"] if u["package-ecosystem"] == "docker"]
    assert [u["directory"] for u in docker] == ["/images/upstream"]
    for key in ("PYTHON_IMAGE", "NGINX_IMAGE"):
        name = upstream(key)
        # exact version tag (no floating "latest"/"3.11") and the digest it was pinned at
        assert re.fullmatch(r"[a-z0-9/-]+:\d+\.\d+\.\d+[a-z0-9.-]*@sha256:[0-9a-f]{64}", name), name


def test_every_stage_starts_from_a_build_arg_or_an_earlier_stage() -> None:
    for dockerfile in [path for path in DOCKERFILES if path != UPSTREAM_LIST]:
        stages = {"scratch"}
        for line in dockerfile.read_text().splitlines():
            if line.startswith("FROM "):
                words = line.split()
                assert words[1].startswith("${") or words[1] in stages, f"{dockerfile}: {line}"
                if len(words) == 4 and words[2] == "AS":
                    stages.add(words[3])


def fake_podman(tmp_path: Path, images: dict[str, dict[str, str]]) -> dict[str, str]:
    """An environment whose podman knows only ``images`` (name -> labels): `image exists` and
    `image inspect --format '{{index .Config.Labels "KEY"}}'` answer from them."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "images.json").write_text(json.dumps(images))
    script = f"""#!/usr/bin/env python3
import json, re, sys
images = json.load(open({str(tmp_path / "images.json")!r}))
args = sys.argv[1:]
name = args[-1]
if name not in images:
    sys.exit(1)
if "--format" in args:
    key = re.search(r'"([^"]+)"', args[args.index("--format") + 1])[1]
    print(images[name].get(key, "<no value>"))
"""
    (bin_dir / "podman").write_text(script)
    (bin_dir / "podman").chmod(0o755)
    return {"PATH": f"{bin_dir}:/usr/bin:/bin", "MODELOPS_ENGINE": "podman"}


def resolve(env: dict[str, str], *options: str) -> str:
    done = subprocess.run(
        [str(IMAGES / "base-images.sh"), *options],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


STAND_IN_LABELS = {
    "io.modelops.base.stand-in-for": upstream("PYTHON_IMAGE"),
    "io.modelops.base.holds": "python 3.11.2",
}


@pytest.mark.parametrize(
    ("present", "extra", "expected"),
    [
        ({"UP": {}, "LOCAL": STAND_IN_LABELS}, {}, "UP"),  # the upstream image wins
        ({"LOCAL": STAND_IN_LABELS}, {}, "LOCAL"),  # no upstream image: the stand-in
        ({}, {}, "UP"),  # neither: the upstream name, for the build to pull
        # a stand-in under the upstream name is not the upstream image
        ({"UP": {"io.modelops.stand-in-for": "x"}, "LOCAL": STAND_IN_LABELS}, {}, "LOCAL"),
        ({"UP": {}}, {"MODELOPS_BASE_IMAGES": "local"}, "LOCAL"),
        ({"LOCAL": STAND_IN_LABELS}, {"MODELOPS_BASE_IMAGES": "pull"}, "UP"),
        ({"UP": {}}, {"PYTHON_IMAGE": "registry.example/python:3.11.15"}, "GIVEN"),
    ],
    ids=["upstream", "stand-in", "neither", "stand-in-under-upstream-name", "local", "pull", "set"],
)
def test_the_python_base_is_upstream_where_present_else_the_stand_in_unless_told(
    tmp_path: Path, present: dict[str, dict[str, str]], extra: dict[str, str], expected: str
) -> None:
    names = {
        "UP": upstream("PYTHON_IMAGE"),
        "LOCAL": STAND_INS["PYTHON_IMAGE"],
        "GIVEN": "registry.example/python:3.11.15",
    }
    env = fake_podman(tmp_path, {names[k]: labels for k, labels in present.items()}) | extra
    assert f"PYTHON_IMAGE={names[expected]}\n" in resolve(env)


def test_the_description_is_one_line_naming_each_base_and_what_a_stand_in_stands_in_for(
    tmp_path: Path,
) -> None:
    env = fake_podman(
        tmp_path, {STAND_INS["PYTHON_IMAGE"]: STAND_IN_LABELS, upstream("NGINX_IMAGE"): {}}
    )
    assert resolve(env, "--describe") == (
        f"base images: python {STAND_INS['PYTHON_IMAGE']} (local stand-in for "
        f"{upstream('PYTHON_IMAGE')}, holds python 3.11.2); "
        f"nginx {upstream('NGINX_IMAGE')} (upstream)\n"
    )


def test_the_build_says_which_bases_it_uses_in_one_line_before_building(tmp_path: Path) -> None:
    """images/build-model-server.sh, run with an engine that fails every build."""
    env = fake_podman(tmp_path, {upstream("PYTHON_IMAGE"): {}, upstream("NGINX_IMAGE"): {}})
    (tmp_path / "origin.git").mkdir()
    done = subprocess.run(
        [str(IMAGES / "build-model-server.sh")],
        env=env | {"MODEL_REPO": str(tmp_path / "origin.git"), "MODEL_REF": "m#dev"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.startswith("base images:")]
    assert lines == [
        f"base images: python {upstream('PYTHON_IMAGE')} (upstream); "
        f"nginx {upstream('NGINX_IMAGE')} (upstream)"
    ]


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
        env={"PATH": os.environ["PATH"], "MODEL_REF": f"{NAME}#dev"},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert done.stderr == "error: MODEL_REPO is not set (git URL or path of the model repository)\n"


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        (f"{NAME}#staging", (NAME, "staging", False)),
        (f"{NAME}#prod#3", (NAME, "prod", True)),
        (f"{NAME}@v1.2.0", (NAME, "", False)),
    ],
)
def test_gto_refs_parse(ref: str, expected: tuple[str, str, bool]) -> None:
    assert load_fetch_model().parse_ref(ref) == expected


@pytest.mark.parametrize("ref", [NAME, "x@1.2.0", "x#", "x#dev#", "x@v1.0.0#dev", "../x@v1.0.0"])
def test_other_refs_are_refused_naming_the_forms(ref: str) -> None:
    module = load_fetch_model()
    with pytest.raises(module.FetchError, match="is not a GTO ref: use NAME#STAGE"):
        module.parse_ref(ref)


def write_model_dir(path: Path, *, sha256: str | None = None) -> str:
    """A model directory as the export stage writes it (modelcard's contract), with stand-in
    bytes for the graph: stage 1 checks hashes and the card, it never runs the model."""
    path.mkdir()
    (path / "model.onnx").write_bytes(b"model bytes")
    actual = hashlib.sha256(b"model bytes").hexdigest()
    sample = {"rows": [[1.0]], "probabilities": [[0.5, 0.5]], "labels": ["a"], "tolerance": 1e-6}
    (path / "verification.json").write_text(json.dumps(sample))
    profile = {
        "bins": 10,
        "features": [{"name": "x", "edges": [], "ratios": [1.0], "min": 1.0, "max": 1.0}],
        "classes": {"a": 1.0, "b": 0.0},
        "score": {"kind": "positive_class_probability", "class": "b", "edges": [], "ratios": [1]},
        "boundary_margin": 0.1,
        "rows": 1,
    }
    (path / "profile.json").write_text(json.dumps(profile))
    card = {
        "schema_version": 2,
        "name": NAME,
        "format": "onnx",
        "model_file": "model.onnx",
        "model_sha256": sha256 or actual,
        "features": [{"name": "x", "dtype": "float64"}],
        "classes": ["a", "b"],
        "verification": {
            "file": "verification.json",
            "sha256": hashlib.sha256((path / "verification.json").read_bytes()).hexdigest(),
        },
        "profile": {
            "file": "profile.json",
            "sha256": hashlib.sha256((path / "profile.json").read_bytes()).hexdigest(),
        },
    }
    (path / "metadata.json").write_text(json.dumps(card))
    return actual


def test_verify_accepts_a_model_matching_its_metadata(tmp_path: Path) -> None:
    actual = write_model_dir(tmp_path / "m")
    assert load_fetch_model().verify(tmp_path / "m", NAME) == actual


def test_verify_refuses_a_tampered_model_naming_the_mismatch(tmp_path: Path) -> None:
    write_model_dir(tmp_path / "m", sha256="0" * 64)
    module = load_fetch_model()
    with pytest.raises(module.FetchError, match=r"model\.onnx: sha256 mismatch"):
        module.verify(tmp_path / "m", NAME)


def test_verify_refuses_a_card_the_contract_does_not_allow(tmp_path: Path) -> None:
    write_model_dir(tmp_path / "m")
    card = json.loads((tmp_path / "m" / "metadata.json").read_text())
    card["model_file"] = "../../etc/passwd"
    (tmp_path / "m" / "metadata.json").write_text(json.dumps(card))
    module = load_fetch_model()
    with pytest.raises(module.FetchError, match=r"model_file must be 'model\.onnx'"):
        module.verify(tmp_path / "m", NAME)


def test_verify_refuses_another_models_metadata(tmp_path: Path) -> None:
    write_model_dir(tmp_path / "m")
    module = load_fetch_model()
    with pytest.raises(module.FetchError, match=f"names model '{NAME}'"):
        module.verify(tmp_path / "m", "other-model")


def test_check_refuses_build_args_that_differ_from_the_fetched_model(tmp_path: Path) -> None:
    record = {"name": "m", "version": "v1.0.0", "stage": "dev", "sha256": "ab"}
    (tmp_path / "p.json").write_text(json.dumps(record))
    module = load_fetch_model()
    common = ["check", "--provenance", str(tmp_path / "p.json"), "--name", "m", "--stage", "dev"]
    assert module.main([*common, "--version", "v1.0.0", "--sha256", "ab"]) == 0
    assert module.main([*common, "--version", "v2.0.0", "--sha256", "ab"]) == 1


def test_prune_keeps_only_the_served_files(tmp_path: Path) -> None:
    write_model_dir(tmp_path / "m")
    (tmp_path / "m" / ".gitignore").write_text("/model.pkl\n")
    (tmp_path / "m" / "model.pkl").write_bytes(b"the pipeline's pickle, never shipped")
    load_fetch_model().prune(tmp_path / "m")
    names = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert names == ["metadata.json", "model.onnx", "profile.json", "verification.json"]


def shipped_source_files() -> set[str]:
    """The repository files the final image copies from the build context: every ``COPY SRC DEST``
    of serving/Dockerfile without ``--from``, directories expanded, minus what .dockerignore's
    patterns for caches leave out (``**/__pycache__``, ``**/*.pyc``)."""
    files: set[str] = set()
    for line in (ROOT / "serving" / "Dockerfile").read_text().splitlines():
        if not line.startswith("COPY ") or "--from=" in line:
            continue
        for source in line.split()[1:-1]:
            path = ROOT / source
            found = sorted(path.rglob("*")) if path.is_dir() else [path]
            files |= {
                str(f.relative_to(ROOT))
                for f in found
                if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".pyc"
            }
    return files


def test_the_local_tooling_is_not_in_the_image() -> None:
    """The process stack and the demo (devstack/) serve laptops and tests, not the pod: the image
    copies serving/ only, and nothing it ships imports them."""
    shipped = shipped_source_files()
    assert "serving/wsgi.py" in shipped and "serving/config/uwsgi.ini" in shipped
    tooling = {str(p.relative_to(ROOT)) for p in (ROOT / "devstack").rglob("*.py")}
    assert {"devstack/stack.py", "devstack/demo.py"} <= tooling
    assert not shipped & tooling
    assert not {"serving/stack.py", "serving/demo.py"} & shipped
    importers = [
        name
        for name in sorted(shipped)
        if name.endswith(".py")
        and re.search(r"^\s*(from|import) devstack\b", (ROOT / name).read_text(), re.M)
    ]
    assert importers == []
