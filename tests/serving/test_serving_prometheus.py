"""A real Prometheus (Debian's ``prometheus``, on loopback) scraping the real serving stack (Nginx +
uWSGI, 2 workers) with the chart's own recording and alert rules (devstack.prometheus renders
them with ``helm template``; the window and ``for`` shortened through values: 20 s and 5 s).

In-distribution traffic (every row of the tiny model's data set: train and test split, see
devstack.drift_demo for why not the test split alone) keeps every PSI low, equal to the PSI
training.drift computes offline from the same rows and the model's profile.json, and no alert
active; the same rows with two chosen features shifted make exactly those features' PSI pass
0.2 and exactly their ModelInputDrift alerts fire, each naming the model, the namespace and the
feature. Prometheus sends its alerts to a real Alertmanager (Debian's ``prometheus-alertmanager``,
devstack.alertmanager, configured as docs/monitoring.md tells a team), whose webhook receiver is
the retraining relay (uWSGI, as its pod runs it): the relay sends GitHub's
repository dispatch, to the stand-in for GitHub's API (tests/workflows/act/github_api.py), naming
exactly the shifted features, and nothing while the traffic is in distribution. The loop runs once
a session (tests/alert_loop/fixtures.py): test_act_retrain.py walks retrain.yml from the relay's
latest dispatch. A stack still loading its model fails its scrapes and fires ModelNotReady.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from alert_loop.fixtures import (
    GITHUB_TOKEN,
    REPOSITORY,
    SHIFTED,
    DriftLoop,
    features_of,
    helm,
    need_prometheus,
    wait,
)
from conftest import wait_until_loading
from serving_testkit import LOAD_SECONDS_ENV, SlowLoadingModel, TinyModel, build_model

from devstack import drift_demo
from devstack.prometheus import NAMESPACE, Prometheus, render_rules
from devstack.stack import Stack
from training import drift as offline
from training.params import load_artifact

# Nginx, uWSGI, Prometheus and Alertmanager processes (Debian packages: root to install); the
# drift demo's refusals and its plot too, which share the module's fixtures.
pytestmark = pytest.mark.e2e

MODEL = load_artifact().name  # the rules' model label: the chart's model.name (make render)


@pytest.fixture(scope="module")
def tiny(drift_model: TinyModel) -> TinyModel:
    """The loop's model (tests/alert_loop/fixtures.py), for the drift demo's refusals too."""
    return drift_model


def offline_psi(tiny: TinyModel, rows: np.ndarray) -> dict[str, float]:
    profile = json.loads((tiny.directory / "profile.json").read_text())
    return {
        f["name"]: offline.psi(
            offline.shares(offline.bin_counts(f["edges"], rows[:, i].tolist())), f["ratios"]
        )
        for i, f in enumerate(profile["features"])
    }


def test_in_distribution_traffic_keeps_drift_quiet_and_a_shift_fires_exactly_its_features(
    tiny: TinyModel, drift_loop: DriftLoop
) -> None:
    loop = drift_loop
    assert loop.dispatched_before == [], "no dispatch while the traffic is in distribution"

    expected = offline_psi(tiny, loop.rows)
    assert set(loop.quiet) == {*tiny.features, "(score)"}
    for feature in tiny.features:
        assert loop.quiet[feature] < 0.2, feature
        assert loop.quiet[feature] == pytest.approx(expected[feature], abs=0.01), feature
    assert loop.quiet["(score)"] < 0.2
    assert loop.active_before == [], "no alert at all while the traffic is in distribution"

    over = {f for f, value in loop.shifted.items() if value >= 0.2 and f != "(score)"}
    assert over == set(SHIFTED)
    drift_alerts = [a for a in loop.alerts if a["labels"]["alertname"] == "ModelInputDrift"]
    assert {a["labels"]["feature"] for a in drift_alerts} == set(SHIFTED)
    for alert in drift_alerts:
        assert alert["state"] == "firing"
        assert alert["labels"]["model"] == MODEL
        assert alert["labels"]["namespace"] == NAMESPACE
        assert alert["labels"]["feature"] in alert["annotations"]["summary"]
        assert float(alert["annotations"]["psi"]) >= 0.2
    others = {a["labels"]["alertname"] for a in loop.alerts} - {
        "ModelInputDrift",
        "ModelScoreDrift",
    }
    assert others == set(), "no error-rate, latency or not-ready alert on a healthy stack"
    assert loop.up == {f"127.0.0.1:{loop.port}": 1.0}

    # Alertmanager -> the relay -> GitHub's repository dispatch, with the dispatch token; the
    # latest names every shifted feature (what the retrain walk is fed: test_act_retrain.py).
    assert set().union(*(features_of(r["body"]) for r in loop.requests)) == set(SHIFTED)
    assert features_of(loop.requests[-1]["body"]) == set(SHIFTED)
    for request in loop.requests:
        assert request["path"] == f"/repos/{REPOSITORY}/dispatches"
        assert request["authorization"] == f"Bearer {GITHUB_TOKEN}"
        assert json.loads(request["raw"]) == request["body"]
        assert request["body"]["event_type"] == "model-drift"
        for item in request["body"]["client_payload"]["alerts"]:
            assert item["alertname"] == "ModelInputDrift"
            assert (item["model"], item["namespace"]) == (MODEL, NAMESPACE)
            assert item["psi"] >= 0.2


def test_a_stack_still_loading_its_model_fails_its_scrapes_and_fires_model_not_ready(
    tmp_path: Path,
) -> None:
    need_prometheus()
    rules = render_rules({"interval": "1s", "notReady": {"for": "2s"}}, helm=helm())
    slow = build_model(tmp_path / "slow-load", estimator=SlowLoadingModel())
    loading = Stack(
        slow.directory,
        env={"PYTHONPATH": str(Path(__file__).resolve().parent), LOAD_SECONDS_ENV: "60"},
    ).spawn()
    try:
        wait_until_loading(loading)
        with Prometheus([f"127.0.0.1:{loading.port}"], rules) as prometheus:
            wait(
                lambda: any(
                    a["labels"]["alertname"] == "ModelNotReady" and a["state"] == "firing"
                    for a in prometheus.alerts()
                ),
                30,
                "ModelNotReady firing",
            )
            assert prometheus.values("up", "instance") == {f"127.0.0.1:{loading.port}": 0.0}
            (alert,) = prometheus.alerts()
            assert alert["labels"]["instance"] == f"127.0.0.1:{loading.port}"
            assert alert["labels"]["model"] == MODEL
            assert alert["labels"]["namespace"] == NAMESPACE
    finally:
        loading.stop()
        loading.cleanup()


# --- make demo-drift's refusals and plot (no servers) ----------------------------------------


def test_the_drift_demo_refuses_a_feature_the_model_lacks_in_one_line(
    tiny: TinyModel, capsys: pytest.CaptureFixture[str]
) -> None:
    code = drift_demo.main(["--model-dir", str(tiny.directory), "--shift", "mean_radyus"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith(
        "error: --shift 'mean_radyus' is not a feature of the model: mean_radius,"
    )
    assert err.count("\n") == 1


def test_the_drift_demo_refuses_a_model_without_a_profile_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert drift_demo.main(["--model-dir", str(tmp_path)]) == 1
    assert capsys.readouterr().err == (
        f"error: no model with a profile in {tmp_path}: run `make train` first\n"
    )


def test_the_drift_demo_refuses_data_without_a_feature_column_in_one_line(
    tiny: TinyModel, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "rows.csv"
    data.write_text("mean_radius,diagnosis\n14.1,benign\n")
    assert drift_demo.main(["--model-dir", str(tiny.directory), "--data", str(data)]) == 1
    assert capsys.readouterr().err == (
        f"error: {data} has no column 'mean_texture' (the model's feature)\n"
    )


def test_the_drift_plot_is_a_png_of_each_features_live_and_reference_shares(
    tmp_path: Path,
) -> None:
    shares = {
        "mean_radius": {"live": {0: 0.1, 1: 0.9}, "reference": {0: 0.5, 1: 0.5}},
        "mean_texture": {"live": {0: 0.5, 1: 0.5}, "reference": {0: 0.5, 1: 0.5}},
    }
    png = drift_demo.plot(shares, {"mean_radius": 0.88, "mean_texture": 0.0}, tmp_path / "d.png")
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert len(png.read_bytes()) > 10_000
