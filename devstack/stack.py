"""Run the serving stack as local processes: uWSGI and Nginx, exactly as the pod runs them.

Shared by ``make serve``, ``make demo-serving``, the tests and the benchmark; local tooling, not
shipped in the image. Each ``Stack`` gets a
private run directory (socket, Nginx prefix, metrics, logs) and a free loopback port unless told
otherwise; it starts uWSGI with ``serving/config/uwsgi.ini`` and Nginx with
``serving/config/nginx-start.sh``, waits for ``/v2/health/ready`` through Nginx
(``serving.readiness``), and stops both by PID: SIGTERM to the uWSGI master (its graceful
shutdown) and SIGQUIT to Nginx (its graceful stop). ``Stack.drain`` stops them instead as the
pod does (charts/model): both preStop hooks at once, then each container's SIGTERM.

    python -m devstack.stack --model-dir training/model --port 8080     # foreground, Ctrl-C stops
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from serving import readiness
from serving.readiness import NotReadyError

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = PACKAGE_ROOT / "serving" / "config"
UWSGI_INI = CONFIG_DIR / "uwsgi.ini"
NGINX_START = CONFIG_DIR / "nginx-start.sh"
UWSGI_PRESTOP = CONFIG_DIR / "uwsgi-prestop.sh"
READY_PATH = "/v2/health/ready"
PR_SET_PDEATHSIG = 1
#: How long a stack is given to stop gracefully (Stack.stop: a test's teardown, the foreground
#: stack's Ctrl-C or SIGTERM) before what is left is killed. Well below the pod's grace period:
#: uWSGI's graceful stop now and then waits on an idle worker until worker-reload-mercy (25 s)
#: runs out (docs/benchmarks.md, "The graceful-stop hang and thunder-lock"), which neither a
#: developer's Ctrl-C nor the suite should wait for. Stack.drain plays the pod's stop instead.
STOP_GRACE = 10.0


class StackError(RuntimeError):
    """The stack cannot be started (uwsgi missing). A stack that starts but does not come up
    raises ``NotReadyError`` (serving.readiness) instead."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def uwsgi_binary() -> str:
    beside = Path(sys.executable).with_name("uwsgi")
    if beside.exists():
        return str(beside)
    found = shutil.which("uwsgi")
    if found is None:
        raise StackError("uwsgi not found: run `make venv`")
    return found


#: Where Debian's nginx package installs the binary (/usr/sbin): a non-root user's default PATH
#: lacks these, so the stack looks there after PATH.
SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")


def server_path(path: str | None = None) -> str:
    """The PATH the stack runs nginx-start.sh with: PATH (default: this process's), then the
    SBIN directories it lacks. need_nginx in the tests and missing_servers use the same."""
    dirs = (path if path is not None else os.environ.get("PATH", os.defpath)).split(os.pathsep)
    return os.pathsep.join([*dirs, *(sbin for sbin in SBIN if sbin not in dirs)])


def missing_servers() -> str | None:
    """Why the stack cannot run Nginx here (one line), or None: nginx and envsubst as the stack
    finds them (server_path)."""
    missing = [
        tool for tool in ("nginx", "envsubst") if shutil.which(tool, path=server_path()) is None
    ]
    return f"{'/'.join(missing)} not installed: run `make serving-prereqs`" if missing else None


def nginx_environment(port: int, prefix: Path, socket: Path) -> dict[str, str]:
    """What nginx-start.sh reads to run Nginx on 127.0.0.1:PORT, writing under PREFIX, in front
    of the uWSGI SOCKET."""
    env = {
        "NGINX_LISTEN": f"127.0.0.1:{port}",
        "NGINX_PREFIX": str(prefix) + "/",
        "MODELOPS_SOCKET": str(socket),
    }
    if os.geteuid() == 0:  # a root master would hand the workers to 'nobody'
        env["NGINX_GLOBALS"] = "user root;"
    return env


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if the runner dies (no orphaned servers)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Stack:
    """uWSGI + Nginx serving ``model_dir`` on ``127.0.0.1:port``."""

    model_dir: Path
    port: int = 0
    processes: int = 2
    env: Mapping[str, str] = field(default_factory=dict)
    run_dir: Path | None = None
    uwsgi: subprocess.Popen[bytes] | None = None
    nginx: subprocess.Popen[bytes] | None = None
    _own_run_dir: bool = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def socket_path(self) -> Path:
        assert self.run_dir is not None
        return self.run_dir / "uwsgi.sock"

    @property
    def uwsgi_log(self) -> Path:
        assert self.run_dir is not None
        return self.run_dir / "uwsgi.log"

    @property
    def nginx_log(self) -> Path:
        assert self.run_dir is not None
        return self.run_dir / "nginx.log"

    def _environment(self) -> dict[str, str]:
        assert self.run_dir is not None
        env = dict(os.environ)
        env.update(
            {
                "MODELOPS_MODEL_DIR": str(Path(self.model_dir).resolve()),
                "PROMETHEUS_MULTIPROC_DIR": str(self.run_dir / "metrics"),
                "UWSGI_PROCESSES": str(self.processes),
                "PYTHONDONTWRITEBYTECODE": "1",
            }
        )
        env.update(nginx_environment(self.port, self.run_dir / "nginx", self.socket_path))
        env.update(self.env)
        env["PATH"] = server_path(env.get("PATH"))  # Nginx where a non-root PATH lacks /usr/sbin
        # the checkout's own serving package, whatever an editable install points at
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [env.get("PYTHONPATH"), str(PACKAGE_ROOT)])
        )
        return env

    def start(self, timeout: float = 60.0) -> Stack:
        """Start both processes and wait until the stack answers ready; if it does not, stop
        both, remove the run directory and raise ``NotReadyError`` (it carries the log lines)."""
        self.spawn()
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            self.cleanup()  # the error already carries the log lines
            raise
        return self

    def spawn(self) -> Stack:
        """Start uWSGI and Nginx without waiting for them."""
        if self.run_dir is None:
            # short: a unix socket path must fit in 108 bytes
            self.run_dir = Path(tempfile.mkdtemp(prefix="modelops-"))
            self._own_run_dir = True
        if self.port == 0:
            self.port = free_port()
        env = self._environment()
        # Append mode (O_APPEND): Nginx opens its access log, /dev/stdout, anew, so two file
        # descriptions share the file; without it, every line Nginx writes to stderr (the
        # original one) overwrites access-log lines from that one's stale offset.
        for log_file in (self.uwsgi_log, self.nginx_log):
            log_file.write_bytes(b"")
        with self.uwsgi_log.open("ab") as log:
            self.uwsgi = subprocess.Popen(
                [uwsgi_binary(), "--ini", str(UWSGI_INI)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches only the runner, which stops gracefully
                preexec_fn=_die_with_parent,
            )
        with self.nginx_log.open("ab") as log:
            self.nginx = subprocess.Popen(
                ["sh", str(NGINX_START)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        return self

    def wait_ready(self, timeout: float) -> None:
        """Return once ``/v2/health/ready`` answers 200 through Nginx. Raises ``NotReadyError``
        (serving.readiness) at once when uWSGI or Nginx exits, else after ``timeout`` seconds;
        it carries the last lines of both logs."""
        assert self.uwsgi is not None and self.nginx is not None
        readiness.wait_ready(
            self.url + READY_PATH,
            timeout,
            "the serving stack",
            exited=readiness.first_exit({"uWSGI": self.uwsgi, "Nginx": self.nginx}),
            log_tail=lambda: readiness.file_tails(self.uwsgi_log, self.nginx_log),
        )

    def worker_pids(self) -> list[int]:
        """PIDs of the uWSGI workers (children of the master)."""
        assert self.uwsgi is not None
        return sorted(pid for pid, parent, _ in live_processes() if parent == self.uwsgi.pid)

    def signal_stop(self) -> None:
        """Ask both to stop gracefully, without waiting."""
        for process, signum in ((self.nginx, signal.SIGQUIT), (self.uwsgi, signal.SIGTERM)):
            if process is not None and process.poll() is None:
                process.send_signal(signum)

    def drain(self, stop_delay: float = 0, timeout: float = 60.0) -> dict[str, int | None]:
        """Stop as the kubelet stops the pod (charts/model's deployment): run both containers'
        preStop hooks at once, ``nginx-start.sh stop`` (with ``NGINX_STOP_DELAY=stop_delay``) and
        ``uwsgi-prestop.sh``, send each container's process SIGTERM when its own hook returns,
        and wait for both processes. Returns their exit codes; what still runs after
        ``timeout`` seconds is killed (the grace period), its code then negative."""
        assert self.uwsgi is not None and self.nginx is not None
        env = {**self._environment(), "NGINX_STOP_DELAY": str(stop_delay)}
        hooks = {
            "nginx": (["sh", str(NGINX_START), "stop"], self.nginx),
            "uwsgi": (["sh", str(UWSGI_PRESTOP)], self.uwsgi),
        }

        def container_stop(command: list[str], process: subprocess.Popen[bytes]) -> None:
            subprocess.run(command, env=env, check=False, timeout=timeout)
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)

        threads = [
            threading.Thread(target=container_stop, args=hook, daemon=True)
            for hook in hooks.values()
        ]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + timeout
        codes: dict[str, int | None] = {}
        for name, (_, process) in hooks.items():
            try:
                codes[name] = process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                codes[name] = process.wait()
        for thread in threads:
            thread.join(max(0.1, deadline - time.monotonic()))
        return codes

    def stop(self, timeout: float = STOP_GRACE) -> dict[str, int | None]:
        """Stop gracefully; after ``timeout``, kill what is still running. Either way, once a
        server's main process is gone, whatever is left of its process group (each was started
        in a session of its own) is killed, and waited for: a uWSGI worker stuck in a request
        outlives a master that exited in time as surely as one that was killed. When it returns,
        no process of either server is left. Returns exit codes."""
        self.signal_stop()
        codes: dict[str, int | None] = {}
        deadline = time.monotonic() + timeout
        for name, process in (("nginx", self.nginx), ("uwsgi", self.uwsgi)):
            if process is None:
                continue
            try:
                codes[name] = process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                codes[name] = process.wait()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # the group's leftovers, if any
            group_gone(process.pid)
        return codes

    def cleanup(self) -> None:
        if self._own_run_dir and self.run_dir is not None:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        self.cleanup()


@contextlib.contextmanager
def running(model_dir: Path, **kwargs: object) -> Iterator[Stack]:
    stack = Stack(model_dir, **kwargs)  # type: ignore[arg-type]
    with stack:
        yield stack


def live_processes() -> list[tuple[int, int, int]]:
    """Every process but zombies, as (pid, parent pid, process group), read from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if fields[0] != "Z":
                found.append((int(stat.parent.name), int(fields[1]), int(fields[2])))
    return found


def group_members(pgid: int) -> list[int]:
    """The live processes (zombies aside) of process group PGID."""
    return sorted(pid for pid, _, group in live_processes() if group == pgid)


def group_gone(pgid: int, timeout: float = 5.0) -> None:
    """Wait until process group PGID, just sent SIGKILL, has no live process: a killed process
    is gone only once the kernel has torn it down, a moment after the signal. StackError when
    one is still there after TIMEOUT."""
    deadline = time.monotonic() + timeout
    while left := group_members(pgid):
        if time.monotonic() > deadline:
            raise StackError(f"process group {pgid} outlived SIGKILL: {left}")
        time.sleep(0.02)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args(argv)
    if not (args.model_dir / "metadata.json").is_file():
        print(f"no model in {args.model_dir}: run `make train` first", file=sys.stderr)
        return 1
    # Ctrl-C (SIGINT) and SIGTERM both stop gracefully, even when started with SIGINT ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    stack = Stack(args.model_dir, port=args.port, processes=args.processes)
    try:
        try:
            stack.start()
        except (StackError, NotReadyError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"serving {args.model_dir} on {stack.url} (logs in {stack.run_dir}); Ctrl-C stops")
        while stack.uwsgi is not None and stack.uwsgi.poll() is None:
            time.sleep(0.5)
        print("uWSGI exited:\n" + readiness.file_tails(stack.uwsgi_log), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopping (graceful) ...", file=sys.stderr)
        return 0
    finally:
        codes = stack.stop()
        print(f"stopped: {codes}", file=sys.stderr)
        stack.cleanup()


if __name__ == "__main__":
    sys.exit(main())
