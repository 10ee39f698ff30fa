"""Build attestations: the registry's word, signed by CI, that an image was built from main.

Role: the one place an image digest is checked before it may enter an overlay or move to the
next environment. promote.yml's build job (on ``main`` only, in the GitHub environment
``image-signing`` whose deployment branches are ``main`` only, so its secret is out of reach of
every other branch and of pull requests) signs a statement naming the image's repository, its
manifest digest, the commit of ``main`` it was built from and the workflow run, with an Ed25519
key that is that environment's secret ``IMAGE_SIGNING_KEY``, and pushes it into the registry next
to the image, under the tag cosign's convention derives from the digest (``sha256-<hex>.att``):
a one-layer OCI image whose manifest annotations hold the statement and its signature.

The ``image`` gate of ``gitops.gates`` (every promotion) and the ``image`` check of pull requests
into ``main`` (pr-guard: the dev overlay's pin) read it back from the registry BY DIGEST
(:func:`verify`) and check, in order: the image itself is in the registry at that digest; an
attestation is stored for that digest; its signature verifies with the public key that
``evidence.toml`` on the protected branch names (``[images] public_key``); it names this
repository path and this digest; its commit equals the image's tag and is in ``main``'s history.
Labels (``org.opencontainers.image.revision``) are read too and must agree, but they prove
nothing alone: anyone who can push to the registry sets them; only the key's holder signs.

``verify-overlay ENV --at REV`` checks the image ENV's rendered file runs at REV (a pull
request's head), after checking that ENV's overlay pins the same digest.

Contract: :func:`verify` returns the statement when all holds and raises
:class:`~gitops.cli.ToolError` with one line naming the digest and what is wrong otherwise.
The registry is read with skopeo (the credentials of ``podman login`` / ``docker login``);
``MODELOPS_REGISTRY_TLS_VERIFY=false`` reads a plain-HTTP registry (a loopback one).

usage: python -m gitops.attestation keygen
       python -m gitops.attestation sign --image NAME --digest sha256:HEX --commit SHA [--run URL]
                                          (the key: environment variable IMAGE_SIGNING_KEY)
       python -m gitops.attestation verify IMAGE@sha256:HEX [--ref REF] [--main REF]
       python -m gitops.attestation verify-overlay ENV [--at REV] [--ref REF] [--main REF]
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import tarfile
import tempfile
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gitops import environments, rendered
from gitops.cli import OneLineParser, ToolError, run_main
from gitops.git import show

#: The file naming the key, read from the protected branch (the evidence App's file too).
FILE = "evidence.toml"
#: The statement's type: what it says and how it is laid out.
TYPE = "https://modelops.io/attestation/image-build/v1"
STATEMENT = "io.modelops.attestation.statement"
SIGNATURE = "io.modelops.attestation.signature"
#: The environment variable holding the private key (base64 of the 32-byte Ed25519 seed).
KEY_VARIABLE = "IMAGE_SIGNING_KEY"
#: The GitHub environment holding that secret; its deployment branches: main only.
ENVIRONMENT = "image-signing"
REVISION_LABEL = "org.opencontainers.image.revision"
DIGEST = re.compile(r"sha256:([0-9a-f]{64})")
FULL_SHA = re.compile(r"[0-9a-f]{40}")


def attestation_tag(digest: str) -> str:
    """The tag the attestation of DIGEST is stored under (cosign's ``sha256-<hex>.att``)."""
    match = DIGEST.fullmatch(digest)
    if match is None:
        raise ToolError(f"{digest!r} is not an image digest sha256:<64 hex>")
    return f"sha256-{match[1]}.att"


def split(image: str) -> tuple[str, str, str]:
    """NAME:TAG@DIGEST (tag optional) as (NAME, TAG, DIGEST); ToolError without a digest."""
    name, _, digest = image.partition("@")
    if not DIGEST.fullmatch(digest):
        raise ToolError(f"{image} is not pinned by a digest (NAME:TAG@sha256:<64 hex>)")
    last = name.rsplit("/", 1)[-1]
    tag = ""
    if ":" in last:
        name, _, tag = name.rpartition(":")
    return name, tag, digest


# -- keys -----------------------------------------------------------------------------------------


def public_key(ref: str) -> Ed25519PublicKey | None:
    """The public key ``[images] public_key`` of evidence.toml at REF; None when the file has no
    ``[images]`` table (image signing not set up: the gate says so, gitops.doctor reports it);
    ToolError when the table is there but the key is empty or not an Ed25519 key."""
    text = show(ref, FILE)
    if text is None:
        return None
    try:
        table = tomllib.loads(text).get("images")
    except tomllib.TOMLDecodeError as error:
        raise ToolError(f"{FILE} on {ref} is not valid TOML ({error})") from None
    if table is None:
        return None
    found = table.get("public_key") if isinstance(table, dict) else None
    try:
        raw = base64.b64decode(str(found or ""), validate=True)
        if len(raw) != 32:
            raise ValueError
        return Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, binascii.Error):
        raise ToolError(
            f"{FILE} on {ref}: images.public_key must be the base64 of CI's 32-byte Ed25519 "
            f"public key (python -m gitops.attestation keygen), got {found!r}: docs/workflow.md"
        ) from None


def private_key(text: str) -> Ed25519PrivateKey:
    """The signing key from TEXT (base64 of the 32-byte seed, as keygen prints it)."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
        if len(raw) != 32:
            raise ValueError
        return Ed25519PrivateKey.from_private_bytes(raw)
    except (ValueError, binascii.Error):
        raise ToolError(
            f"{KEY_VARIABLE} must be the base64 of a 32-byte Ed25519 seed "
            "(python -m gitops.attestation keygen)"
        ) from None


def encode_public(key: Ed25519PublicKey) -> str:
    return base64.b64encode(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def keygen() -> tuple[str, str]:
    """A new key pair: (the secret's value, the public key for evidence.toml), both base64."""
    from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

    key = Ed25519PrivateKey.generate()
    seed = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return base64.b64encode(seed).decode(), encode_public(key.public_key())


# -- the statement ---------------------------------------------------------------------------------


def statement(name: str, digest: str, commit: str, run: str = "") -> str:
    """The statement CI signs, as the exact text it signs (sorted keys, no spaces)."""
    attestation_tag(digest)
    if not FULL_SHA.fullmatch(commit):
        raise ToolError(f"{commit!r} is not a full 40-character lowercase git SHA")
    body = {"type": TYPE, "image": name, "digest": digest, "git_commit": commit, "run": run}
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def sign(key: Ed25519PrivateKey, text: str) -> str:
    """The base64 Ed25519 signature of TEXT."""
    return base64.b64encode(key.sign(text.encode())).decode()


# -- the registry ----------------------------------------------------------------------------------


def _tls() -> str:
    return os.environ.get("MODELOPS_REGISTRY_TLS_VERIFY", "true")


def _skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["skopeo", *args], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise ToolError("skopeo is not installed (make registry-tools)") from None


def raw_manifest(reference: str) -> str | None:
    """The manifest the registry stores at REFERENCE (NAME:TAG or NAME@DIGEST), or None when it
    has none; ToolError when the registry cannot be read at all."""
    done = _skopeo("inspect", "--raw", f"--tls-verify={_tls()}", f"docker://{reference}")
    if done.returncode == 0:
        return done.stdout
    message = done.stderr.strip().splitlines()[-1:] or ["no message"]
    if re.search(r"manifest unknown|not found|name unknown|404", done.stderr, re.IGNORECASE):
        return None
    raise ToolError(f"cannot read {reference} from the registry: {message[0]}")


def labels(reference: str) -> dict[str, str]:
    """The image's labels (its config's), read from the registry."""
    done = _skopeo("inspect", f"--tls-verify={_tls()}", f"docker://{reference}")
    if done.returncode != 0:
        return {}
    return dict(json.loads(done.stdout).get("Labels") or {})


def _blob(layout: Path, data: bytes) -> dict[str, object]:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def oci_layout(
    layout: Path,
    annotations: dict[str, str],
    labels: dict[str, str] | None = None,
    tag: str = "att",
) -> None:
    """An OCI image layout at LAYOUT, as LAYOUT:TAG: one empty layer, LABELS in its config and
    ANNOTATIONS on its manifest, so any registry and any copy tool stores it as an ordinary image.
    The attestation is one (annotations, no labels); the suite's stand-in images are others."""
    (layout / "blobs" / "sha256").mkdir(parents=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w", format=tarfile.PAX_FORMAT):
        pass
    layer_tar = tar.getvalue()
    layer = _blob(layout, gzip.compress(layer_tar, mtime=0))
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Labels": labels} if labels else {},
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
            **_blob(layout, json.dumps(config, sort_keys=True).encode()),
        },
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **layer}],
        **({"annotations": annotations} if annotations else {}),
    }
    descriptor = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        **_blob(layout, json.dumps(manifest, sort_keys=True).encode()),
        "annotations": {"org.opencontainers.image.ref.name": tag},
    }
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [descriptor]}))


def push(name: str, digest: str, text: str, signature: str) -> str:
    """Store the signed statement TEXT in NAME's repository under the digest's tag; its
    reference."""
    target = f"{name}:{attestation_tag(digest)}"
    with tempfile.TemporaryDirectory() as tmp:
        oci_layout(Path(tmp) / "att", {STATEMENT: text, SIGNATURE: signature})
        done = _skopeo(
            "copy", "--quiet", f"--dest-tls-verify={_tls()}", f"oci:{tmp}/att:att",
            f"docker://{target}",
        )  # fmt: skip
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or ["no message"]
        raise ToolError(f"cannot push the attestation {target}: {lines[-1]}")
    return target


def attest(key: Ed25519PrivateKey, name: str, digest: str, commit: str, run: str = "") -> str:
    """What promote.yml's signing step does (``sign``): state that CI built NAME@DIGEST from
    COMMIT in RUN, sign it with KEY and store it next to the image; the attestation's reference.
    The demo signs its images with it too."""
    if raw_manifest(f"{name}@{digest}") is None:
        raise ToolError(f"image {name}@{digest} is not in the registry")
    text = statement(name, digest, commit, run)
    return push(name, digest, text, sign(key, text))


# -- verification ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attested:
    """What a verified attestation says."""

    image: str
    digest: str
    git_commit: str
    run: str


def verify(image: str, key: Ed25519PublicKey, main_ref: str) -> Attested:
    """Check IMAGE (NAME:TAG@DIGEST) against its attestation in the registry (module doc);
    ToolError with one line naming the digest and why otherwise."""
    name, tag, digest = split(image)
    short = f"image {name}@{digest}"
    manifest = raw_manifest(f"{name}@{digest}")
    if manifest is None:
        raise ToolError(f"{short} is not in the registry")
    att = raw_manifest(f"{name}:{attestation_tag(digest)}")
    if att is None:
        raise ToolError(
            f"{short} has no build attestation ({name}:{attestation_tag(digest)}): only images "
            "CI built and signed from main may be deployed"
        )
    try:
        notes = json.loads(att).get("annotations") or {}
        text, signature = str(notes[STATEMENT]), str(notes[SIGNATURE])
        found = json.loads(text)
        if not isinstance(found, dict):
            raise ValueError
    except (ValueError, KeyError, AttributeError):
        raise ToolError(f"{short}: its attestation holds no signed statement") from None
    try:
        key.verify(base64.b64decode(signature, validate=True), text.encode())
    except (InvalidSignature, ValueError, binascii.Error):
        raise ToolError(
            f"{short}: its attestation is not signed by CI's key (evidence.toml images.public_key)"
        ) from None
    if found.get("type") != TYPE:
        raise ToolError(f"{short}: its attestation is of type {found.get('type')!r}, not {TYPE}")
    if found.get("digest") != digest:
        raise ToolError(f"{short}: its attestation is for {found.get('digest')!r}, another digest")
    if found.get("image") != name:
        raise ToolError(f"{short}: its attestation is for the image {found.get('image')!r}")
    commit = str(found.get("git_commit", ""))
    if tag and tag != commit:
        raise ToolError(f"{short}: tagged {tag}, but CI built it from {commit}")
    if (
        not FULL_SHA.fullmatch(commit)
        or subprocess.run(
            ["git", "merge-base", "--is-ancestor", commit, main_ref],
            capture_output=True,
            check=False,
        ).returncode
    ):
        raise ToolError(f"{short}: built from {commit[:12] or '?'}, which is not in {main_ref}")
    revision = labels(f"{name}@{digest}").get(REVISION_LABEL)
    if revision is not None and revision != commit:
        raise ToolError(f"{short}: its label {REVISION_LABEL} {revision} is not {commit}")
    return Attested(name, digest, commit, str(found.get("run", "")))


def check(image: str, key_ref: str, main_ref: str) -> str:
    """The gates' entry: verify IMAGE with the key evidence.toml names at KEY_REF; one line of
    what was checked. A branch whose evidence.toml has no ``[images]`` table is not set up, and
    refuses every image (as an unset evidence App refuses every promotion): an unchecked image
    would be any image."""
    key = public_key(key_ref)
    if key is None:
        raise ToolError(
            f"image {image} cannot be checked: {FILE} on {key_ref} names no image signing key "
            "([images] public_key; python -m gitops.attestation keygen, docs/workflow.md)"
        )
    found = verify(image, key, main_ref)
    return f"{found.digest[:19]} built by CI from {found.git_commit[:12]} ({main_ref})"


def overlay_digests(revision: str, env: environments.Environment) -> list[str]:
    """The digests the images: entries of ENV's overlay pin at REVISION."""
    text = show(revision, f"{env.overlay}/kustomization.yaml") or ""
    document = yaml.safe_load(text) if text else None
    entries = document.get("images") if isinstance(document, dict) else None
    return [str(e["digest"]) for e in entries or [] if isinstance(e, dict) and "digest" in e]


def main_branch(remote: str | None) -> str:
    """The first environment's branch (main), as REMOTE's remote-tracking ref when given."""
    branch = environments.load()[0].branch
    return f"refs/remotes/{remote}/{branch}" if remote else branch


def main(argv: Sequence[str]) -> int:
    parser = OneLineParser(prog="python -m gitops.attestation", description=__doc__)
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("keygen", help="print a new key pair (the secret, the public key)")
    signing = sub.add_parser("sign", help=f"sign and push (the key: ${KEY_VARIABLE})")
    signing.add_argument("--image", required=True, help="the image's NAME (registry/path)")
    signing.add_argument("--digest", required=True, help="its manifest digest sha256:<64 hex>")
    signing.add_argument("--commit", required=True, help="the commit of main it was built from")
    signing.add_argument("--run", default="", help="the workflow run's URL")
    for what in ("verify", "verify-overlay"):
        one = sub.add_parser(what)
        if what == "verify":
            one.add_argument("image", metavar="IMAGE", help="NAME:TAG@sha256:<64 hex>")
        else:
            one.add_argument("env", metavar="ENV", help="the environment whose rendered file")
            one.add_argument("--at", default="HEAD", help="the revision to read it at (HEAD)")
        one.add_argument("--ref", default="HEAD", help=f"where to read {FILE} (HEAD)")
        one.add_argument("--main", default=None, help="main's ref (default: origin's main)")
    args = parser.parse_args(argv)
    if args.what == "keygen":
        secret, public = keygen()
        print(f"{KEY_VARIABLE}={secret}")
        print(f'public_key = "{public}"')
        return 0
    if args.what == "sign":
        key = private_key(os.environ.get(KEY_VARIABLE, ""))
        print(f"attestation={attest(key, args.image, args.digest, args.commit, args.run)}")
        return 0
    main_ref = args.main or main_branch("origin")
    if args.what == "verify":
        image = args.image
    else:
        env = environments.named(args.env)
        manifests = show(args.at, rendered.path(env))
        if manifests is None:
            raise ToolError(f"{args.at} has no {rendered.path(env)}")
        image = rendered.release(manifests).image
        pinned = overlay_digests(args.at, env)
        if pinned != [split(image)[2]]:
            raise ToolError(
                f"{env.overlay} at {args.at} pins {', '.join(pinned) or 'no digest'}, but "
                f"{rendered.path(env)} runs {image}: run make render"
            )
    print(f"ok: {image}: {check(image, args.ref, main_ref)}")
    return 0


if __name__ == "__main__":
    run_main(main)
