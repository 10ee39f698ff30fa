"""Images in the suite's loopback registry (tests/conftest.py, loopback_registry), pushed as a
`docker push` would and signed as promote.yml signs them.

Role: the one place tests make stand-in images and build attestations. The images are tiny OCI
images (gitops.attestation.oci_layout: one empty layer, the labels given), copied with skopeo; a
"CI build" is such an image tagged with its commit, labelled with it, and attested with a key the
test holds (gitops.attestation.attest), whose public half the test's evidence.toml names, as a
fork's does. Callers: the registry and attestation tests, the act walks that forge an image, the
promotion tests whose image gate reads the attestations back.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from gitops import attestation


def skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    """skopeo ARGS, its output captured; the caller checks the status."""
    return subprocess.run(["skopeo", *args], capture_output=True, text=True, check=False)


def push_image(name: str, work: Path, tag: str, labels: dict[str, str]) -> str:
    """A one-layer image with LABELS (and a nonce, so each is new) pushed as NAME:TAG; its
    manifest digest. Its layout is kept under WORK."""
    work.mkdir(parents=True, exist_ok=True)
    layout = work / f"image-{len(list(work.iterdir()))}"
    attestation.oci_layout(layout, {}, {"io.modelops.nonce": str(layout), **labels}, tag="v")
    digestfile = layout / "pushed-digest"
    done = skopeo("copy", "--quiet", "--dest-tls-verify=false", "--digestfile", str(digestfile),
                  f"oci:{layout}:v", f"docker://{name}:{tag}")  # fmt: skip
    assert done.returncode == 0, done.stderr
    return digestfile.read_text().strip()


class Signer:
    """CI's image signing key, as a test holds it: the secret promote.yml's environment would
    hold, and the public key evidence.toml names."""

    def __init__(self) -> None:
        self.secret, self.public = attestation.keygen()

    def evidence_toml(self, app_id: int) -> str:
        """evidence.toml naming the evidence App APP_ID and this key, as a fork sets it up."""
        return f'[app]\nid = {app_id}\n\n[images]\npublic_key = "{self.public}"\n'

    def built(self, name: str, commit: str, work: Path, **labels: str) -> str:
        """What promote.yml's build of COMMIT leaves in the registry: an image NAME:COMMIT
        labelled with its revision (and LABELS), and its attestation signed with this key; the
        image's digest. MODELOPS_REGISTRY_TLS_VERIFY=false must be set (a loopback registry)."""
        digest = push_image(name, work, commit, {attestation.REVISION_LABEL: commit, **labels})
        key = attestation.private_key(self.secret)
        attestation.attest(key, name, digest, commit, "https://github.com/acme/modelops/runs/1")
        return digest
