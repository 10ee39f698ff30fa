"""Register the model at HEAD with GTO (a new version only when the model changed) and assign it
a GTO stage: the registry's side of a release (the word is *register*; *promote* is gitops.promote,
moving a release between environments).

usage: python -m gitops.register [--name NAME] [--model-path PATH] [--bump PART]
                                 [--push REMOTE] [--register-only] STAGE

Run in the repository after a merge into an environment branch. The model's identity is what DVC
records (hashes, sizes) for the outputs at or under PATH (default training/model) in the dvc.lock
files above it, read from git, so no data is downloaded. When a registered version (tag
NAME@vX.Y.Z) records the same, that version is the one assigned; otherwise HEAD is registered
with `gto register` (bumping PART, default minor; the first version is v0.1.0 for minor). Then
`gto assign` gives the version STAGE, unless the stage already points at it. With --push the tags
created are pushed to REMOTE in one atomic push. With --register-only no stage is assigned: the
promote.yml registers before it builds, and the stage follows once the environment runs the
model (gitops.assign_stage); model_ref is then the version tag NAME@vX.Y.Z.

Prints key=value lines for $GITHUB_OUTPUT: version, registered, assigned, model_ref (the exact
assignment tag NAME#STAGE#N, the image's MODEL_REF) and tags (those created, space-separated).
"""

from __future__ import annotations

import json
import posixpath
import re
import subprocess
from collections.abc import Sequence
from pathlib import PurePosixPath

import yaml

from gitops import environments
from gitops.cli import OneLineParser, ToolError, run, run_main
from training.params import ParamsError, load_artifact

FIRST_VERSION = {"major": "v1.0.0", "minor": "v0.1.0", "patch": "v0.0.1"}
SEMVER = re.compile(r"v(\d+)\.(\d+)\.(\d+)")


def show(rev: str, path: str) -> str | None:
    """The text of PATH at REV, or None when REV has no such file."""
    result = subprocess.run(
        ["git", "show", f"{rev}:{path}"], capture_output=True, text=True, check=False
    )
    return result.stdout if result.returncode == 0 else None


def model_hash(rev: str, model_path: str) -> str | None:
    """What DVC recorded at REV for the outputs at or under MODEL_PATH (hashes, sizes), as text.

    Reads every dvc.lock from MODEL_PATH's directory up to the root, resolving each output against
    its stage's wdir (from the dvc.yaml beside the lock), so a model made of several outputs of
    several stages (training/model/model.pkl, training/model/metadata.json) is one identity.
    """
    model = PurePosixPath(model_path)
    found = {}
    for lock_dir in model.parents:
        lock = show(rev, (lock_dir / "dvc.lock").as_posix())
        if lock is None:
            continue
        pipeline = yaml.safe_load(show(rev, (lock_dir / "dvc.yaml").as_posix()) or "") or {}
        stages = pipeline.get("stages") or {}
        for stage_name, stage in ((yaml.safe_load(lock) or {}).get("stages") or {}).items():
            wdir = (stages.get(stage_name) or {}).get("wdir", ".")
            for out in stage.get("outs") or []:
                path = PurePosixPath(posixpath.normpath(lock_dir / wdir / out["path"]))
                if path == model or model in path.parents:
                    found[path.as_posix()] = {k: v for k, v in out.items() if k != "path"}
    return json.dumps(found, sort_keys=True) if found else None


def versions(name: str) -> list[tuple[tuple[int, int, int], str]]:
    """Registered versions as ((major, minor, patch), tag), newest first."""
    found = []
    for tag in run("git", "tag", "--list", f"{name}@v*").split():
        match = SEMVER.fullmatch(tag.removeprefix(f"{name}@"))
        if match:
            major, minor, patch = (int(part) for part in match.groups())
            found.append(((major, minor, patch), tag))
    return sorted(found, reverse=True)


def assignment_tags(name: str, stage: str) -> list[str]:
    """The stage's assignment tags NAME#STAGE#N, highest N last."""
    tags = run("git", "tag", "--list", f"{name}#{stage}#*").split()
    return sorted(tags, key=lambda tag: int(tag.rsplit("#", 1)[1]))


def register(
    name: str, model_path: str, stage: str, bump: str, register_only: bool = False
) -> dict[str, str]:
    """Register (if needed) and assign; return what happened, for $GITHUB_OUTPUT."""
    head_hash = model_hash("HEAD", model_path)
    if head_hash is None:
        raise ToolError(f"no dvc.lock at HEAD records {model_path}: dvc repro, commit dvc.lock")
    known = versions(name)
    same = [tag for _, tag in known if model_hash(tag, model_path) == head_hash]
    created = []
    if same:
        version_tag = same[0]
    else:
        bump_args = [f"--bump-{bump}"] if known else ["--version", FIRST_VERSION[bump]]
        run("gto", "register", name, "HEAD", *bump_args)
        version_tag = versions(name)[0][1]
        created.append(version_tag)
    version = version_tag.removeprefix(f"{name}@")
    if register_only:
        return {
            "version": version,
            "registered": str(not same).lower(),
            "assigned": "false",
            "model_ref": version_tag,
            "tags": " ".join(created),
        }
    current = run("gto", "show", f"{name}#{stage}", "--ref").strip()
    if current != version_tag:
        run("gto", "assign", name, version_tag, "--stage", stage)
        created.append(assignment_tags(name, stage)[-1])
    return {
        "version": version,
        "registered": str(not same).lower(),
        "assigned": str(current != version_tag).lower(),
        "model_ref": assignment_tags(name, stage)[-1],
        "tags": " ".join(created),
    }


def main(argv: Sequence[str]) -> int:
    stages = [env.stage for env in environments.load()]
    try:
        name = load_artifact().name  # the default: training/params.yaml's artifact.name
    except ParamsError as error:
        raise ToolError(str(error)) from None
    parser = OneLineParser(prog="python -m gitops.register", description=__doc__)
    parser.add_argument("stage", metavar="STAGE", choices=stages, help=", ".join(stages))
    parser.add_argument("--name", default=name, help="GTO artifact name")
    parser.add_argument("--model-path", default="training/model", help="the artifact's path")
    parser.add_argument("--bump", choices=sorted(FIRST_VERSION), default="minor")
    parser.add_argument("--push", metavar="REMOTE", help="push the created tags to REMOTE")
    parser.add_argument("--register-only", action="store_true", help="assign no stage")
    args = parser.parse_args(argv)
    outputs = register(args.name, args.model_path, args.stage, args.bump, args.register_only)
    if args.push and outputs["tags"]:
        run("git", "push", "--atomic", args.push, *outputs["tags"].split())
    for key, value in outputs.items():
        print(f"{key}={value}")
    return 0


if __name__ == "__main__":
    run_main(main)
