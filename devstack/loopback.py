"""A server of a Debian package run on loopback, in a private run directory, for as long as a test
or a demo needs it.

Role: what devstack.prometheus and devstack.alertmanager share: each subclass names its binary
and package, writes its configuration (``write_config``) and gives its command line
(``arguments``); ``LoopbackServer`` does the rest, the same way for both.

Contract: ``start()`` refuses a missing binary in one line (``error_type``, naming the make target
that installs it), makes the run directory (unless given) and picks a free port (unless given),
writes the configuration, starts the process in its own session (it dies with its parent) with its
output in ``log``, and waits for ``ready_path`` to answer 200 (serving.readiness:
``NotReadyError`` with the log's last lines otherwise; the process is stopped then). ``stop()``
sends SIGTERM, kills after the timeout, and removes a run directory it made. ``with`` starts and
stops.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

from devstack.stack import _die_with_parent, free_port
from serving import readiness


@dataclass(kw_only=True)
class LoopbackServer:
    """One server process on ``127.0.0.1:port`` (module docstring: the contract)."""

    #: What the messages call it ("Prometheus"), its Debian package and the binary the package
    #: installs, its log file and the prefix of its run directory.
    name: ClassVar[str]
    package: ClassVar[str]
    executable: ClassVar[str]
    log_name: ClassVar[str]
    run_prefix: ClassVar[str]
    #: Raised for a missing binary.
    error_type: ClassVar[type[RuntimeError]] = RuntimeError
    #: The path that answers 200 once the server is ready.
    ready_path: ClassVar[str] = "/-/ready"

    #: Another binary than the package's ``executable`` (tests: a missing one).
    binary: str = ""
    port: int = 0
    run_dir: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    _own_run_dir: bool = field(default=False, repr=False)

    @property
    def address(self) -> str:
        """``127.0.0.1:port``."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def log(self) -> Path:
        assert self.run_dir is not None
        return self.run_dir / self.log_name

    def write_config(self) -> None:
        """Write what the server reads into ``run_dir`` (before ``arguments`` is called)."""
        raise NotImplementedError

    def arguments(self) -> list[str]:
        """The command line after the binary."""
        raise NotImplementedError

    def start(self, timeout: float = 30.0) -> Self:
        """Write the configuration, start the server, wait until it is ready."""
        binary = self.binary or self.executable
        if shutil.which(binary) is None:
            raise self.error_type(
                f"{binary} not found: run `make monitoring-prereqs` (Debian's {self.package})"
            )
        if self.run_dir is None:
            self.run_dir = Path(tempfile.mkdtemp(prefix=self.run_prefix))
            self._own_run_dir = True
        if self.port == 0:
            self.port = free_port()
        self.write_config()
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [binary, *self.arguments()],
                cwd=self.run_dir,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        try:
            readiness.wait_ready(
                self.url + self.ready_path,
                timeout,
                self.name,
                exited=readiness.first_exit({self.name: self.process}),
                log_tail=lambda: readiness.file_tails(self.log),
            )
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (a clean shutdown), kill after ``timeout``; remove the run directory this
        object made. Returns the exit code."""
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

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
