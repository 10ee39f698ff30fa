"""Stand-in for the environments' Services: what a cluster serves after Argo CD synced a branch.

``Deployed(read)`` is an HTTP server on loopback whose ``url_of(env)`` answers the model server's
routes ``gitops.smoke`` asks (``/v2/health/ready``, ``/v2/models/<name>`` with the seven values
serving/provenance.py's Provenance names and their id, an inference with its
``X-Model-Provenance-Id`` header) with the release
that ``read(env)`` returns at the time of the request: the text of the environment's rendered
file on its branch, as an automated sync applies it. ``serve_instead`` makes one environment
answer with other values (a pod still running the old image, a changed field). The real server
answers these routes in tests/serving (test_serving_smoke_check.py); here the workflows and the
gates are under test, with no cluster.

Used by the act walk of environments.yml (its smoke job, tests/workflows/test_act_environments.py)
and the evidence tests (tests/gitops/test_evidence.py).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from gitops import rendered
from serving.provenance import HEADER, provenance_id

#: The number of features of the model the stand-in plays (what one inference sends).
WIDTH = 4


class Deployed:
    """The stand-in server (a context manager); READ(env name) is that env's rendered text."""

    def __init__(self, read: Callable[[str], str | None]) -> None:
        self.read = read
        self.overrides: dict[str, dict[str, str]] = {}
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def _route(self) -> tuple[dict[str, str] | None, str]:
                env, _, rest = self.path.lstrip("/").partition("/")
                return stand_in.provenance(env), "/" + rest

            def do_GET(self) -> None:
                found, route = self._route()
                if found is None:
                    self._answer(503, {"error": "nothing deployed"})
                elif route == "/v2/health/ready":
                    self._answer(200, {"ready": True})
                elif route == f"/v2/models/{found['name']}":
                    shape = {"name": "input-0", "datatype": "FP64", "shape": [-1, WIDTH]}
                    parameters = {**found, "provenance_id": provenance_id(found)}
                    self._answer(200, {"name": found["name"], "inputs": [shape],
                                       "parameters": parameters})  # fmt: skip
                else:
                    self._answer(404, {"error": f"no route {route}"})

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                found, route = self._route()
                if found is None or route != f"/v2/models/{found['name']}/infer":
                    self._answer(404, {"error": f"no route {route}"})
                    return
                self._answer(200, {"outputs": []}, {HEADER: provenance_id(found)})

            def _answer(
                self, status: int, body: Any, headers: dict[str, str] | None = None
            ) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def provenance(self, env: str) -> dict[str, str] | None:
        """What ENV's pods report now (serving/provenance.py's Provenance fields), or None. The
        rendered manifests do not name the data's sha256: the pods report it empty here."""
        text = self.read(env)
        if text is None:
            return None
        release = rendered.release(text)
        found = {
            "name": release.model_name,
            "version": release.model_version,
            "stage": release.model_stage,
            "git_commit": release.git_commit,
            "image_digest": release.digest,
            "data_sha256": "",
            "model_sha256": release.model_sha256,
        }
        return {**found, **self.overrides.get(env, {})}

    def serve_instead(self, env: str, **fields: str) -> None:
        """ENV's pods report FIELDS instead of what its rendered file says."""
        self.overrides[env] = fields

    def url_of(self, env: str) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/{env}"

    def __enter__(self) -> Deployed:
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
