"""Stage 1 of serving/Dockerfile: fetch a registered model by its GTO ref and verify it.

``fetch`` resolves the ref (``name#stage`` or ``name@vX.Y.Z``) with ``gto show`` on a bare clone of
the model repository, fetches the artifact directory with ``dvc get`` by the version tag, checks the
sha256 of the model file against ``metadata.json`` and writes the provenance the image build needs
(name, version, stage, tag, sha256) as JSON. ``check`` compares that provenance with the values the
final stage was given as build args, so labels and environment can only name the model shipped.

Runs with the standard library, the artifact contract (modelcard/, copied beside this script) and
the ``git``, ``gto`` and ``dvc`` commands; any failure is one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import modelcard

REF = re.compile(
    r"^(?P<name>[a-z][a-z0-9-]*)"
    r"(?:@(?P<version>v\d+\.\d+\.\d+)|#(?P<stage>[a-z0-9-]+)(?P<assignment>#\d+)?)$"
)


class FetchError(Exception):
    """A problem worth one line to the person running the build."""


def run(*cmd: str) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        raise FetchError(f"{cmd[0]} {cmd[1]} failed: {last}")
    return done.stdout.strip()


def parse_ref(ref: str) -> tuple[str, str, bool]:
    """Return (artifact name, stage or "", whether it is an exact assignment tag) of a GTO ref,
    refusing anything else."""
    match = REF.match(ref)
    if not match:
        raise FetchError(
            f"MODEL_REF {ref!r} is not a GTO ref: use NAME#STAGE, NAME#STAGE#N or NAME@vX.Y.Z"
            " (NAME: artifact.name of training/params.yaml)"
        )
    return match["name"], match["stage"] or "", bool(match["assignment"])


def verify(model_dir: Path, name: str) -> str:
    """Check the fetched artifact against the contract (modelcard: the card, the sha256 of the
    model file and of the verification sample); return the model file's verified sha256."""
    try:
        card = modelcard.load(model_dir)
    except modelcard.ContractError as exc:
        raise FetchError(str(exc)) from None
    if card["name"] != name:
        raise FetchError(f"metadata.json names model {card['name']!r}, the ref names {name!r}")
    return str(card["model_sha256"])


def prune(model_dir: Path) -> None:
    """Keep only the files the server needs (modelcard.served_files); ``dvc get`` also brings
    the pipeline's scikit-learn pickle and git-tracked files such as DVC's .gitignore."""
    keep = set(modelcard.served_files(modelcard.read_card(model_dir)))
    for entry in model_dir.iterdir():
        if entry.name not in keep:
            if entry.is_dir():
                raise FetchError(f"unexpected directory {entry.name} in the model directory")
            entry.unlink()


def fetch(repo: str, ref: str, path: str, out: Path, provenance: Path, dvc_config: Path) -> None:
    name, stage, exact = parse_ref(ref)
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "repo.git"
        run("git", "clone", "--quiet", "--bare", repo, str(clone))
        if exact:  # an assignment tag: immutable, what CI passes (docs/workflow.md)
            event = json.loads(run("gto", "check-ref", ref, "--repo", str(clone), "--json") or "{}")
            tag, version = (
                (ref, event.get("version", "")) if event.get("stage") == stage else ("", "")
            )
        else:
            tag = run("gto", "show", ref, "--repo", str(clone), "--ref")
            version = run("gto", "show", ref, "--repo", str(clone), "--version")
        if not tag or not version:
            raise FetchError(f"GTO ref {ref} resolves to no registered version in {repo}")
        get = ["dvc", "get", str(clone), path, "--rev", tag, "-o", str(out)]
        if dvc_config.is_file():
            get += ["--config", str(dvc_config)]
        run(*get)
    sha256 = verify(out, name)
    prune(out)
    record = {"name": name, "version": version, "stage": stage, "tag": tag, "sha256": sha256}
    provenance.write_text(json.dumps(record, indent=2) + "\n")
    print(f"fetched {name} {version} ({tag}) sha256 {sha256}")


def check(provenance: Path, expected: dict[str, str]) -> None:
    record = json.loads(provenance.read_text())
    for key, value in expected.items():
        if record.get(key) != value:
            raise FetchError(
                f"build arg MODEL_{key.upper()}={value!r}"
                f" but the fetched model has {record.get(key)!r}"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fetch")
    f.add_argument("--repo", required=True)
    f.add_argument("--ref", required=True)
    f.add_argument("--path", required=True)
    f.add_argument("--out", type=Path, required=True)
    f.add_argument("--provenance", type=Path, required=True)
    f.add_argument("--dvc-config", type=Path, default=Path("/run/secrets/dvc_config"))
    c = sub.add_parser("check")
    c.add_argument("--provenance", type=Path, required=True)
    for key in ("name", "version", "stage", "sha256"):
        c.add_argument(f"--{key}", required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            if not args.repo or not args.ref:
                raise FetchError("build args MODEL_REPO and MODEL_REF are required")
            fetch(args.repo, args.ref, args.path, args.out, args.provenance, args.dvc_config)
        else:
            expected = {k: getattr(args, k) for k in ("name", "version", "stage", "sha256")}
            check(args.provenance, expected)
    except FetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    os.environ.setdefault("GTO_NO_ANALYTICS", "1")
    sys.exit(main())
