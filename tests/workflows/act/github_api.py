"""Stand-in for GitHub's REST API endpoint the retraining relay calls (README.md of this folder).

``POST /repos/{owner}/{repo}/dispatches``, GitHub's repository dispatch, on loopback: each request
is recorded (path, the ``Authorization`` and ``Accept`` headers, the JSON body) and answered
``status`` (204, GitHub's answer, unless a test sets another), so a test can read what the relay
would have sent GitHub. Any other path or method is a 404, as GitHub answers an unknown route.
Used by the relay's tests (tests/gitops/test_relay.py) and the alert-to-dispatch integration test
(tests/serving/test_serving_prometheus.py).
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

DISPATCHES = re.compile(r"^/repos/[^/]+/[^/]+/dispatches$")


class GitHubApi:
    """The stand-in server on ``127.0.0.1`` and a free port (``url``), started on ``with``."""

    def __init__(self, status: int = 204) -> None:
        self.status = status
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if not DISPATCHES.match(self.path):
                    self._answer(404, b'{"message": "Not Found"}')
                    return
                try:
                    body = json.loads(raw)
                except json.JSONDecodeError:
                    body = None
                with stand_in._lock:
                    stand_in.requests.append(
                        {
                            "path": self.path,
                            "authorization": self.headers.get("Authorization", ""),
                            "accept": self.headers.get("Accept", ""),
                            "body": body,
                        }
                    )
                self._answer(stand_in.status, b"" if stand_in.status == 204 else b"{}")

            def _answer(self, status: int, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if data:
                    self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def received(self) -> list[dict[str, Any]]:
        """The requests recorded so far, oldest first."""
        with self._lock:
            return list(self.requests)

    def __enter__(self) -> GitHubApi:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
