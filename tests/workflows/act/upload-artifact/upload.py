"""Stand-in for actions/upload-artifact (tests/workflows/act/README.md): copy, record, no upload.

Run by action.yml (this folder) in the workflow's workspace, with the action's inputs as
INPUT_NAME, INPUT_PATH, INPUT_IF_NO_FILES_FOUND, INPUT_OVERWRITE and INPUT_INCLUDE_HIDDEN_FILES,
and the harness's MODELOPS_ACT_ARTIFACTS (the folder that holds one folder per artifact) and
MODELOPS_ACT_UPLOADS (the record: one JSON line per upload, ``{"name", "files"}``).

What GitHub's action does, as far as a workflow can tell: the paths (files, folders, glob patterns,
one a line) are searched from the workspace; the artifact's files keep their paths relative to
the search paths' common folder (a lone file: its own folder); hidden files are left out unless
``include-hidden-files``; no match warns, fails or passes as ``if-no-files-found`` says; a second
artifact of one name in a run fails unless ``overwrite``. Outputs ``artifact-id`` (the upload's
number in the run) and ``artifact-url``. Not stood in: ``!`` exclusions (refused by name),
``retention-days`` and ``compression-level`` (ignored), the ``artifact-digest`` output.
A refusal is one ``::error::`` line and exit status 1.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import sys
from pathlib import Path

GLOB_CHARS = set("*?[")


def search_path(pattern: str, workspace: Path) -> Path:
    """The folder GitHub's search starts from for PATTERN: its leading parts without a glob."""
    parts = Path(pattern).parts
    literal = []
    for part in parts:
        if GLOB_CHARS & set(part):
            break
        literal.append(part)
    return (workspace / Path(*literal)) if literal else workspace


def matches(pattern: str, workspace: Path, hidden: bool) -> list[Path]:
    """Every file PATTERN names, a matched folder standing for the files below it."""
    found: set[Path] = set()
    # glob.glob: Path.glob takes neither absolute patterns nor include_hidden.
    hits = glob.glob(pattern, root_dir=workspace, recursive=True, include_hidden=hidden)  # noqa: PTH207
    for hit in hits:
        path = workspace / hit
        below = path.rglob("*") if path.is_dir() else [path]
        found.update(p for p in below if p.is_file())
    if not hidden:
        found = {p for p in found if not any(part.startswith(".") for part in shown(p, workspace))}
    return sorted(found)


def shown(path: Path, workspace: Path) -> tuple[str, ...]:
    """The parts of PATH a pattern names: relative to the workspace when it is inside it."""
    return path.relative_to(workspace).parts if path.is_relative_to(workspace) else path.parts


def fail(message: str) -> int:
    print(f"::error::{message}")
    return 1


def main() -> int:
    name = os.environ["INPUT_NAME"]
    patterns = [line.strip() for line in os.environ["INPUT_PATH"].splitlines() if line.strip()]
    if_none = os.environ.get("INPUT_IF_NO_FILES_FOUND", "warn")
    hidden = os.environ.get("INPUT_INCLUDE_HIDDEN_FILES", "false") == "true"
    workspace = Path(os.environ.get("GITHUB_WORKSPACE", ".")).resolve()
    store = Path(os.environ["MODELOPS_ACT_ARTIFACTS"])
    record = Path(os.environ["MODELOPS_ACT_UPLOADS"])
    if if_none not in {"warn", "error", "ignore"}:
        return fail(f"if-no-files-found must be warn, error or ignore, got {if_none!r}")
    if excluded := [p for p in patterns if p.startswith("!")]:
        return fail(f"the upload-artifact stand-in does not know exclusions: {excluded[0]}")

    files = sorted({f for pattern in patterns for f in matches(pattern, workspace, hidden)})
    if not files:
        message = f"No files were found with the provided path: {' '.join(patterns)}"
        if if_none == "error":
            return fail(message)
        if if_none == "warn":
            print(f"::warning::{message}. No artifacts will be uploaded.")
        return 0

    roots = sorted({search_path(p, workspace) for p in patterns})
    if len(roots) > 1:
        root = Path(os.path.commonpath(roots))
    elif files == roots:
        root = roots[0].parent
    else:
        root = roots[0]
    target = store / name
    if target.exists():
        if os.environ.get("INPUT_OVERWRITE", "false") != "true":
            return fail(f"an artifact named {name} exists already in this run (overwrite: true)")
        shutil.rmtree(target)
    names = [str(f.relative_to(root)) for f in files]
    for file, relative in zip(files, names, strict=True):
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, target / relative)

    record.parent.mkdir(parents=True, exist_ok=True)
    with record.open("a") as log:
        log.write(json.dumps({"name": name, "files": names}) + "\n")
    number = len(record.read_text().splitlines())
    server, repository, run_id = (
        os.environ.get(v, "") for v in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID")
    )
    run = f"{server}/{repository}/actions/runs/{run_id}"
    if output := os.environ.get("GITHUB_OUTPUT"):
        with Path(output).open("a") as out:
            out.write(f"artifact-id={number}\nartifact-url={run}/artifacts/{number}\n")
    print(f"upload-artifact stand-in: {name} <- {len(names)} files, in {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
