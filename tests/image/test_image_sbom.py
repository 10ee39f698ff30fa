"""The image's SBOM and digest: a CycloneDX JSON document listing the runtime's Python packages at
the versions installed in /opt/venv, shipped as a file the labels name (path and sha256), written
next to the image by the build together with the image's digest."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess

import pytest

from .conftest import BuiltImage
from .podman_cli import podman, podman_env

pytestmark = pytest.mark.e2e

SBOM = "/usr/share/modelops/sbom.cdx.json"


def read_in_image(image: BuiltImage, path: str) -> bytes:
    """A file's bytes, read in the image as its own user (read-only, no network)."""
    done = subprocess.run(
        ["podman", "run", "--rm", "--read-only", "--network", "none", "--entrypoint", "cat",
         image.name, path],
        env=podman_env(), capture_output=True, check=False, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.fixture(scope="module")
def sbom_bytes(built_image: BuiltImage) -> bytes:
    return read_in_image(built_image, SBOM)


@pytest.fixture(scope="module")
def sbom(sbom_bytes: bytes) -> dict[str, object]:
    document = json.loads(sbom_bytes)
    assert isinstance(document, dict)
    return document


def test_the_sbom_in_the_image_is_a_cyclonedx_json_document(sbom: dict[str, object]) -> None:
    assert sbom["bomFormat"] == "CycloneDX"
    assert sbom["specVersion"] == "1.6"
    assert str(sbom["$schema"]).endswith("bom-1.6.schema.json")
    components = sbom["components"]
    assert isinstance(components, list) and components
    for component in components:
        assert component["type"] == "library", component["name"]
        assert component["purl"] == f"pkg:pypi/{norm(component['name'])}@{component['version']}"
    tools = json.dumps(sbom["metadata"])
    assert "cyclonedx-py" in tools or "cyclonedx-bom" in tools, "names the tool that made it"


def test_the_sbom_lists_every_python_package_of_the_runtime_at_its_installed_version(
    built_image: BuiltImage, sbom: dict[str, object]
) -> None:
    out = podman(
        "run", "--rm", "--read-only", "--network", "none", built_image.name, "python3", "-c",
        "import importlib.metadata as m, json; "
        "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))",
    ).stdout  # fmt: skip
    installed = {norm(k): v for k, v in json.loads(out).items()}
    components = sbom["components"]
    assert isinstance(components, list)
    listed = {norm(c["name"]): c["version"] for c in components}
    assert listed == installed
    assert {"flask", "onnxruntime", "numpy", "pyuwsgi"} <= set(listed)


def test_the_sbom_label_names_the_file_and_its_sha256(
    built_image: BuiltImage, sbom_bytes: bytes
) -> None:
    assert built_image.labels["io.modelops.sbom"] == SBOM
    assert built_image.labels["io.modelops.sbom.sha256"] == hashlib.sha256(sbom_bytes).hexdigest()


def test_the_build_writes_the_sbom_of_the_image_next_to_it(
    built_image: BuiltImage, sbom_bytes: bytes
) -> None:
    assert (built_image.out / "sbom.cdx.json").read_bytes() == sbom_bytes


def test_the_sbom_tool_stays_in_its_build_stage(built_image: BuiltImage) -> None:
    out = podman(
        "run", "--rm", "--read-only", "--network", "none", built_image.name, "python3", "-c",
        "import importlib.util as u, os; "
        "print(u.find_spec('cyclonedx') is None and not os.path.exists('/opt/sbom'))",
    ).stdout  # fmt: skip
    assert out.strip() == "True"


def test_the_build_writes_and_prints_the_digest_that_names_the_image(
    built_image: BuiltImage,
) -> None:
    digest = (built_image.out / "digest").read_text().strip()
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest)
    assert (
        digest
        == podman("image", "inspect", "--format", "{{.Digest}}", built_image.name).stdout.strip()
    )
    assert f"digest: {digest} ({built_image.out / 'digest'})" in built_image.stderr.splitlines()
    repository = built_image.name.rsplit(":", 1)[0]
    by_digest = podman("image", "inspect", "--format", "{{.Id}}", f"{repository}@{digest}")
    assert by_digest.stdout.strip() == built_image.inspect["Id"]
