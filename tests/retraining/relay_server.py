"""The relay served by its real server, for the tests: uWSGI with retraining/relay_uwsgi.ini (what
the pod runs, kustomize/monitoring/relay) on a free loopback port, dispatching to a stand-in for
GitHub's API (tests/workflows/act/github_api.py).

Callers: tests/retraining/test_relay.py, tests/retraining/test_relay_server.py and the drift alert
loop (tests/alert_loop/fixtures.py). ``module`` replaces the ini's WSGI entry point (the defective
relays of tests/retraining/relay_defects.py); ``environment`` adds or overrides variables (the
relay's limits, ``UWSGI_THREADS``, ``RELAY_SOCKET_TIMEOUT``). The server is stopped (SIGTERM,
uWSGI's graceful shutdown) on leaving the ``with``.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from retraining import relay

ROOT = Path(__file__).resolve().parents[2]
RELAY_TOKEN = "relay-token-of-this-test"  # noqa: S105 - a test value, not a secret
GITHUB_TOKEN = "github-token-of-this-test"  # noqa: S105
REPOSITORY = "acme/modelops"
ENTRY_POINT = "module = retraining.relay_wsgi:application"


@dataclass(frozen=True)
class RelayServer:
    """A running relay: its base URL, port, log file and uWSGI process."""

    url: str
    port: int
    log: Path
    process: subprocess.Popen[bytes]


def token_files(run_dir: Path) -> dict[str, str]:
    """The two token files in RUN_DIR, as the variables naming them."""
    (run_dir / "relay-token").write_text(RELAY_TOKEN + "\n")
    (run_dir / "github-token").write_text(GITHUB_TOKEN + "\n")
    return {
        "RELAY_TOKEN_FILE": str(run_dir / "relay-token"),
        "GITHUB_DISPATCH_TOKEN_FILE": str(run_dir / "github-token"),
    }


@contextmanager
def relay_server(
    run_dir: Path,
    api_url: str,
    environment: Mapping[str, str] | None = None,
    module: str | None = None,
) -> Iterator[RelayServer]:
    """uWSGI serving the relay on 127.0.0.1 (a free port), ready (``/healthz`` answers 200)."""
    from devstack.stack import free_port, uwsgi_binary
    from serving import readiness

    run_dir.mkdir(parents=True, exist_ok=True)
    ini = relay.UWSGI_INI
    if module is not None:
        text = ini.read_text()
        assert ENTRY_POINT in text, f"{ini} no longer holds {ENTRY_POINT!r}"
        ini = run_dir / "relay_uwsgi.ini"
        ini.write_text(text.replace(ENTRY_POINT, f"module = {module}"))
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("UWSGI_", "RELAY_"))},
        "PYTHONPATH": str(ROOT),
        **token_files(run_dir),
        "GITHUB_REPOSITORY": REPOSITORY,
        "GITHUB_API_URL": api_url,
        "RELAY_LISTEN": f"127.0.0.1:{port}",
        "no_proxy": "127.0.0.1,localhost",
        **(environment or {}),
    }
    log = run_dir / "relay.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [uwsgi_binary(), "--ini", str(ini)], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        readiness.wait_ready(
            url + "/healthz",
            30,
            "the relay",
            exited=readiness.first_exit({"relay (uWSGI)": process}),
            log_tail=lambda: readiness.file_tails(log),
        )
        yield RelayServer(url, port, log, process)
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
