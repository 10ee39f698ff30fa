"""A container registry on loopback: the registry a fork's CI pushes to, for the machine it runs on.

Role: the one way this project starts a real registry (Debian's ``docker-registry``, the CNCF
distribution server GHCR and Docker Hub run too) with nothing outside the repository: plain HTTP on
a free loopback port, no authentication, its storage under ROOT. Its callers: the suite's
``loopback_registry`` fixture (tests/conftest.py), which the act walks that build and push the
image and the promotion tests that read build attestations share, and ``make demo``
(gitops.demo), which pushes each image it builds there and signs it, as promote.yml does, so that
every promotion's ``image`` gate reads a real attestation back by digest.

Contract: :func:`loopback` yields ``HOST:PORT`` once ``/v2/`` answers 200 and stops the server
(by its PID) when the block ends; it raises :class:`RegistryError` with one line when the
programs are missing (``make registry-tools`` installs them) or the server does not come up (the
line ends with its log's last line). Clients read it with TLS verification off
(``MODELOPS_REGISTRY_TLS_VERIFY=false``, podman's and skopeo's ``--tls-verify=false``).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: The programs a loopback registry needs: the server, and the client that reads it by digest.
PROGRAMS = ("docker-registry", "skopeo")
#: How long the server may take to answer /v2/.
START_TIMEOUT = 30.0


class RegistryError(RuntimeError):
    """The registry cannot be started; its message is one line."""


def missing() -> list[str]:
    """The programs of PROGRAMS not on PATH."""
    return [name for name in PROGRAMS if shutil.which(name) is None]


@contextmanager
def loopback(root: Path) -> Iterator[str]:
    """A registry with its configuration, storage and log under ROOT; its HOST:PORT."""
    absent = missing()
    if absent:
        raise RegistryError(f"{' and '.join(absent)} not installed: make registry-tools")
    root.mkdir(parents=True, exist_ok=True)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"127.0.0.1:{port}"
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        f"storage: {{filesystem: {{rootdirectory: {root / 'data'}}}}}\n"
        f"http: {{addr: {address}}}\n"
    )
    log_path = root / "registry.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            ["docker-registry", "serve", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with urllib.request.urlopen(f"http://{address}/v2/", timeout=1) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    last = (log_path.read_text().strip().splitlines() or ["no output"])[-1]
                    raise RegistryError(
                        f"the registry did not start on {address}: {last}"
                    ) from None
                time.sleep(0.1)
        yield address
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
