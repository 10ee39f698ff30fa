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
the retraining relay (``python -m gitops.relay``, its own process): the relay sends GitHub's
repository dispatch, to the stand-in for GitHub's API (tests/workflows/act/github_api.py), naming
exactly the shifted features, and nothing while the traffic is in distribution. A stack still
loading its model fails its scrapes and fires ModelNotReady.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, start_stack, wait_until_loading
from serving_testkit import LOAD_SECONDS_ENV, SlowLoadingModel, TinyModel, build_model

from devstack import drift_demo
from devstack.alertmanager import BINARY as ALERTMANAGER
from devstack.alertmanager import Alertmanager
from devstack.drift_demo import Traffic, firing_features, psi_by_feature
from devstack.prometheus import NAMESPACE, Prometheus, render_rules
from devstack.stack import Stack, free_port
from serving import readiness
from tests.workflows.act.github_api import GitHubApi
from training import drift as offline

# Nginx, uWSGI, Prometheus and Alertmanager processes (Debian packages: root to install); the
# drift demo's refusals and its plot too, which share the module's fixtures.
pytestmark = pytest.mark.e2e

SHIFTED = ("mean_texture", "worst_smoothness")
WINDOW_SECONDS = 20
MODEL = "diagnosis-classifier"
RELAY_TOKEN = "relay-token-of-this-test"  # noqa: S105 - a test value, not a secret
GITHUB_TOKEN = "github-token-of-this-test"  # noqa: S105
REPOSITORY = "acme/modelops"


def helm() -> str:
    path = ROOT / ".tools" / "bin" / "helm"
    if not path.exists():
        pytest.skip(f"{path} missing: run `make tools`")
    return str(path)


def need_prometheus() -> None:
    for binary in ("prometheus", ALERTMANAGER):
        if shutil.which(binary) is None:
            pytest.skip(f"{binary} missing: run `make monitoring-prereqs` (Debian's {binary})")


@dataclass
class Watched:
    """The stack, the Prometheus scraping it, and the stand-in GitHub the relay dispatches to."""

    stack: Stack
    prometheus: Prometheus
    github: GitHubApi


def start_relay(run_dir: Path, github: GitHubApi) -> tuple[subprocess.Popen[bytes], str]:
    """``python -m gitops.relay`` on a free loopback port, dispatching to ``github``."""
    (run_dir / "relay-token").write_text(RELAY_TOKEN + "\n")
    (run_dir / "github-token").write_text(GITHUB_TOKEN + "\n")
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "RELAY_TOKEN_FILE": str(run_dir / "relay-token"),
        "GITHUB_DISPATCH_TOKEN_FILE": str(run_dir / "github-token"),
        "GITHUB_REPOSITORY": REPOSITORY,
        "GITHUB_API_URL": github.url,
        "no_proxy": "127.0.0.1,localhost",
    }
    with (run_dir / "relay.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gitops.relay", "--listen", f"127.0.0.1:{port}"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    readiness.wait_ready(
        url + "/healthz",
        30,
        "the relay",
        exited=readiness.first_exit({"relay": process}),
        log_tail=lambda: readiness.file_tails(run_dir / "relay.log"),
    )
    return process, url


def wait(
    check: Callable[[], bool], limit: float, what: str, traffic: Traffic | None = None
) -> None:
    """Poll ``check()`` every second until true; fail naming ``what`` after ``limit`` s."""
    deadline = time.monotonic() + limit
    while not check():
        assert traffic is None or traffic.error is None, traffic.error
        assert time.monotonic() < deadline, f"{what}: not seen within {limit:g} s"
        time.sleep(1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return build_model(tmp_path_factory.mktemp("prometheus") / "model")


@pytest.fixture(scope="module")
def watched(tiny: TinyModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Watched]:
    need_prometheus()
    rules = render_rules(drift_demo.RULE_VALUES, helm=helm())
    stack = start_stack(tiny.directory)
    relay = None
    try:
        with GitHubApi() as github:
            relay, relay_url = start_relay(tmp_path_factory.mktemp("relay"), github)
            with (
                Alertmanager(relay_url + "/alertmanager", RELAY_TOKEN) as alertmanager,
                Prometheus(
                    [f"127.0.0.1:{stack.port}"], rules, alertmanagers=[alertmanager.address]
                ) as prometheus,
            ):
                yield Watched(stack, prometheus, github)
    finally:
        if relay is not None:
            relay.terminate()
            relay.wait(10)
        stack.stop()
        stack.cleanup()


def offline_psi(tiny: TinyModel, rows: np.ndarray) -> dict[str, float]:
    profile = json.loads((tiny.directory / "profile.json").read_text())
    return {
        f["name"]: offline.psi(
            offline.shares(offline.bin_counts(f["edges"], rows[:, i].tolist())), f["ratios"]
        )
        for i, f in enumerate(profile["features"])
    }


def test_in_distribution_traffic_keeps_drift_quiet_and_a_shift_fires_exactly_its_features(
    tiny: TinyModel, watched: Watched
) -> None:
    stack, prometheus, github = watched.stack, watched.prometheus, watched.github
    rows = np.vstack([tiny.x_train, tiny.x_test])
    rows = rows[np.random.default_rng(0).permutation(len(rows))]
    columns = [tiny.features.index(name) for name in SHIFTED]
    traffic = Traffic(stack.url, tiny.features, rows)
    traffic.start()
    try:
        # A window of in-distribution rows only.
        time.sleep(WINDOW_SECONDS + 3)
        wait(
            lambda: len(psi_by_feature(prometheus)) == len(tiny.features) + 1,
            30,
            "PSI series",
            traffic,
        )
        quiet = psi_by_feature(prometheus)
        active_before = prometheus.alerts()
        dispatched_before = github.received()
        traffic.rows = drift_demo.shift(rows, columns)
        wait(lambda: firing_features(prometheus) >= set(SHIFTED), 90, "the drift alerts", traffic)
        shifted = psi_by_feature(prometheus)
        alerts = prometheus.alerts()
        up = prometheus.values("up", "instance")
        wait(lambda: dispatched_features(github) >= set(SHIFTED), 30, "the dispatch", traffic)
    finally:
        traffic.stop()
    assert traffic.error is None, traffic.error
    assert dispatched_before == [], "no dispatch while the traffic is in distribution"

    expected = offline_psi(tiny, rows)
    assert set(quiet) == {*tiny.features, "(score)"}
    for feature in tiny.features:
        assert quiet[feature] < 0.2, feature
        assert quiet[feature] == pytest.approx(expected[feature], abs=0.01), feature
    assert quiet["(score)"] < 0.2
    assert active_before == [], "no alert at all while the traffic is in distribution"

    over = {feature for feature, value in shifted.items() if value >= 0.2 and feature != "(score)"}
    assert over == set(SHIFTED)
    drift_alerts = [a for a in alerts if a["labels"]["alertname"] == "ModelInputDrift"]
    assert {a["labels"]["feature"] for a in drift_alerts} == set(SHIFTED)
    for alert in drift_alerts:
        assert alert["state"] == "firing"
        assert alert["labels"]["model"] == MODEL
        assert alert["labels"]["namespace"] == NAMESPACE
        assert alert["labels"]["feature"] in alert["annotations"]["summary"]
        assert float(alert["annotations"]["psi"]) >= 0.2
    others = {a["labels"]["alertname"] for a in alerts} - {"ModelInputDrift", "ModelScoreDrift"}
    assert others == set(), "no error-rate, latency or not-ready alert on a healthy stack"
    assert up == {f"127.0.0.1:{stack.port}": 1.0}

    # Alertmanager -> the relay -> GitHub's repository dispatch, with the dispatch token.
    sent = github.received()
    assert dispatched_features(github) == set(SHIFTED)
    for request in sent:
        assert request["path"] == f"/repos/{REPOSITORY}/dispatches"
        assert request["authorization"] == f"Bearer {GITHUB_TOKEN}"
        assert request["body"]["event_type"] == "model-drift"
        for item in request["body"]["client_payload"]["alerts"]:
            assert item["alertname"] == "ModelInputDrift"
            assert (item["model"], item["namespace"]) == (MODEL, NAMESPACE)
            assert item["psi"] >= 0.2


def dispatched_features(github: GitHubApi) -> set[str]:
    """The features of every alert the relay has dispatched to the stand-in GitHub so far."""
    return {
        item.get("feature", "")
        for request in github.received()
        for item in request["body"]["client_payload"]["alerts"]
    }


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
