"""The session's loopback container registry (conftest.loopback_registry), which walks that build
and push the model server image push to and read back with skopeo: by digest, with the labels.

A tiny OCI image (tests/registry_kit.py: one layer, a config with io.modelops.* labels) is copied
into it with skopeo, as promote.yml's `docker push` would. Debian packages (docker-registry,
skopeo): the e2e tier.
"""

import json
from pathlib import Path

import pytest

from tests.registry_kit import push_image, skopeo

pytestmark = pytest.mark.e2e  # docker-registry and skopeo are Debian packages (root installs)

LABELS = {
    "io.modelops.model.sha256": "ab" * 32,
    "io.modelops.model.version": "v0.1.0",
}


def test_an_image_pushed_to_the_loopback_registry_is_there_by_digest_with_its_labels(
    loopback_registry: str, tmp_path: Path
) -> None:
    name = f"{loopback_registry}/acme/modelops/model-server"
    digest = push_image(name, tmp_path, "0123abc", LABELS)
    inspected = skopeo("inspect", "--tls-verify=false", f"docker://{name}@{digest}")
    assert inspected.returncode == 0, inspected.stderr
    found = json.loads(inspected.stdout)
    assert found["Digest"] == digest
    assert LABELS.items() <= found["Labels"].items()
    by_tag = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{name}:0123abc").stdout)
    assert by_tag["Digest"] == digest


def test_the_loopback_registry_answers_a_digest_it_does_not_hold_with_an_error(
    loopback_registry: str,
) -> None:
    missing = "sha256:" + "0" * 64
    inspected = skopeo(
        "inspect", "--tls-verify=false", f"docker://{loopback_registry}/acme/x@{missing}"
    )
    assert inspected.returncode != 0
    assert "manifest unknown" in inspected.stderr
