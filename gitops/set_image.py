"""Point one environment's overlay at a model-server image tag: the deployment, as one line.

usage: python -m gitops.set_image [--overlays DIR] [--image NAME] [--registry PREFIX]
                                 [--digest sha256:HEX]
                                 [--model-version vX.Y.Z --model-sha256 HEX] ENV SHA

In DIR/ENV/kustomization.yaml (default kustomize/overlays/ENV), it replaces the newTag line of the
images entry NAME with the full git SHA the image was built from, keeping the entry's newName (the
registry), every other line and the layout. Then it checks the result: exactly one changed line,
and the overlay's images entry now reads newTag: SHA. Anything else (no such entry, no newTag line
in it) restores the file and fails with one line. Prints "changed" or "unchanged" (the tag was
already SHA), so a workflow can skip an empty pull request. With --registry, the entry's newName
must already be PREFIX/NAME (the image just pushed), or nothing is changed. No kustomize binary is
needed: builds use kubectl's kustomize.

An entry that pins the image by digest (a `digest:` line: the image is then pulled as
NAME:SHA@DIGEST, the tag for people, the digest for the node) needs --digest, the manifest digest
the registry gave the pushed image; its digest line is set with the tag, two lines in all. A
--digest for an entry without a digest line is refused.

With --model-version and --model-sha256 (the model the image ships), it also sets the pod
annotations modelops.io/model-version and modelops.io/model-sha256 in DIR/ENV/provenance.yaml by
replacing exactly those two lines (comments and layout kept), so the MODELOPS_* variables the
overlay sets match the image. It checks that file too: at most those two lines changed, and it
reads back the new values; otherwise both files are restored. "unchanged" means neither file
changed.
"""

import argparse
import difflib
import re
from collections.abc import Sequence
from pathlib import Path

import yaml

from gitops.cli import OneLineParser, ToolError, run_main

DEFAULT_IMAGE = "modelops/model-server"
FULL_SHA = re.compile(r"[0-9a-f]{40}")
MODEL_VERSION = re.compile(r"v\d+\.\d+\.\d+")
MODEL_SHA256 = re.compile(r"[0-9a-f]{64}")
IMAGE_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
VERSION_KEY = "modelops.io/model-version"
SHA256_KEY = "modelops.io/model-sha256"


def image_entry(kustomization: Path, image: str) -> dict[str, object]:
    """The overlay's images: entry for IMAGE (matched on the name's last path components)."""
    try:
        document = yaml.safe_load(kustomization.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ToolError(f"{kustomization}: not valid YAML{where}") from None
    entries = document.get("images") if isinstance(document, dict) else None
    matches = [
        entry
        for entry in entries or []
        if isinstance(entry, dict)
        and isinstance(entry.get("name"), str)
        and (entry["name"] == image or entry["name"].endswith("/" + image))
    ]
    if len(matches) != 1:
        raise ToolError(
            f"{kustomization} has {len(matches)} images: entries named {image!r}, not exactly 1"
        )
    return matches[0]


def changed_lines(before: str, after: str) -> list[str]:
    """The lines of a unified diff that were removed or added."""
    diff = difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
    return [line for line in diff if line[:1] in "+-" and line[:3] not in ("+++", "---")]


def model_version(value: str) -> str:
    """argparse type: a GTO version vX.Y.Z."""
    if not MODEL_VERSION.fullmatch(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a model version vX.Y.Z")
    return value


def image_digest(value: str) -> str:
    """argparse type: an image manifest digest sha256:<64 lowercase hex digits>."""
    if not IMAGE_DIGEST.fullmatch(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not an image digest sha256:<64 hex>")
    return value


def model_sha256(value: str) -> str:
    """argparse type: a sha256 as 64 lowercase hex digits."""
    if not MODEL_SHA256.fullmatch(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a sha256 of 64 lowercase hex digits")
    return value


def annotations(provenance: Path) -> dict[str, object]:
    """The pod template annotations of the Deployment patch in PROVENANCE ({} when absent)."""
    document = yaml.safe_load(provenance.read_text())
    node: object = document
    for key in ("spec", "template", "metadata", "annotations"):
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else {}


def with_annotations(text: str, values: dict[str, str], path: Path) -> str:
    """TEXT with the one indented `KEY: ...` line of each of VALUES' keys now `KEY: VALUE`."""
    lines = text.splitlines(keepends=True)
    for key, value in values.items():
        prefix = re.compile(rf"[ ]+{re.escape(key)}:(?=[ \r\n]|$)")
        found = [i for i, line in enumerate(lines) if prefix.match(line)]
        if len(found) != 1:
            raise ToolError(f"{path} has {len(found)} lines setting {key}, not exactly 1")
        line = lines[found[0]]
        body = line.rstrip("\r\n")
        indent = body[: len(body) - len(body.lstrip(" "))]
        lines[found[0]] = f"{indent}{key}: {value}{line[len(body) :]}"
    return "".join(lines)


def set_provenance(overlay: Path, version: str, sha256: str) -> tuple[Path, str, bool]:
    """Set the model version and sha256 annotations; (file, its old text, whether it changed)."""
    provenance = overlay / "provenance.yaml"
    if not provenance.is_file():
        raise ToolError(f"no provenance patch at {provenance}")
    # The sha256 quoted like the empty placeholder: hex such as 1e5... must stay a string.
    values = {VERSION_KEY: version, SHA256_KEY: f'"{sha256}"'}
    expected = {VERSION_KEY: version, SHA256_KEY: sha256}
    before = provenance.read_text()
    try:
        after = with_annotations(before, values, provenance)
        if after == before:
            return provenance, before, False
        provenance.write_text(after)
        changes = changed_lines(before, after)
        if len(changes) > 4 or not all(
            line[1:].lstrip().startswith((f"{VERSION_KEY}:", f"{SHA256_KEY}:")) for line in changes
        ):
            raise ToolError(f"setting the model in {provenance} changed other lines too")
        now = annotations(provenance)
        if any(now.get(key) != value for key, value in expected.items()):
            raise ToolError(f"{provenance} does not read {version} and {sha256} after the edit")
    except BaseException:
        provenance.write_text(before)
        raise
    return provenance, before, True


def with_entry_line(text: str, name: str, key: str, value: str, path: Path) -> str:
    """TEXT with the KEY line of the images entry NAME now reading VALUE (layout kept).

    The entry is the block that starts with its ``- name: NAME`` line (as kustomize writes it)
    and runs while lines are indented deeper than that dash. VALUE is quoted when YAML would
    read it as anything but a string (an all-digit SHA)."""
    lines = text.splitlines(keepends=True)
    entry = re.compile(rf"(?P<dash>[ ]*)-[ ]+name:[ ]+['\"]?{re.escape(name)}['\"]?[ ]*$")
    starts = [(i, m) for i, line in enumerate(lines) if (m := entry.match(line.rstrip("\r\n")))]
    if len(starts) != 1:
        raise ToolError(f"{path} has no '- name: {name}' line starting its images entry")
    start, match = starts[0]
    depth = len(match["dash"])
    block = [start]
    for index in range(start + 1, len(lines)):
        body = lines[index].rstrip("\r\n")
        if body.strip() and len(body) - len(body.lstrip(" ")) <= depth:
            break
        block.append(index)
    found = [i for i in block if re.match(rf"[ ]*(-[ ]+)?{key}:(?=[ ]|$)", lines[i])]
    if len(found) != 1:
        raise ToolError(f"{path}: the images entry {name} has {len(found)} {key} lines, not 1")
    line = lines[found[0]]
    body = line.rstrip("\r\n")
    shown = value if isinstance(yaml.safe_load(value), str) else f'"{value}"'
    lines[found[0]] = f"{body[: body.index(key + ':')]}{key}: {shown}{line[len(body) :]}"
    return "".join(lines)


def set_image(
    overlay: Path, image: str, sha: str, registry: str | None = None, digest: str | None = None
) -> bool:
    """Set IMAGE's tag in OVERLAY to SHA and, when the entry pins one, its digest to DIGEST;
    True when the file changed. Restores it on failure."""
    if not FULL_SHA.fullmatch(sha):
        raise ToolError(f"{sha!r} is not a full 40-character lowercase git SHA")
    kustomization = overlay / "kustomization.yaml"
    if not kustomization.is_file():
        raise ToolError(f"no overlay at {overlay} (missing kustomization.yaml)")
    entry = image_entry(kustomization, image)
    name = str(entry["name"])
    if registry is not None and entry.get("newName") != f"{registry}/{image}":
        raise ToolError(
            f"{kustomization} pulls {entry.get('newName')!r}, not {registry}/{image}: "
            "set its newName to the registry the image is pushed to"
        )
    if "digest" in entry and digest is None:
        raise ToolError(f"{kustomization} pins {name} by digest: give the new image's --digest")
    if digest is not None and "digest" not in entry:
        raise ToolError(f"{kustomization}: the images entry {name} has no digest line to set")
    wanted = {"newTag": sha, **({"digest": digest} if digest is not None else {})}
    before = kustomization.read_text()
    try:
        after = before
        for key, value in wanted.items():
            after = with_entry_line(after, name, key, value, kustomization)
        if after == before:
            return False
        kustomization.write_text(after)
        now = image_entry(kustomization, image)
        if any(now.get(key) != value for key, value in wanted.items()) or len(
            changed_lines(before, after)
        ) > 2 * len(wanted):
            shown = ", ".join(f"{k} {v}" for k, v in wanted.items())
            raise ToolError(f"{kustomization} does not read {shown} after the edit")
    except BaseException:
        kustomization.write_text(before)
        raise
    return True


def pin(
    overlay: Path,
    image: str,
    sha: str,
    registry: str | None = None,
    model: tuple[str, str] | None = None,
    digest: str | None = None,
) -> bool:
    """Pin OVERLAY to an image: its tag SHA (and DIGEST) and, with MODEL (version, sha256), the
    provenance; True when changed. Callers: this command's main and gitops.promote.pin (what
    *pin* means throughout: write an image digest into an overlay).

    On any failure both files are as they were.
    """
    if model is None:
        return set_image(overlay, image, sha, registry, digest)
    kustomization = overlay / "kustomization.yaml"
    if not kustomization.is_file():
        raise ToolError(f"no overlay at {overlay} (missing kustomization.yaml)")
    before = kustomization.read_text()
    provenance, old_provenance, provenance_changed = set_provenance(overlay, *model)
    try:
        image_changed = set_image(overlay, image, sha, registry, digest)
    except BaseException:
        provenance.write_text(old_provenance)
        kustomization.write_text(before)
        raise
    return image_changed or provenance_changed


def main(argv: Sequence[str]) -> int:
    parser = OneLineParser(prog="python -m gitops.set_image", description=__doc__)
    parser.add_argument("env", metavar="ENV", help="overlay directory name (environments.toml)")
    parser.add_argument("sha", metavar="SHA", help="full git SHA: the image tag")
    parser.add_argument("--overlays", type=Path, default=Path("kustomize/overlays"))
    parser.add_argument("--image", default=DEFAULT_IMAGE, help=f"default: {DEFAULT_IMAGE}")
    parser.add_argument("--registry", help="require newName PREFIX/IMAGE, e.g. ghcr.io/owner")
    parser.add_argument("--model-version", type=model_version, help="GTO version, e.g. v0.3.0")
    parser.add_argument("--model-sha256", type=model_sha256, help="sha256 of model.pkl (64 hex)")
    parser.add_argument(
        "--digest", type=image_digest, help="the image's sha256:<64 hex> (overlays that pin one)"
    )
    args = parser.parse_args(argv)
    if (args.model_version is None) != (args.model_sha256 is None):
        parser.error("--model-version and --model-sha256 go together")
    model = None if args.model_version is None else (args.model_version, args.model_sha256)
    overlay = args.overlays / args.env
    changed = pin(overlay, args.image, args.sha, args.registry, model, args.digest)
    print("changed" if changed else "unchanged")
    return 0


if __name__ == "__main__":
    run_main(main)
