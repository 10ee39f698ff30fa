"""retrain.yml's refusals, run by act (tests/workflows/act_harness.py) in a sandbox clone with a
DVC remote: a bad request (no snapshot, a missing file, a file prepare refuses, a plain http URL)
fails in one line at the snapshot step, pushing nothing and opening no pull request. A
repository_dispatch here is GitHub's event for a dispatch body written in the test (the
stand-in's wrapping, tests/workflows/act/github_api.py): what is tested is the snapshot source,
not the relay; the walk from the relay's own dispatch is test_act_retrain.py's. The integration
tier: no root.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from act_harness import Sandbox
from retrain_walk import (
    SNAPSHOT_STEP,
    dispatch_event,
    error_lines,
    pr_creations,
    walk,
    write_snapshot,
)

from training.params import load_artifact

pytestmark = pytest.mark.integration  # act running real git and DVC in a sandbox clone


def drift_dispatch(snapshot: str) -> bytes:
    """The event of a model-drift dispatch of one alert naming SNAPSHOT (none when empty)."""
    payload: dict[str, Any] = {
        "alerts": [
            {"alertname": "ModelInputDrift", "model": load_artifact().name,
             "namespace": "model-dev", "feature": "mean_radius", "psi": 0.4123},
        ]
    }  # fmt: skip
    if snapshot:
        payload["snapshot"] = snapshot
    return dispatch_event({"event_type": "model-drift", "client_payload": payload})


@pytest.mark.parametrize(
    ("event", "case", "message"),
    [
        (
            "repository_dispatch",
            "no-source",
            "error: no snapshot: give the input snapshot, client_payload.snapshot, or set the"
            " repository variable RETRAIN_SNAPSHOT (an https:// URL or a path the runner can read)",
        ),
        ("workflow_dispatch", "missing-file", "error: the snapshot {path}: no such file"),
        (
            "repository_dispatch",
            "unknown-label",
            "error: the snapshot {path} fails prepare's check: column 'diagnosis': label"
            " 'unknown' in line 6 is not in data.classes (benign, malignant)",
        ),
        (
            "workflow_dispatch",
            "http",
            "error: the snapshot must be an https:// URL or a path the runner can read,"
            " not http://",
        ),
    ],
)
def test_a_bad_snapshot_fails_in_one_line_and_pushes_nothing(
    retrain_sandbox: tuple[Sandbox, str], event: str, case: str, message: str
) -> None:
    sandbox, dvc_config = retrain_sandbox
    refs = sandbox.origin_refs()
    if case == "unknown-label":
        source = str(write_snapshot(sandbox, "bad-label.csv", label="unknown"))
    elif case == "missing-file":
        source = str(sandbox.root / "exports" / "not-exported-yet.csv")
    elif case == "http":
        source = "http://exports.example.com/diagnosis.csv"
    else:
        source = ""
    if event == "workflow_dispatch":
        # GitHub's workflow_dispatch event names the branch it runs on (act's ref otherwise is
        # a branch of the checkout the sandbox was cloned from: a worktree's, not main)
        inputs = {"snapshot": source, "reason": "by hand"}
        payload = json.dumps({"ref": "refs/heads/main", "inputs": inputs}).encode()
    else:
        payload = drift_dispatch(source)
    run = walk(sandbox, dvc_config, payload, event)
    assert run.returncode == 1, run.output
    assert f"❌  Failure - Main {SNAPSHOT_STEP}" in run.output
    assert error_lines(run) == [message.format(path=source)]
    assert sandbox.origin_refs() == refs
    assert pr_creations(sandbox.calls()) == []
    assert not run.step_started("dvc add, dvc repro")
