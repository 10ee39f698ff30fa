"""The drift alert loop, run once a session: a plugin of the whole suite (tests/conftest.py's
``pytest_plugins``), so that the two tests that read it share one run of about a minute.

``drift_model``: the tiny model (tests/serving/serving_testkit.py). ``drift_loop``: that model
served by the real stack (Nginx + uWSGI, 2 workers), scraped by a real Prometheus (Debian's
``prometheus``) with the chart's own rules (window and ``for`` shortened: devstack.drift_demo's
RULE_VALUES), whose alerts go to a real Alertmanager (Debian's ``prometheus-alertmanager``,
configured as docs/monitoring.md tells a team), whose webhook receiver is the retraining relay
(its real server: uWSGI with retraining/relay_uwsgi.ini, as the pod runs it;
tests/retraining/relay_server.py), which sends GitHub's repository dispatch to the
stand-in for GitHub's API (tests/workflows/act/github_api.py). The traffic is every row of the
model's data set for a window, then the same rows with SHIFTED moved, until the relay's latest
dispatch names every shifted feature; the servers are stopped before the fixture returns and
what was seen (``DriftLoop``) is what the tests assert on:

- tests/serving/test_serving_prometheus.py: the PSI, the alerts and the dispatches;
- tests/workflows/test_act_retrain.py: retrain.yml under act, fed the repository_dispatch event
  GitHub would deliver for the relay's latest dispatch (``DriftLoop.event``), as captured.

Any test that uses ``drift_loop`` needs root's Debian packages: mark it e2e (tests/test_ci_policy.py
checks it).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

# The relay's tokens and the repository it dispatches to (the act sandbox's,
# tests/workflows/act_harness.py), which the tests of the loop read from here.
from tests.retraining.relay_server import GITHUB_TOKEN as GITHUB_TOKEN
from tests.retraining.relay_server import RELAY_TOKEN, relay_server
from tests.retraining.relay_server import REPOSITORY as REPOSITORY
from tests.workflows.act.github_api import GitHubApi, repository_dispatch_event

# The stack's, Prometheus's and the model's modules are imported by the fixtures that use them:
# loaded for the whole suite, this plugin costs a run that does not use them nothing.
if TYPE_CHECKING:
    import numpy as np

    from devstack.drift_demo import Traffic
    from tests.serving.serving_testkit import TinyModel

ROOT = Path(__file__).resolve().parents[2]
SHIFTED = ("mean_texture", "worst_smoothness")
WINDOW_SECONDS = 20


def helm() -> str:
    path = ROOT / ".tools" / "bin" / "helm"
    if not path.exists():
        pytest.skip(f"{path} missing: run `make tools`")
    return str(path)


def need_prometheus() -> None:
    from devstack.alertmanager import BINARY as ALERTMANAGER

    for binary in ("prometheus", ALERTMANAGER):
        if shutil.which(binary) is None:
            pytest.skip(f"{binary} missing: run `make monitoring-prereqs` (Debian's {binary})")


def need_nginx() -> None:
    if shutil.which("nginx") is None or shutil.which("envsubst") is None:
        pytest.skip("nginx/envsubst not installed: run `make serving-prereqs`")


def wait(
    check: Callable[[], bool], limit: float, what: str, traffic: Traffic | None = None
) -> None:
    """Poll ``check()`` every second until true; fail naming ``what`` after ``limit`` s."""
    deadline = time.monotonic() + limit
    while not check():
        assert traffic is None or traffic.error is None, traffic.error
        assert time.monotonic() < deadline, f"{what}: not seen within {limit:g} s"
        time.sleep(1)


def features_of(body: Any) -> set[str]:
    """The features of the alerts in one dispatch body (``client_payload.alerts``)."""
    return {item.get("feature", "") for item in body["client_payload"]["alerts"]}


@dataclass(frozen=True)
class DriftLoop:
    """What one run of the loop saw, in order: in distribution, then shifted."""

    rows: np.ndarray  # the in-distribution rows of the traffic, in the order sent
    port: int  # the stack's
    quiet: dict[str, float]  # PSI by feature (and "(score)") after a window in distribution
    active_before: list[dict[str, Any]]  # the alerts active then
    dispatched_before: list[dict[str, Any]]  # the dispatches the stand-in had received then
    shifted: dict[str, float]  # PSI by feature once the shifted features' alerts fired
    alerts: list[dict[str, Any]]  # the alerts active then
    up: dict[str, float]  # Prometheus's ``up`` by instance then
    requests: list[dict[str, Any]]  # every dispatch the stand-in received, oldest first

    @property
    def event(self) -> bytes:
        """The repository_dispatch event GitHub delivers for the relay's latest dispatch
        (tests/workflows/act/github_api.py's wrapping of the bytes the stand-in received)."""
        return repository_dispatch_event(self.requests[-1])


@pytest.fixture(scope="session")
def drift_model(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    from tests.serving.serving_testkit import build_model

    return build_model(tmp_path_factory.mktemp("drift-loop") / "model")


@pytest.fixture(scope="session")
def drift_loop(drift_model: TinyModel, tmp_path_factory: pytest.TempPathFactory) -> DriftLoop:
    import numpy as np

    from devstack import drift_demo
    from devstack.alertmanager import Alertmanager
    from devstack.drift_demo import Traffic, firing_features, psi_by_feature
    from devstack.prometheus import Prometheus, render_rules
    from devstack.stack import Stack

    need_nginx()
    need_prometheus()
    tiny = drift_model
    rules = render_rules(drift_demo.RULE_VALUES, helm=helm())
    rows = np.vstack([tiny.x_train, tiny.x_test])
    rows = rows[np.random.default_rng(0).permutation(len(rows))]
    columns = [tiny.features.index(name) for name in SHIFTED]
    with (
        Stack(tiny.directory) as stack,
        GitHubApi() as github,
        relay_server(tmp_path_factory.mktemp("relay"), github.url) as relay,
        Alertmanager(relay.url + "/alertmanager", RELAY_TOKEN) as alertmanager,
        Prometheus(
            [f"127.0.0.1:{stack.port}"], rules, alertmanagers=[alertmanager.address]
        ) as prometheus,
    ):
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
            wait(
                lambda: firing_features(prometheus) >= set(SHIFTED),
                90,
                "the drift alerts",
                traffic,
            )
            shifted = psi_by_feature(prometheus)
            alerts = prometheus.alerts()
            up = prometheus.values("up", "instance")
            # Alertmanager groups by model and namespace: each notification holds
            # every alert of the group firing then; the latest names them all.
            wait(
                lambda: (
                    bool(github.received())
                    and features_of(github.received()[-1]["body"]) >= set(SHIFTED)
                ),
                30,
                "a dispatch naming every shifted feature",
                traffic,
            )
        finally:
            traffic.stop()
        assert traffic.error is None, traffic.error
        requests = github.received()
    return DriftLoop(
        rows, stack.port, quiet, active_before, dispatched_before, shifted, alerts, up, requests
    )
