"""What the walks of retrain.yml share: the workflow's names, a team's data export, one act run
of a repository_dispatch or workflow_dispatch event, and what a run printed and recorded.

Used by test_act_retrain.py (the walk from the drift alert loop's dispatch, e2e tier) and
test_act_retrain_refusals.py (the refusals, integration tier).
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from act_harness import OWNER_NAME, ActRun, Sandbox, run_act

from devstack import drift_demo
from tests.workflows.act.github_api import repository_dispatch_event

WORKFLOW = "retrain.yml"
SNAPSHOT_STEP = "Take the snapshot as the new data version"
DATA = "training/data/breast_cancer.csv"
TARGET = "diagnosis"


def write_snapshot(
    sandbox: Sandbox, name: str, *, shift: Sequence[str] = (), label: str = ""
) -> Path:
    """A data export as a team's would be: main's raw data with every 7th row left out and the
    features SHIFT moved up as the drift loop's traffic moved them (devstack.drift_demo.shift);
    with LABEL, the label of the fifth row replaced (prepare refuses it)."""
    with (sandbox.work / DATA).open(newline="") as handle:
        header, *rows = list(csv.reader(handle))
    kept = [row for number, row in enumerate(rows) if number % 7 != 6]
    columns = [header.index(feature) for feature in shift]
    if columns:
        values = np.array([[float(row[c]) for c in columns] for row in kept])
        moved = drift_demo.shift(values, range(len(columns)))
        for row, new in zip(kept, moved, strict=True):
            for column, value in zip(columns, new, strict=True):
                row[column] = repr(float(value))
    if label:
        kept[4][header.index(TARGET)] = label
    path = sandbox.root / "exports" / name
    path.parent.mkdir(exist_ok=True)
    with path.open("w", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows([header, *kept])
    return path


def dispatch_event(body: dict[str, Any]) -> bytes:
    """The repository_dispatch event GitHub delivers for a dispatch request with BODY to the
    sandbox's repository (the stand-in's wrapping: tests/workflows/act/github_api.py)."""
    request = {"path": f"/repos/{OWNER_NAME}/dispatches", "raw": json.dumps(body).encode()}
    return repository_dispatch_event(request)


def walk(
    sandbox: Sandbox,
    dvc_config: str,
    event: bytes,
    kind: str = "repository_dispatch",
    snapshot_variable: str = "",
) -> ActRun:
    """act runs retrain.yml for the event KIND whose payload is EVENT (written as is), with the
    secret DVC_CONFIG and, when given, the repository variable RETRAIN_SNAPSHOT."""
    path = sandbox.root / "event.json"
    path.write_bytes(event)
    variables = {"RETRAIN_SNAPSHOT": snapshot_variable} if snapshot_variable else {}
    return run_act(
        sandbox,
        kind,
        workflow=WORKFLOW,
        payload=path,
        variables=variables,
        secrets={"DVC_CONFIG": dvc_config},
    )


def error_lines(run: ActRun) -> list[str]:
    """The `error: ...` lines the steps printed, as act shows a step's output."""
    return re.findall(r"\| (error: .*)", run.output)


def pr_creations(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The `gh pr create` calls among a run's gh CALLS (Sandbox.calls())."""
    return [call for call in calls if call["argv"][:2] == ["pr", "create"]]


def events_seen(calls: list[dict[str, Any]]) -> set[str | None]:
    """The event files (their text) the run's steps saw, by the gh stand-in's record of CALLS:
    one text for a run that got as far as a gh call."""
    return {call["event"] for call in calls}
