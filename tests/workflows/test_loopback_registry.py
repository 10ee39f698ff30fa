"""The session's loopback container registry (conftest.loopback_registry), which walks that build
and push the model server image push to and read back with skopeo: by digest, with the labels.

A tiny OCI image made here (one layer, a config with io.modelops.* labels) is copied into it with
skopeo, as promote.yml's `docker push` would. Debian packages (docker-registry, skopeo): the e2e
tier.
"""

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e  # docker-registry and skopeo are Debian packages (root installs)

LABELS = {
    "io.modelops.model.sha256": "ab" * 32,
    "io.modelops.model.version": "v0.1.0",
}


def blob(layout: Path, data: bytes) -> dict[str, object]:
    """Store DATA in the OCI layout; return its descriptor (without mediaType)."""
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def oci_image(layout: Path, tag: str, labels: dict[str, str]) -> None:
    """A one-layer OCI image (one small file) with LABELS, as LAYOUT:TAG."""
    (layout / "blobs" / "sha256").mkdir(parents=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w") as tar:
        content = b"model\n"
        info = tarfile.TarInfo("model.txt")
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    layer_tar = tar_bytes.getvalue()
    layer = blob(layout, gzip.compress(layer_tar, mtime=0))
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Labels": labels},
        "rootfs": {
            "type": "layers",
            "diff_ids": [f"sha256:{hashlib.sha256(layer_tar).hexdigest()}"],
        },
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            **blob(layout, json.dumps(config).encode()),
        },
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **layer}],
    }
    descriptor = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        **blob(layout, json.dumps(manifest).encode()),
        "annotations": {"org.opencontainers.image.ref.name": tag},
    }
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [descriptor]}))


def skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["skopeo", *args], capture_output=True, text=True, check=False)


def test_an_image_pushed_to_the_loopback_registry_is_there_by_digest_with_its_labels(
    loopback_registry: str, tmp_path: Path
) -> None:
    oci_image(tmp_path / "image", "v1", LABELS)
    name = f"{loopback_registry}/acme/modelops/model-server"
    digest_file = tmp_path / "digest"
    pushed = skopeo(
        "copy", "--quiet", "--dest-tls-verify=false", f"--digestfile={digest_file}",
        f"oci:{tmp_path / 'image'}:v1", f"docker://{name}:0123abc",
    )  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr
    digest = digest_file.read_text().strip()
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
