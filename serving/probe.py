"""The app container's own probe: one GET to uWSGI over its unix socket, as Nginx sends it.

The kubelet runs it as the app container's exec probes (charts/model: startup, readiness,
liveness), e.g. ``python -m serving.probe /v2/health/ready``. It speaks the uwsgi protocol to
``$MODELOPS_SOCKET`` (default ``/run/modelops/uwsgi.sock``), the socket Nginx uses, so a pass
proves what Nginx needs of this container: the socket accepts, a worker takes the request, the
app answers. The Nginx container's probes ask Nginx only (``/nginx/health/*``): a hung app fails
this probe, and the kubelet restarts the app container, not Nginx.

Contract: exit 0 when the answer's status is 200 within ``--timeout`` seconds (default 3, below
the probe's ``timeoutSeconds``); otherwise exit 1 with one line on stderr naming the socket, the
path and what happened (refused, timed out, the status and the start of the body). Standard
library only: it imports nothing of the app, and starts in a few tens of milliseconds.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time

DEFAULT_SOCKET = "/run/modelops/uwsgi.sock"


def packet(path: str) -> bytes:
    """A uwsgi-protocol request (modifier 0: a WSGI request) for ``GET path``, no body."""
    variables = {
        "REQUEST_METHOD": "GET",
        "REQUEST_URI": path,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "0",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "localhost",
        "HTTP_USER_AGENT": "modelops-probe",
        "REQUEST_ID": f"probe-{os.getpid()}",
    }
    body = b"".join(
        len(part).to_bytes(2, "little") + part
        for key, value in variables.items()
        for part in (key.encode(), value.encode())
    )
    return bytes([0]) + len(body).to_bytes(2, "little") + bytes([0]) + body


def ask(socket_path: str, path: str, timeout: float) -> tuple[int, bytes]:
    """Send ``GET path`` to uWSGI at ``socket_path``; the status and body of its answer.
    Raises OSError (refused, missing socket, ``TimeoutError`` past ``timeout`` seconds) or
    ValueError (an answer that is not HTTP)."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(timeout)
        connection.connect(socket_path)
        connection.sendall(packet(path))
        answer = b""
        while True:
            connection.settimeout(max(0.001, deadline - time.monotonic()))
            chunk = connection.recv(65536)
            if not chunk:
                break
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/"):
        raise ValueError(f"not an HTTP answer: {answer[:80]!r}")
    return int(status_line[1]), body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="the app's path, e.g. /v2/health/live")
    parser.add_argument("--socket", default=os.environ.get("MODELOPS_SOCKET", DEFAULT_SOCKET))
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds (default 3)")
    args = parser.parse_args(argv)
    where = f"GET {args.path} on {args.socket}"
    try:
        status, body = ask(args.socket, args.path, args.timeout)
    except TimeoutError:
        print(f"probe: {where}: no answer within {args.timeout:g} s", file=sys.stderr)
        return 1
    except (OSError, ValueError) as error:
        print(f"probe: {where}: {error}", file=sys.stderr)
        return 1
    if status != 200:
        text = body[:200].decode("utf-8", "replace").strip()
        print(f"probe: {where}: status {status} {text}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
