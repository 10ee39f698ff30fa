"""Stand-in for actions/download-artifact (tests/workflows/act/README.md): copy and record.

Run by action.yml (this folder) with the action's inputs as INPUT_NAME, INPUT_PATH, INPUT_RUN_ID
and INPUT_GITHUB_TOKEN, and the harness's MODELOPS_ACT_ARTIFACTS (this run's artifacts, one
folder each), MODELOPS_ACT_RUNS (each finished run's, ``<run number>/artifacts/<name>``) and
MODELOPS_ACT_DOWNLOADS (the record: one JSON line per download, ``{"name", "run_id", "path",
"files"}``).

What GitHub's action does, as far as a workflow can tell, for one named artifact: its files, laid
out as they were uploaded, go to ``path`` (relative to the workspace; default the workspace); with
``run-id`` it is that run's artifact, which needs ``github-token``; an artifact that is not there
fails the step. Not stood in: downloading every artifact (no ``name``), ``pattern``,
``merge-multiple``, ``repository``. A refusal is one ``::error::`` line and exit status 1.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path


def fail(message: str) -> int:
    print(f"::error::{message}")
    return 1


def main() -> int:
    name = os.environ.get("INPUT_NAME", "")
    run_id = os.environ.get("INPUT_RUN_ID", "")
    workspace = Path(os.environ.get("GITHUB_WORKSPACE", ".")).resolve()
    if not name:
        return fail("the download-artifact stand-in downloads one artifact: give its name")
    if run_id and not os.environ.get("INPUT_GITHUB_TOKEN"):
        return fail("Parameter token or opts.auth is required (run-id needs github-token)")
    if run_id:
        store = Path(os.environ["MODELOPS_ACT_RUNS"]) / run_id / "artifacts"
    else:
        store = Path(os.environ["MODELOPS_ACT_ARTIFACTS"])
    source = store / name
    if not source.is_dir():
        return fail(f"Unable to download artifact(s): Artifact not found for name: {name}")
    target = workspace / os.environ.get("INPUT_PATH", "")  # an absolute path replaces the workspace
    files = sorted(str(p.relative_to(source)) for p in source.rglob("*") if p.is_file())
    shutil.copytree(source, target, dirs_exist_ok=True)

    record = Path(os.environ["MODELOPS_ACT_DOWNLOADS"])
    with record.open("a") as log:
        entry = {"name": name, "run_id": run_id, "path": str(target), "files": files}
        log.write(json.dumps(entry) + "\n")
    if output := os.environ.get("GITHUB_OUTPUT"):
        with Path(output).open("a") as out:
            out.write(f"download-path={target}\n")
    print(f"download-artifact stand-in: {name} -> {len(files)} files, in {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
