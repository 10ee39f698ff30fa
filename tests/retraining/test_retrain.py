"""retraining.retrain: the retraining request read from the event, the snapshot fetched and checked
as prepare checks it before it becomes data.file, the pull request body, and the translation of an
Alertmanager webhook into GitHub's repository_dispatch body. A tiny repository in tmp_path."""

from __future__ import annotations

import hashlib
import io
import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from gitops.cli import ToolError
from retraining import retrain
from training.params import load_artifact

PARAMS = """\
data:
  file: training/data/table.csv
  target: label
  classes: [stay, leave]
  positive_class: leave
  features: all
  exclude: []
  feature_type: float64
  types: {}
prepare: {seed: 1, test_size: 0.25}
"""
TABLE = "x,y,label\n" + "".join(
    f"{i}.5,{i % 3},{'stay' if i % 2 else 'leave'}\n" for i in range(12)
)


def md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """params.yaml, the data file and its .dvc file, as a checkout of main has them."""
    root = tmp_path / "repo"
    (root / "training" / "data").mkdir(parents=True)
    (root / "training" / "params.yaml").write_text(PARAMS)
    (root / "training" / "data" / "table.csv").write_text(TABLE)
    (root / "training" / "data" / "table.csv.dvc").write_text(
        f"outs:\n- md5: {md5(TABLE)}\n  size: {len(TABLE)}\n  hash: md5\n  path: table.csv\n"
    )
    return root


def snapshot_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "export" / "snapshot.csv"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def dispatched(source: str | None = None, **payload: Any) -> retrain.Request:
    if source is not None:
        payload["snapshot"] = source
    return retrain.parse_event({"action": "model-drift", "client_payload": payload})


# --- the event ------------------------------------------------------------------------------


def test_a_manual_run_names_its_snapshot_its_person_and_reason() -> None:
    request = retrain.parse_event(
        {"inputs": {"snapshot": " https://x.test/a.csv ", "reason": "new month"},
         "sender": {"login": "ada"}}
    )  # fmt: skip
    assert request == retrain.Request(
        "workflow_dispatch", "https://x.test/a.csv", (), "ada", "new month"
    )


def test_a_dispatch_without_a_snapshot_takes_the_repositorys_default_source() -> None:
    event = {"action": "model-drift", "client_payload": {"alerts": []}}
    assert retrain.parse_event(event, "/exports/latest.csv").source == "/exports/latest.csv"
    assert retrain.parse_event(event).source == ""


def test_a_dispatch_carries_its_alerts_labels_and_psi() -> None:
    request = dispatched(
        "/e.csv",
        alerts=[
            {"alertname": "ModelInputDrift", "model": "m", "feature": "f", "psi": 0.31},
            {"alertname": "ModelScoreDrift", "model": "m"},
        ],
    )
    assert request.alerts == (
        {"alertname": "ModelInputDrift", "model": "m", "namespace": "", "feature": "f",
         "psi": 0.31},
        {"alertname": "ModelScoreDrift", "model": "m", "namespace": "", "feature": "",
         "psi": None},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ([], "must be a JSON object"),
        ({"ref": "main"}, "neither a workflow_dispatch"),
        ({"client_payload": {"alerts": {}}}, "alerts must be a list"),
        ({"client_payload": {"alerts": [{"model": "m"}]}}, r"alerts\[0\]\.alertname is missing"),
        ({"client_payload": {"alerts": [{"alertname": "A", "psi": "high"}]}}, "psi must be a"),
        ({"client_payload": {"alerts": [{"alertname": "A" * 201}]}}, "at most 200 characters"),
        ({"client_payload": {"snapshot": 3}}, "snapshot must be a string"),
        (
            {"client_payload": {"alert": [{"alertname": "A"}]}},
            r"^client_payload: unknown field 'alert' \(allowed: alerts, snapshot\)$",
        ),
        (
            {"client_payload": {"alerts": [{"alertname": "A", "features": "mean_radius"}]}},
            r"^client_payload\.alerts\[0\]: unknown field 'features'"
            r" \(allowed: alertname, model, namespace, feature, psi\)$",
        ),
    ],
    ids=[
        "not-object",
        "no-kind",
        "alerts-type",
        "no-alertname",
        "psi",
        "long",
        "snapshot",
        "payload-field",
        "alert-field",
    ],
)
def test_a_malformed_event_is_refused_naming_the_field(event: Any, message: str) -> None:
    with pytest.raises(ToolError, match=message):
        retrain.parse_event(event)


# --- the source -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("", "no snapshot: give the input snapshot"),
        ("http://x.test/a.csv", "not http://"),
        ("file:///etc/passwd", "not file://"),
        ("s3://bucket/a.csv", "not s3://"),
        ("https:///a.csv", "has no host"),
        ("/data/a.csv\n", "control character"),
    ],
)
def test_only_an_https_url_or_a_path_is_a_source(source: str, message: str) -> None:
    with pytest.raises(ToolError, match=message):
        retrain.check_source(source)


def test_a_urls_query_and_credentials_are_never_shown() -> None:
    url = "https://user:pw@exports.test:8443/d/a.csv?X-Amz-Signature=secret#x"
    assert retrain.shown(url) == "https://exports.test:8443/d/a.csv"
    assert retrain.shown("/data/a.csv") == "/data/a.csv"


class FakeResponse(io.BytesIO):
    def __enter__(self) -> FakeResponse:
        return self


def test_an_https_snapshot_is_fetched_with_the_bearer_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[urllib.request.Request] = []

    def urlopen(request: urllib.request.Request, timeout: float) -> FakeResponse:
        seen.append(request)
        return FakeResponse(TABLE.encode())

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    retrain.fetch("https://exports.test/a.csv", tmp_path / "a.csv", token="t0k")  # noqa: S106
    assert (tmp_path / "a.csv").read_text() == TABLE
    assert seen[0].get_header("Authorization") == "Bearer t0k"


def test_a_snapshot_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    source = snapshot_file(tmp_path, TABLE)
    with pytest.raises(ToolError, match="is larger than 10 bytes"):
        retrain.fetch(str(source), tmp_path / "a.csv", max_bytes=10)


# --- taking the snapshot --------------------------------------------------------------------


def test_a_new_snapshot_becomes_the_data_file_and_its_outputs_name_the_version(
    repo: Path, tmp_path: Path
) -> None:
    text = TABLE.replace("0.5,0,leave", "0.75,0,leave")
    source = snapshot_file(tmp_path, text)
    outputs = retrain.take_snapshot(dispatched(str(source)), repo)
    assert outputs == {
        "changed": "true", "data": "training/data/table.csv", "target": "label",
        "before": md5(TABLE), "after": md5(text), "id": md5(text)[:8], "rows": "12",
        "source": str(source),
    }  # fmt: skip
    assert (repo / "training/data/table.csv").read_text() == text
    assert sorted(p.name for p in (repo / "training/data").iterdir()) == [
        "table.csv", "table.csv.dvc",
    ]  # fmt: skip


def test_the_data_version_main_has_already_is_no_change(repo: Path, tmp_path: Path) -> None:
    outputs = retrain.take_snapshot(dispatched(str(snapshot_file(tmp_path, TABLE))), repo)
    assert (outputs["changed"], outputs["after"]) == ("false", md5(TABLE))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (TABLE.replace("x,y,label", "x,y,outcome"), "fails prepare's check: .*'label'"),
        (TABLE.replace("1.5,1,stay", "1.5,1,gone"), "label 'gone' in line 3 is not in data"),
        (TABLE.replace("1.5,1,stay", "1.5,,stay"), "fails prepare's check"),
        ("x,y,label\n" + "1,2,stay\n" * 12, "class 'leave' has 0 rows"),
    ],
    ids=["missing-column", "unknown-label", "missing-value", "one-class"],
)
def test_a_snapshot_prepare_would_refuse_leaves_the_data_file_untouched(
    repo: Path, tmp_path: Path, text: str, message: str
) -> None:
    source = snapshot_file(tmp_path, text)
    with pytest.raises(ToolError, match=message) as refused:
        retrain.take_snapshot(dispatched(str(source)), repo)
    assert str(refused.value).startswith(f"the snapshot {source} fails prepare's check: ")
    assert "\n" not in str(refused.value)
    assert (repo / "training/data/table.csv").read_text() == TABLE
    assert sorted(p.name for p in (repo / "training/data").iterdir()) == [
        "table.csv", "table.csv.dvc",
    ]  # fmt: skip


def test_a_missing_snapshot_file_is_one_line(repo: Path, tmp_path: Path) -> None:
    with pytest.raises(ToolError, match="no such file"):
        retrain.take_snapshot(dispatched(str(tmp_path / "nope.csv")), repo)


def test_the_command_prints_the_step_outputs_and_refuses_in_one_line(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"inputs": {"snapshot": str(tmp_path / "nope.csv")}}))
    with pytest.raises(SystemExit) as exited:
        retrain.run_main(retrain.main, ["snapshot", "--event", str(event), "--root", str(repo)])
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert err == f"error: the snapshot {tmp_path / 'nope.csv'}: no such file\n"


# --- the body -------------------------------------------------------------------------------


def test_the_body_escapes_what_the_event_says_and_holds_drift_and_report() -> None:
    request = dispatched(
        alerts=[{"alertname": "ModelInputDrift", "feature": "x|`![i](http://e)`\n", "psi": 0.5}]
    )
    text = retrain.body(
        request, data="d.csv", source="/e.csv", before="a" * 32, after="b" * 32,
        drift="DRIFT TABLE\n", report="## Model report\n",
    )  # fmt: skip
    assert "| `ModelInputDrift` | - | - | `x??![i](http://e)??` | 0.5000 |" in text
    assert "DRIFT TABLE" in text and "## Model report" in text
    assert text.index("DRIFT TABLE") < text.index("## Model report") < text.index("### Review")


def test_a_manual_runs_body_names_the_person_and_reason() -> None:
    request = retrain.parse_event(
        {"inputs": {"snapshot": "/e.csv", "reason": "Q4 export"}, "sender": {"login": "ada"}}
    )
    text = retrain.body(
        request, data="d.csv", source="/e.csv", before="", after="b", drift="", report=""
    )
    assert "Started by hand (workflow_dispatch) by `ada`: `Q4 export`." in text
    assert "| `d.csv` on main | - |" in text


# --- Alertmanager to GitHub -----------------------------------------------------------------

MODEL = load_artifact().name  # the alerts' model label (the chart's model.name)
WEBHOOK = {
    "version": "4",
    "status": "firing",
    "receiver": "retrain",
    "alerts": [
        {"status": "firing",
         "labels": {"alertname": "ModelInputDrift", "model": MODEL,
                    "namespace": "model-prod", "feature": "mean_radius", "severity": "warning"},
         "annotations": {"psi": "0.3141", "summary": "Input drift"}},
        {"status": "resolved", "labels": {"alertname": "ModelInputDrift", "feature": "old"}},
        {"status": "firing", "labels": {"alertname": "ModelHighErrorRate"}},
        {"status": "firing", "labels": {"alertname": "ModelScoreDrift", "model": "m"},
         "annotations": {}},
    ],
}  # fmt: skip


def test_an_alertmanager_webhook_becomes_a_repository_dispatch_of_its_firing_drift_alerts() -> None:
    body = retrain.dispatch_body(WEBHOOK, "https://exports.test/latest.csv")
    assert body == {
        "event_type": "model-drift",
        "client_payload": {
            "alerts": [
                {"alertname": "ModelInputDrift", "model": MODEL,
                 "namespace": "model-prod", "feature": "mean_radius", "psi": 0.3141},
                {"alertname": "ModelScoreDrift", "model": "m"},
            ],
            "snapshot": "https://exports.test/latest.csv",
        },
    }  # fmt: skip
    # and the workflow reads it back as it was sent
    request = retrain.parse_event({"action": "model-drift", **body})
    assert [a["psi"] for a in request.alerts] == [0.3141, None]


def test_a_webhook_without_a_firing_drift_alert_dispatches_nothing() -> None:
    quiet = {**WEBHOOK, "alerts": WEBHOOK["alerts"][1:3]}
    with pytest.raises(ToolError, match="no firing ModelInputDrift or ModelScoreDrift alert"):
        retrain.dispatch_body(quiet)
    with pytest.raises(ToolError, match="not an Alertmanager webhook body"):
        retrain.dispatch_body({"status": "firing"})
