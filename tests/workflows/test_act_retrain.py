"""retrain.yml, run by act (tests/workflows/act_harness.py) in a sandbox clone with a DVC remote.

A drift alert's repository_dispatch (event type model-drift) names a new data snapshot: the walk
checks that the workflow pushes one branch experiment/retrain-<id> to the sandbox's origin holding
the new DVC data version and a reproduced dvc.lock, pushes that data to the DVC remote, and opens
a pull request into main (recorded by the gh stand-in) whose body holds the alert, the metrics
against main and the PSI table of the snapshot against main's model profile; that the same
snapshot again proposes nothing more; and that a bad request (no snapshot, a missing file, a file
prepare refuses) fails in one line, pushing nothing. The integration tier: no root.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from act_harness import ActRun, Sandbox, run_act
from workflow_helpers import git, run_tool

from gitops import environments
from training import drift

pytestmark = pytest.mark.integration  # act running real git and DVC in a sandbox clone

WORKFLOW = "retrain.yml"
SNAPSHOT_STEP = "Take the snapshot as the new data version"
DATA = "training/data/breast_cancer.csv"
#: The features the snapshot shifts: only these may drift.
SHIFTED = {"mean_radius": lambda x: x * 1.4, "mean_texture": lambda x: x + 5.0}


def write_snapshot(sandbox: Sandbox, name: str, *, shift: bool = True, label: str = "") -> Path:
    """A data export as a team's would be: main's raw data, SHIFTED features moved, every 7th row
    left out; with LABEL, the label of the fifth row replaced (prepare refuses it)."""
    with (sandbox.work / DATA).open(newline="") as handle:
        header, *rows = list(csv.reader(handle))
    out = [header]
    for number, row in enumerate(rows):
        if number % 7 == 6:
            continue
        cells = dict(zip(header, row, strict=True))
        for column, move in SHIFTED.items():
            if shift:
                cells[column] = repr(move(float(cells[column])))
        if label and number == 4:
            cells["diagnosis"] = label
        out.append([cells[column] for column in header])
    path = sandbox.root / "exports" / name
    path.parent.mkdir(exist_ok=True)
    with path.open("w", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows(out)
    return path


def dispatch(
    sandbox: Sandbox, dvc_config: str, payload: dict[str, Any], event: str = "repository_dispatch"
) -> ActRun:
    path = sandbox.root / "event.json"
    path.write_text(json.dumps(payload))
    return run_act(
        sandbox, event, workflow=WORKFLOW, payload=path, secrets={"DVC_CONFIG": dvc_config}
    )


def drift_payload(snapshot: Path | None) -> dict[str, Any]:
    """What the relay sends for one firing ModelInputDrift alert (gitops.retrain dispatch-body)."""
    payload: dict[str, Any] = {
        "alerts": [
            {"alertname": "ModelInputDrift", "model": "diagnosis-classifier",
             "namespace": "model-dev", "feature": "mean_radius", "psi": 0.4123},
        ]
    }  # fmt: skip
    if snapshot is not None:
        payload["snapshot"] = str(snapshot)
    return {"action": "model-drift", "client_payload": payload}


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def show(sandbox: Sandbox, ref: str, path: str) -> str:
    return git(sandbox.origin, "show", f"{ref}:{path}")


def error_lines(run: ActRun) -> list[str]:
    """The `error: ...` lines the steps printed, as act shows a step's output."""
    return re.findall(r"\| (error: .*)", run.output)


def pr_creations(sandbox: Sandbox) -> list[dict[str, Any]]:
    return [call for call in sandbox.calls() if call["argv"][:2] == ["pr", "create"]]


@pytest.fixture(scope="module")
def proposed(retrain_sandbox: tuple[Sandbox, str]) -> tuple[Sandbox, str, ActRun, Path]:
    """The walk: a drift alert's dispatch naming a shifted snapshot. Its sandbox, DVC_CONFIG, run
    and snapshot."""
    sandbox, dvc_config = retrain_sandbox
    snapshot = write_snapshot(sandbox, "diagnosis-2026-11-28.csv")
    run = dispatch(sandbox, dvc_config, drift_payload(snapshot))
    return sandbox, dvc_config, run, snapshot


def test_a_drift_alert_pushes_one_experiment_branch_with_the_new_data_version(
    proposed: tuple[Sandbox, str, ActRun, Path],
) -> None:
    sandbox, _, run, snapshot = proposed
    assert run.returncode == 0, run.output
    version = md5(snapshot)
    branch = f"experiment/retrain-{version[:8]}"
    assert sandbox.origin_refs("refs/heads/") == ["refs/heads/" + branch, "refs/heads/main"]
    # one commit on main: the .dvc file's new data version and what dvc repro wrote
    main = git(sandbox.origin, "rev-parse", "main").strip()
    assert git(sandbox.origin, "rev-parse", f"{branch}^").strip() == main
    changed = git(sandbox.origin, "diff", "--name-only", main, branch).split()
    assert set(changed) == {
        f"{DATA}.dvc", "training/dvc.lock", "training/metrics.json",
        "training/plots/confusion.csv", "training/plots/precision_recall.csv",
        "training/plots/roc.csv",
    }  # fmt: skip
    [out] = yaml.safe_load(show(sandbox, branch, f"{DATA}.dvc"))["outs"]
    assert (out["md5"], out["size"]) == (version, snapshot.stat().st_size)
    # the pull request's branch names only data the DVC remote holds (pushed before the branch)
    assert (sandbox.root / "dvc-remote" / "files" / "md5" / version[:2] / version[2:]).is_file()


def test_the_branch_holds_the_pipeline_reproduced_on_the_snapshot(
    proposed: tuple[Sandbox, str, ActRun, Path],
) -> None:
    sandbox, _, run, snapshot = proposed
    assert run.returncode == 0, run.output
    branch = f"experiment/retrain-{md5(snapshot)[:8]}"
    lock = yaml.safe_load(show(sandbox, branch, "training/dvc.lock"))
    before = yaml.safe_load(show(sandbox, "main", "training/dvc.lock"))
    [data_dep] = [dep for dep in lock["stages"]["prepare"]["deps"] if dep["path"] == DATA]
    assert data_dep["md5"] == md5(snapshot)
    for stage in ("prepare", "train", "evaluate", "export"):  # every stage ran on the new data
        assert lock["stages"][stage]["outs"] != before["stages"][stage]["outs"], stage
    # the reproduced lock is what the branch's outputs are: the DVC remote holds each of them
    remote = sandbox.root / "dvc-remote" / "files" / "md5"
    for stage in ("prepare", "train", "export"):
        for out in lock["stages"][stage]["outs"]:
            assert (remote / out["md5"][:2] / out["md5"][2:]).is_file(), out["path"]


def test_the_pull_request_carries_the_alert_the_metrics_against_main_and_the_psi_table(
    proposed: tuple[Sandbox, str, ActRun, Path],
) -> None:
    sandbox, _, run, snapshot = proposed
    assert run.returncode == 0, run.output
    branch = f"experiment/retrain-{md5(snapshot)[:8]}"
    [call] = pr_creations(sandbox)
    assert call["argv"][2:6] == ["--base", "main", "--head", branch]
    body = call["stdin"]
    assert (
        "| `ModelInputDrift` | `diagnosis-classifier` | `model-dev` | `mean_radius` | 0.4123 |"
        in body
    )
    # the metrics: main's values against the branch's, from the two metrics.json files
    old = json.loads(show(sandbox, "main", "training/metrics.json"))
    new = json.loads(show(sandbox, branch, "training/metrics.json"))
    assert old != new
    for metric in ("accuracy", "f1", "roc_auc"):
        row = re.search(
            rf"^\| training/metrics\.json \| {metric} +\|([^|]+)\|([^|]+)\|", body, re.M
        )
        assert row, f"no {metric} row in the body"
        assert float(row[1]) == pytest.approx(old[metric], abs=1e-5), metric
        assert float(row[2]) == pytest.approx(new[metric], abs=1e-5), metric
    # the PSI table: the snapshot against main's profile, exactly as training.drift makes it
    profile = drift.load_profile(sandbox.work / "training/model/profile.json")
    columns, labels = drift.read_columns(snapshot, [f.name for f in profile.features], "diagnosis")
    expected = drift.drift(profile, columns, labels)
    assert drift.markdown(expected, profile.rows) in body
    drifted = {f.name for f in expected.features if f.psi >= drift.DRIFT}
    assert drifted == set(SHIFTED)
    assert "Nothing is promoted by this pull request" in body


def test_the_retrain_branch_is_one_the_pull_request_guard_lets_into_main(
    proposed: tuple[Sandbox, str, ActRun, Path],
) -> None:
    _, _, run, snapshot = proposed
    assert run.returncode == 0, run.output
    branch = f"experiment/retrain-{md5(snapshot)[:8]}"
    first = environments.load()[0].branch
    result = run_tool("check_pr_order", branch, first)
    assert result.stdout.startswith(f"ok: {branch} -> {first}")


def test_the_same_snapshot_again_proposes_nothing_more(
    proposed: tuple[Sandbox, str, ActRun, Path],
) -> None:
    sandbox, dvc_config, first, snapshot = proposed
    assert first.returncode == 0, first.output
    refs = sandbox.origin_refs()
    run = dispatch(sandbox, dvc_config, drift_payload(snapshot))
    assert run.returncode == 0, run.output
    assert f"experiment/retrain-{md5(snapshot)[:8]} is proposed already" in run.output
    assert sandbox.origin_refs() == refs
    assert pr_creations(sandbox) == []


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
        payload: dict[str, Any] = {"inputs": {"snapshot": source, "reason": "by hand"}}
    else:
        payload = drift_payload(Path(source) if source else None)
    run = dispatch(sandbox, dvc_config, payload, event)
    assert run.returncode == 1, run.output
    assert f"❌  Failure - Main {SNAPSHOT_STEP}" in run.output
    assert error_lines(run) == [message.format(path=source)]
    assert sandbox.origin_refs() == refs
    assert pr_creations(sandbox) == []
    assert not run.step_started("dvc add, dvc repro")
