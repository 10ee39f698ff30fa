"""A Prometheus server on loopback that scrapes local serving stacks with the chart's rules.

Local tooling, not shipped: the integration test (tests/serving/test_serving_prometheus.py) and
``make demo-drift`` (devstack.drift_demo) run the real server from Debian's ``prometheus``
package against real stacks (devstack.stack). The rules it loads are the chart's own:
``render_rules`` runs ``helm template`` on charts/model with the PrometheusRule turned on and
takes its ``spec``, so what is evaluated here is what the chart ships (with the values given:
the tests shorten the window and the ``for`` durations).

Contract of ``Prometheus``: devstack.loopback's (start, wait for ``/-/ready``, stop; the run
directory, TSDB included, removed), with a config of one job, ``JOB``, the chart's full name for
the release ``model``, so the rules' default selector ``job="model"`` matches; each target
labelled ``namespace=NAMESPACE``, as the Prometheus Operator labels a pod's series; and the rules.
``query`` and ``alerts`` read the HTTP API (``/api/v1/query``, ``/api/v1/alerts``).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from devstack.loopback import LoopbackServer
from devstack.stack import PACKAGE_ROOT

CHART = PACKAGE_ROOT / "charts" / "model"
RELEASE = "model"
JOB = "model"  # the chart's full name for release "model": the rules' default job="model"
NAMESPACE = "devstack"
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class PrometheusError(RuntimeError):
    """The server, helm or the HTTP API failed; the message says which and why, in one line."""


def render_rules(values: Mapping[str, Any] | None = None, helm: str = "helm") -> dict[str, Any]:
    """The ``spec`` of the chart's PrometheusRule (``groups``: a Prometheus rules file), rendered
    by ``helm template`` with ``monitoring.prometheusRule`` set to ``values`` (merged over the
    chart's defaults) and turned on."""
    overrides = {"monitoring": {"prometheusRule": {**(values or {}), "enabled": True}}}
    with tempfile.TemporaryDirectory(prefix="modelops-rules-") as tmp:
        values_file = Path(tmp) / "values.yaml"
        values_file.write_text(json.dumps(overrides))
        result = subprocess.run(
            [
                helm,
                "template",
                RELEASE,
                str(CHART),
                "-f",
                str(values_file),
                "--show-only",
                "templates/prometheusrule.yaml",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or ["(no output)"]
        raise PrometheusError(f"helm template failed: {lines[-1]}")
    documents = [d for d in yaml.safe_load_all(result.stdout) if d]
    if len(documents) != 1 or documents[0].get("kind") != "PrometheusRule":
        raise PrometheusError("helm template rendered no PrometheusRule")
    spec: dict[str, Any] = documents[0]["spec"]
    return spec


@dataclass
class Prometheus(LoopbackServer):
    """Prometheus on ``127.0.0.1:port`` scraping ``targets`` (``host:port``, path /metrics)."""

    name = "Prometheus"
    package = "prometheus"
    executable = "prometheus"
    log_name = "prometheus.log"
    run_prefix = "modelops-prometheus-"
    error_type = PrometheusError

    targets: Sequence[str]
    rules: Mapping[str, Any]
    #: ``host:port`` of Alertmanagers to send the alerts to (devstack.alertmanager); none: only
    #: the API shows them.
    alertmanagers: Sequence[str] = ()
    scrape_interval: str = "1s"
    evaluation_interval: str = "1s"

    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "global": {
                "scrape_interval": self.scrape_interval,
                "scrape_timeout": self.scrape_interval,
                "evaluation_interval": self.evaluation_interval,
            },
            "rule_files": ["rules.yaml"],
            "scrape_configs": [
                {
                    "job_name": JOB,
                    "metrics_path": "/metrics",
                    "static_configs": [
                        {"targets": list(self.targets), "labels": {"namespace": NAMESPACE}}
                    ],
                }
            ],
        }
        if self.alertmanagers:
            config["alerting"] = {
                "alertmanagers": [{"static_configs": [{"targets": list(self.alertmanagers)}]}]
            }
        return config

    def write_config(self) -> None:
        """prometheus.yml and the rules file."""
        assert self.run_dir is not None
        (self.run_dir / "prometheus.yml").write_text(yaml.safe_dump(self.config()))
        (self.run_dir / "rules.yaml").write_text(yaml.safe_dump(dict(self.rules), sort_keys=False))

    def arguments(self) -> list[str]:
        assert self.run_dir is not None
        return [
            f"--config.file={self.run_dir / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.run_dir / 'data'}",
            f"--web.listen-address={self.address}",
            "--log.level=warn",
        ]

    def _get(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        url = self.url + path + ("?" + urllib.parse.urlencode(params) if params else "")
        try:
            with _OPENER.open(url, timeout=10) as response:
                body = json.load(response)
        except OSError as error:
            raise PrometheusError(f"GET {url}: {error}") from None
        if body.get("status") != "success":
            raise PrometheusError(f"GET {url}: {body.get('error', body)}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's vector: ``[{"metric": {...}, "value": [time, "text"]}, ...]``."""
        data = self._get("/api/v1/query", {"query": expr})
        if data["resultType"] != "vector":
            raise PrometheusError(f"{expr!r} is a {data['resultType']}, not a vector")
        result: list[dict[str, Any]] = data["result"]
        return result

    def values(self, expr: str, label: str) -> dict[str, float]:
        """An instant query as {the value of ``label``: the sample's value}."""
        return {s["metric"].get(label, ""): float(s["value"][1]) for s in self.query(expr)}

    def alerts(self) -> list[dict[str, Any]]:
        """The active alerts (pending and firing): ``labels``, ``annotations``, ``state``."""
        alerts: list[dict[str, Any]] = self._get("/api/v1/alerts")["alerts"]
        return alerts
