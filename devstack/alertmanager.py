"""An Alertmanager on loopback that routes the drift alerts to the retraining relay.

Local tooling, not shipped: the integration test of the path from a firing drift alert to a
repository dispatch (tests/serving/test_serving_prometheus.py) runs the real server from Debian's
``prometheus-alertmanager`` package between a real Prometheus (devstack.prometheus, which sends it
its alerts) and the relay (``python -m retraining.relay``). Its configuration is the one
docs/monitoring.md gives a team, "From Alertmanager to GitHub: a relay": the drift alerts to a
webhook receiver, with a bearer token from a file and ``send_resolved: false``; only the waits are
shortened to a second, so a test sees the delivery at once.

Contract of ``Alertmanager``: devstack.loopback's (start, wait for ``/-/ready``, stop), with the
config and the token file in its run directory and clustering off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from devstack.loopback import LoopbackServer

#: Debian's name for the Alertmanager binary (package prometheus-alertmanager).
BINARY = "prometheus-alertmanager"
#: The alerts that go to the relay: retraining.retrain.DRIFT_ALERTS, as a matcher.
DRIFT_MATCHER = 'alertname=~"ModelInputDrift|ModelScoreDrift"'


class AlertmanagerError(RuntimeError):
    """The server is missing or failed; the message says which, in one line."""


@dataclass
class Alertmanager(LoopbackServer):
    """Alertmanager on ``127.0.0.1:port`` sending drift alerts to ``webhook`` with ``token``."""

    name = "Alertmanager"
    package = "prometheus-alertmanager"
    executable = BINARY
    log_name = "alertmanager.log"
    run_prefix = "modelops-alertmanager-"
    error_type = AlertmanagerError

    webhook: str
    token: str
    group_wait: str = "1s"

    def config(self) -> dict[str, Any]:
        """docs/monitoring.md's receiver and route, with this run's URL, token file and waits."""
        assert self.run_dir is not None
        return {
            "route": {
                "receiver": "nobody",
                "routes": [
                    {
                        "matchers": [DRIFT_MATCHER],
                        "receiver": "retrain",
                        "group_by": ["model", "namespace"],
                        "group_wait": self.group_wait,
                        "group_interval": self.group_wait,
                        "repeat_interval": "24h",
                    }
                ],
            },
            "receivers": [
                {"name": "nobody"},
                {
                    "name": "retrain",
                    "webhook_configs": [
                        {
                            "url": self.webhook,
                            "send_resolved": False,
                            "http_config": {
                                "authorization": {
                                    "type": "Bearer",
                                    "credentials_file": str(self.run_dir / "relay-token"),
                                }
                            },
                        }
                    ],
                },
            ],
        }

    def write_config(self) -> None:
        """The token file (owner-only) and alertmanager.yml."""
        assert self.run_dir is not None
        token_file = self.run_dir / "relay-token"
        token_file.write_text(self.token + "\n")
        token_file.chmod(0o600)
        (self.run_dir / "alertmanager.yml").write_text(yaml.safe_dump(self.config()))

    def arguments(self) -> list[str]:
        assert self.run_dir is not None
        return [
            f"--config.file={self.run_dir / 'alertmanager.yml'}",
            f"--storage.path={self.run_dir / 'data'}",
            f"--web.listen-address={self.address}",
            "--cluster.listen-address=",  # one instance: no gossip port
            "--log.level=warn",
        ]
