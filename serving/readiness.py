"""Waiting for a server to come up: the one probe-and-wait loop of the project.

Every wait for a server or a pod goes through here: ``devstack.stack`` (``make serve``, the demo,
the tests, the benchmark's stacks), the benchmark's reference servers (``bench.run``), the pods of
``images/pod.py`` (the local pod runner), and the tests that start servers themselves. Standard
library only, so that the pod scripts can import it before anything else matters (and it costs the
image nothing).

Contract of a wait (``wait_ready`` for an HTTP readiness URL, ``wait_until`` for any probe):

- it returns as soon as one probe succeeds (for HTTP: the URL answers 2xx);
- a probe that fails *transiently* means "not yet", never an exception: connection refused or
  reset, no answer within the per-probe timeout (a server that has bound its socket but has no
  worker yet), a connection closed without an answer, a malformed status line, any non-2xx
  status (Nginx's 502/503 while the app starts);
- a server process that has exited (the optional ``exited`` check) ends the wait at once;
- past ``limit`` seconds the wait ends: no probe or pause runs longer than the time left;
- ending without success raises ``NotReadyError``: ``str()`` is one line naming what was waited
  for, where (the URL) and why it gave up (the limit and the last probe's outcome, or the exit
  status), followed by the last lines of the server's log (the optional ``log_tail``).
"""

from __future__ import annotations

import http.client
import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

# One probe's HTTP timeout: a readiness endpoint answers in milliseconds once a worker runs; the
# probe waits this long for a server that accepted the connection but is still loading.
PROBE_TIMEOUT = 5.0
# Pause between two probes.
INTERVAL = 0.25
# Lines of each log that a NotReadyError carries.
LOG_LINES = 30

# Why a probe failed ("HTTP 503", "connection refused", ...), or None: it succeeded.
Probe = Callable[[float], str | None]
# Why the server cannot come up any more ("uWSGI exited with status 1"), or None: still running.
ExitCheck = Callable[[], str | None]

# Readiness URLs are on loopback: never through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class NotReadyError(RuntimeError):
    """A wait gave up. ``headline`` is the one line of what, where and why; ``log`` the server's
    last lines (may be empty). ``str()`` is both, the headline first: what a CLI prints after
    ``error:``."""

    def __init__(self, headline: str, log: str = "") -> None:
        super().__init__(headline)
        self.headline = headline
        self.log = log

    def __str__(self) -> str:
        return f"{self.headline}\n{self.log}" if self.log.strip() else self.headline


def wait_until(
    probe: Probe,
    limit: float,
    what: str,
    *,
    exited: ExitCheck | None = None,
    log_tail: Callable[[], str] | None = None,
    probe_timeout: float = PROBE_TIMEOUT,
) -> None:
    """Call ``probe`` until it succeeds; raise ``NotReadyError`` when ``exited`` reports an exit
    (at once) or after ``limit`` seconds. ``what`` names the server and where it is probed, as the
    message's subject ("the pod x at http://..."). ``probe`` gets the seconds it may take: at
    most ``probe_timeout``, never more than the time left."""
    deadline = time.monotonic() + limit
    last = "none yet"
    while True:
        gone = exited() if exited is not None else None
        if gone is not None:
            raise NotReadyError(f"{what}: {gone} before it was ready", _tail(log_tail))
        left = deadline - time.monotonic()
        if left <= 0:
            raise NotReadyError(
                f"{what}: not ready after {limit:g} s (last probe: {last})", _tail(log_tail)
            )
        outcome = probe(min(probe_timeout, left))
        if outcome is None:
            return
        last = outcome
        time.sleep(max(0.0, min(INTERVAL, deadline - time.monotonic())))


def wait_ready(
    url: str,
    limit: float,
    what: str,
    *,
    exited: ExitCheck | None = None,
    log_tail: Callable[[], str] | None = None,
    probe_timeout: float = PROBE_TIMEOUT,
) -> None:
    """Wait until ``GET url`` answers 2xx (see the module's contract); ``what`` names the server
    ("the serving stack"), the message adds the URL."""
    wait_until(
        http_probe(url),
        limit,
        f"{what} at {url}",
        exited=exited,
        log_tail=log_tail,
        probe_timeout=probe_timeout,
    )


def http_probe(url: str) -> Probe:
    """One ``GET url``: None on 2xx, else a few words on what happened instead. Only a broken
    URL raises; whatever the network or the server does is an outcome."""

    def probe(timeout: float) -> str | None:
        try:
            with _OPENER.open(url, timeout=timeout) as answer:
                answer.read()
                status: int = answer.status
        except urllib.error.HTTPError as error:
            error.close()
            return f"HTTP {error.code}"
        except (OSError, http.client.HTTPException) as error:
            return _failure(error, timeout)
        return None if 200 <= status < 300 else f"HTTP {status}"

    return probe


def _failure(error: BaseException, timeout: float) -> str:
    """A failed request in a few words, on one line."""
    if isinstance(error, urllib.error.URLError) and isinstance(error.reason, BaseException):
        error = error.reason
    if isinstance(error, TimeoutError):
        return f"no answer within {timeout:.2g} s"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, http.client.RemoteDisconnected):
        return "connection closed without an answer"
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def first_exit(processes: Mapping[str, subprocess.Popen[Any]]) -> ExitCheck:
    """An ``exited`` check over local processes, by display name: "uWSGI exited with status 1"
    for the first of them that has exited."""

    def check() -> str | None:
        for name, process in processes.items():
            if process.poll() is not None:
                return f"{name} exited with status {process.returncode}"
        return None

    return check


def file_tails(*paths: Path, lines: int = LOG_LINES) -> str:
    """The last ``lines`` lines of each log file, each under a ``--- NAME`` header."""
    parts = []
    for path in paths:
        try:
            text = "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError as error:
            text = f"(unreadable: {error.strerror})"
        parts.append(f"--- {path.name}\n{text or '(empty)'}")
    return "\n".join(parts)


class Containers:
    """The containers of a pod run by podman, as a wait sees them: ``exited`` for the first that
    stopped or was restarted (a pod restarts a container that exits), ``log_tail`` for the last
    lines of each one's ``podman logs``. ``env`` is podman's environment (CONTAINERS_CONF)."""

    def __init__(self, names: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        self.names = list(names)
        self.env = dict(env) if env is not None else None

    def _podman(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["podman", *args], env=self.env, capture_output=True, text=True, check=False
        )

    def exited(self) -> str | None:
        done = self._podman("container", "inspect", *self.names)
        if done.returncode != 0:
            return None  # unknown, not gone: the probe decides
        for info in json.loads(done.stdout or "[]"):
            name, state = info.get("Name", "?"), info.get("State", {})
            if state.get("Status") in {"exited", "stopped"}:
                return f"container {name} exited with status {state.get('ExitCode')}"
            restarts = int(info.get("RestartCount") or 0)
            if restarts:
                return f"container {name} exited and was restarted {restarts} time(s)"
        return None

    def log_tail(self, lines: int = LOG_LINES) -> str:
        parts = []
        for name in self.names:
            done = self._podman("logs", "--tail", str(lines), name)
            text = "\n".join((done.stdout + done.stderr).splitlines()[-lines:])
            parts.append(f"--- podman logs {name}\n{text or '(empty)'}")
        return "\n".join(parts)


def _tail(log_tail: Callable[[], str] | None) -> str:
    return log_tail() if log_tail is not None else ""
