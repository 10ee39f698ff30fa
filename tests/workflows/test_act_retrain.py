"""retrain.yml, run by act (tests/workflows/act_harness.py) in a sandbox clone with a DVC remote,
on the repository_dispatch the drift alert loop's relay sent (tests/alert_loop/fixtures.py: real
Prometheus, Alertmanager and relay; the request as the stand-in for GitHub's API received it,
wrapped into the event GitHub delivers by that stand-in, tests/workflows/act/github_api.py, and
nowhere else). The dispatch names no snapshot, so the repository variable RETRAIN_SNAPSHOT does:
the team's data export, whose rows have the dispatched features moved as the loop's traffic had.

The walk checks that the workflow's steps saw that event byte for byte, pushes one branch
experiment/retrain-<id> to the sandbox's origin holding the new DVC data version and a reproduced
dvc.lock, pushes that data to the DVC remote, and opens a pull request into main (recorded by the
gh stand-in) whose body holds exactly the alerts the relay dispatched, the metrics against main
and the PSI table of the snapshot against main's model profile; that the same dispatch again
proposes nothing more; and that a dispatch whose shape drifted (a field renamed) fails the run in
one line. The refusals of bad snapshots are test_act_retrain_refusals.py's (integration tier).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from act_harness import ActRun, Sandbox
from alert_loop.fixtures import DriftLoop, features_of
from retrain_walk import (
    DATA,
    SNAPSHOT_STEP,
    error_lines,
    events_seen,
    pr_creations,
    walk,
    write_snapshot,
)
from workflow_helpers import git, run_tool

from gitops import environments
from tests.workflows.act.github_api import repository_dispatch_event
from training import drift

# The drift alert loop (Nginx, uWSGI, Prometheus, Alertmanager: root's Debian packages) and act.
pytestmark = pytest.mark.e2e

#: An alert table row of the pull request's body (retraining.retrain.trigger_section).
ALERT_ROW = re.compile(r"^\| `(\w+)` \| `([^`]*)` \| `([^`]*)` \| `([^`]*)` \| ([0-9.]+) \|$", re.M)


@dataclass(frozen=True)
class Proposed:
    """The walk on the relay's dispatch: its sandbox, DVC_CONFIG, the request the stand-in
    received, the event act was given, the snapshot, the run and its gh calls."""

    sandbox: Sandbox
    dvc_config: str
    request: dict[str, Any]
    event: bytes
    snapshot: Path
    run: ActRun
    calls: list[dict[str, Any]]

    @property
    def branch(self) -> str:
        return f"experiment/retrain-{md5(self.snapshot)[:8]}"


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def show(sandbox: Sandbox, ref: str, path: str) -> str:
    return git(sandbox.origin, "show", f"{ref}:{path}")


def alert_rows(body: str) -> set[tuple[str, str, str, str, float]]:
    """The alerts the pull request's body names: alertname, model, namespace, feature, PSI."""
    return {(a, m, n, f, float(psi)) for a, m, n, f, psi in ALERT_ROW.findall(body)}


@pytest.fixture(scope="module")
def proposed(drift_loop: DriftLoop, retrain_sandbox: tuple[Sandbox, str]) -> Proposed:
    sandbox, dvc_config = retrain_sandbox
    request = drift_loop.requests[-1]
    features = sorted(features_of(json.loads(request["raw"])))
    snapshot = write_snapshot(sandbox, "diagnosis-2026-11-28.csv", shift=features)
    event = drift_loop.event
    run = walk(sandbox, dvc_config, event, snapshot_variable=str(snapshot))
    return Proposed(sandbox, dvc_config, request, event, snapshot, run, sandbox.calls())


def test_the_walk_runs_on_the_event_github_delivers_for_the_relays_dispatch_byte_for_byte(
    proposed: Proposed,
) -> None:
    assert proposed.run.returncode == 0, proposed.run.output
    # what act handed the steps ($GITHUB_EVENT_PATH, read by the gh stand-in at each call) is the
    # stand-in's event of the request it received, byte for byte
    assert events_seen(proposed.calls) == {proposed.event.decode()}
    event, sent = json.loads(proposed.event), json.loads(proposed.request["raw"])
    assert event["action"] == sent["event_type"] == "model-drift"
    assert event["client_payload"] == sent["client_payload"]
    assert "snapshot" not in sent["client_payload"]  # the repository variable names it


def test_a_drift_alert_pushes_one_experiment_branch_with_the_new_data_version(
    proposed: Proposed,
) -> None:
    sandbox, run, snapshot, branch = (
        proposed.sandbox,
        proposed.run,
        proposed.snapshot,
        proposed.branch,
    )
    assert run.returncode == 0, run.output
    version = md5(snapshot)
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


def test_the_branch_holds_the_pipeline_reproduced_on_the_snapshot(proposed: Proposed) -> None:
    sandbox, run, snapshot = proposed.sandbox, proposed.run, proposed.snapshot
    assert run.returncode == 0, run.output
    lock = yaml.safe_load(show(sandbox, proposed.branch, "training/dvc.lock"))
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


def test_the_pull_request_names_exactly_the_dispatched_alerts_the_metrics_and_the_psi_table(
    proposed: Proposed,
) -> None:
    sandbox, run, snapshot, branch = (
        proposed.sandbox,
        proposed.run,
        proposed.snapshot,
        proposed.branch,
    )
    assert run.returncode == 0, run.output
    [call] = pr_creations(proposed.calls)
    assert call["argv"][2:6] == ["--base", "main", "--head", branch]
    body = call["stdin"]
    # the alerts: exactly those of the relay's dispatch, as the relay sent them
    sent = json.loads(proposed.request["raw"])["client_payload"]["alerts"]
    assert alert_rows(body) == {
        (a["alertname"], a["model"], a["namespace"], a["feature"], round(a["psi"], 4)) for a in sent
    }
    dispatched = features_of(json.loads(proposed.request["raw"]))
    assert {row[3] for row in alert_rows(body)} == dispatched != set()
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
    # the PSI table: the snapshot against main's profile, exactly as training.drift makes it; the
    # export drifted where the live traffic did
    profile = drift.load_profile(sandbox.work / "training/model/profile.json")
    columns, labels = drift.read_columns(snapshot, [f.name for f in profile.features], "diagnosis")
    expected = drift.drift(profile, columns, labels)
    assert drift.markdown(expected, profile.rows) in body
    assert {f.name for f in expected.features if f.psi >= drift.DRIFT} == dispatched
    assert "Nothing is promoted by this pull request" in body


def test_the_retrain_branch_is_one_the_pull_request_guard_lets_into_main(
    proposed: Proposed,
) -> None:
    assert proposed.run.returncode == 0, proposed.run.output
    first = environments.load()[0].branch
    result = run_tool("check_pr_order", proposed.branch, first)
    assert result.stdout.startswith(f"ok: {proposed.branch} -> {first}")


def test_the_same_dispatch_again_proposes_nothing_more(proposed: Proposed) -> None:
    sandbox = proposed.sandbox
    assert proposed.run.returncode == 0, proposed.run.output
    refs = sandbox.origin_refs()
    run = walk(
        sandbox, proposed.dvc_config, proposed.event, snapshot_variable=str(proposed.snapshot)
    )
    assert run.returncode == 0, run.output
    assert f"{proposed.branch} is proposed already" in run.output
    assert sandbox.origin_refs() == refs
    assert pr_creations(sandbox.calls()) == []


def test_a_dispatch_whose_alert_field_was_renamed_fails_the_walk_in_one_line(
    drift_loop: DriftLoop, retrain_sandbox: tuple[Sandbox, str]
) -> None:
    """The seam can fail: the relay's dispatch with each alert's ``feature`` sent as
    ``features`` (a relay whose shape drifted) stops the run at the snapshot step, and the check
    that the steps saw the relay's event rejects the run."""
    sandbox, dvc_config = retrain_sandbox
    request = drift_loop.requests[-1]
    body = json.loads(request["raw"])
    for alert in body["client_payload"]["alerts"]:
        alert["features"] = alert.pop("feature")
    renamed = repository_dispatch_event({**request, "raw": json.dumps(body).encode()})
    snapshot = write_snapshot(sandbox, "renamed-field.csv", shift=["mean_radius"])
    refs = sandbox.origin_refs()
    run = walk(sandbox, dvc_config, renamed, snapshot_variable=str(snapshot))
    assert run.returncode == 1, run.output
    assert f"❌  Failure - Main {SNAPSHOT_STEP}" in run.output
    assert error_lines(run) == [
        "error: client_payload.alerts[0]: unknown field 'features'"
        " (allowed: alertname, model, namespace, feature, psi)"
    ]
    assert sandbox.origin_refs() == refs
    assert pr_creations(sandbox.calls()) == []
    assert events_seen(sandbox.calls()) == {renamed.decode()} != {drift_loop.event.decode()}
