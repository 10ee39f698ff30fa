"""An Alertmanager on loopback that routes the drift alerts to the retraining relay.

Local tooling, not shipped: the integration test of the path from a firing drift alert to a
repository dispatch (tests/serving/test_serving_prometheus.py) runs the real server from Debian's
``prometheus-alertmanager`` package between a real Prometheus (devstack.prometheus, which sends it
its alerts) and the relay (``python -m gitops.relay``). Its configuration is the one
docs/monitoring.md gives a team, "From Alertmanager to GitHub: a relay": the drift alerts to a
webhook receiver, with a bearer token from a file and ``send_resolved: false``; only the waits are
shortened to a second, so a test sees the delivery at once.

Contract of ``Alertmanager``: ``start()`` writes the config and the token file into a private run
directory, starts the server on ``127.0.0.1`` and a free port with clustering off, and waits for
``/-/ready`` (``NotReadyError`` with the log's last lines otherwise). ``stop()`` sends SIGTERM and
waits; the run directory is removed.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from devstack.stack import _die_with_parent, free_port
from serving import readiness

#: Debian's name for the Alertmanager binary (package prometheus-alertmanager).
BINARY = "prometheus-alertmanager"
#: The alerts that go to the relay: gitops.retrain.DRIFT_ALERTS, as a matcher.
DRIFT_MATCHER = 'alertname=~"ModelInputDrift|ModelScoreDrift"'


class AlertmanagerError(RuntimeError):
    """The server is missing or failed; the message says which, in one line."""


@dataclass
class Alertmanager:
    """Alertmanager on ``127.0.0.1:port`` sending drift alerts to ``webhook`` with ``token``."""

    webhook: str
    token: str
    group_wait: str = "1s"
    port: int = 0
    binary: str = BINARY
    run_dir: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    _own_run_dir: bool = field(default=False, repr=False)

    @property
    def address(self) -> str:
        """``host:port``, as a Prometheus ``alertmanagers`` target names it."""
        return f"127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        assert self.run_dir is not None
        return self.run_dir / "alertmanager.log"

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

    def start(self, timeout: float = 30.0) -> Alertmanager:
        """Write the config and the token file, start the server, wait until it is ready."""
        if shutil.which(self.binary) is None:
            raise AlertmanagerError(
                f"{self.binary} not found: run `make monitoring-prereqs` (Debian's "
                "prometheus-alertmanager)"
            )
        if self.run_dir is None:
            self.run_dir = Path(tempfile.mkdtemp(prefix="modelops-alertmanager-"))
            self._own_run_dir = True
        if self.port == 0:
            self.port = free_port()
        token_file = self.run_dir / "relay-token"
        token_file.write_text(self.token + "\n")
        token_file.chmod(0o600)
        (self.run_dir / "alertmanager.yml").write_text(yaml.safe_dump(self.config()))
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    self.binary,
                    f"--config.file={self.run_dir / 'alertmanager.yml'}",
                    f"--storage.path={self.run_dir / 'data'}",
                    f"--web.listen-address={self.address}",
                    "--cluster.listen-address=",  # one instance: no gossip port
                    "--log.level=warn",
                ],
                cwd=self.run_dir,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        try:
            readiness.wait_ready(
                f"http://{self.address}/-/ready",
                timeout,
                "Alertmanager",
                exited=readiness.first_exit({"Alertmanager": self.process}),
                log_tail=lambda: readiness.file_tails(self.log),
            )
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, kill after ``timeout``; remove the run directory this object made."""
        code = None
        if self.process is not None:
            if self.process.poll() is None:
                self.process.terminate()
            try:
                code = self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                code = self.process.wait()
        if self._own_run_dir and self.run_dir is not None:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        return code

    def __enter__(self) -> Alertmanager:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
