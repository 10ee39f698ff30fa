"""gitops.smoke's check against a real Nginx + uWSGI stack: the server must report exactly the
release an environment's rendered manifests name, or the smoke test fails naming the field."""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import http.server
import threading
import urllib.parse
from collections.abc import Iterator

import pytest
import requests
from conftest import PROVENANCE, start_stack
from serving_testkit import MODEL_NAME, TinyModel

from devstack.stack import Stack
from gitops import rendered, smoke
from gitops.cli import ToolError
from serving.provenance import HEADER, provenance_id

pytestmark = pytest.mark.e2e


@pytest.fixture
def release(tiny_model: TinyModel) -> rendered.Release:
    """The release the shared stack serves, as rendered manifests would name it."""
    return rendered.Release(
        image=f"localhost/modelops/model-server:{PROVENANCE['MODELOPS_GIT_COMMIT']}"
        f"@{PROVENANCE['MODELOPS_IMAGE_DIGEST']}",
        namespace="modelops-staging",
        model_name=MODEL_NAME,
        model_version=PROVENANCE["MODELOPS_MODEL_VERSION"],
        model_stage=PROVENANCE["MODELOPS_MODEL_STAGE"],
        model_sha256=str(tiny_model.metadata["model_sha256"]),
        git_commit=PROVENANCE["MODELOPS_GIT_COMMIT"],
        manifests_sha256="0" * 64,
    )


def test_a_server_that_serves_the_rendered_release_passes(
    stack: Stack, release: rendered.Release
) -> None:
    reported = smoke.check(stack.url, release)
    assert reported["version"] == release.model_version
    assert reported["image_digest"] == release.digest
    assert reported["model_sha256"] == release.model_sha256


@pytest.mark.parametrize(
    ("field", "attribute", "value"),
    [
        ("version", "model_version", "v9.9.9"),
        ("stage", "model_stage", "prod"),
        ("git_commit", "git_commit", "f" * 40),
        ("model_sha256", "model_sha256", "e" * 64),
        ("image_digest", "image", "localhost/modelops/model-server:x@sha256:" + "c" * 64),
    ],
)
def test_a_server_that_serves_another_release_fails_naming_the_field(
    stack: Stack, release: rendered.Release, field: str, attribute: str, value: str
) -> None:
    other = dataclasses.replace(release, **{attribute: value})
    with pytest.raises(ToolError, match=f"smoke: /v2 model metadata reports {field} "):
        smoke.check(stack.url, other)


def test_a_server_that_does_not_answer_fails_in_one_line(release: rendered.Release) -> None:
    with pytest.raises(ToolError, match=r"^smoke: http://127\.0\.0\.1:9/v2/health/ready did not"):
        smoke.check("http://127.0.0.1:9", release)


@contextlib.contextmanager
def split_service(metadata_from: str, rest_from: str, drop: str = "") -> Iterator[str]:
    """A Service spreading one client's requests over two pods mid-rollout: ``/v2/models/<name>``
    (the metadata) answered by the server at METADATA_FROM, every other request by REST_FROM;
    the header DROP (if any) removed from the answers, as a server that does not send it."""

    class Relay(http.server.BaseHTTPRequestHandler):
        def _relay(self) -> None:
            target = metadata_from if self.path == f"/v2/models/{MODEL_NAME}" else rest_from
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            split = urllib.parse.urlsplit(target)
            upstream = http.client.HTTPConnection(split.hostname, split.port, timeout=10)
            headers = {"Content-Type": self.headers.get("Content-Type", "application/json")}
            upstream.request(self.command, self.path, body=body, headers=headers)
            answer = upstream.getresponse()
            data = answer.read()
            self.send_response(answer.status)
            for key, value in answer.getheaders():
                if key.lower() not in {"connection", "transfer-encoding", drop.lower()}:
                    self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
            upstream.close()

        def do_GET(self) -> None:
            self._relay()

        def do_POST(self) -> None:
            self._relay()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Relay)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_an_inference_answered_by_another_provenance_than_the_metadata_fails_naming_the_id(
    stack: Stack, release: rendered.Release, tiny_model: TinyModel
) -> None:
    """The metadata names the release, but the inference came from a pod of another image (its
    provenance id is not the one the metadata's values give): the smoke test fails on the id.
    The same split between two pods of one provenance passes (the check is the id, not the
    pod); a server that sends no id (the header of the old answers) fails on it too."""
    other_digest = "sha256:" + "ab" * 32
    other = start_stack(tiny_model.directory, MODELOPS_IMAGE_DIGEST=other_digest)
    twin = start_stack(tiny_model.directory)
    try:
        with (
            split_service(stack.url, other.url) as url,
            pytest.raises(ToolError, match=f"^smoke: {HEADER} reports provenance id '"),
        ):
            smoke.check(url, release)
        with split_service(stack.url, twin.url) as url:
            passed = smoke.check(url, release)
        served = requests.get(f"{stack.url}/v2/models/{MODEL_NAME}", timeout=5).json()
        assert passed["provenance_id"] == provenance_id(served["parameters"])
        with (
            split_service(stack.url, stack.url, drop=HEADER) as url,
            pytest.raises(ToolError, match=f"^smoke: {HEADER} reports provenance id ''"),
        ):
            smoke.check(url, release)
    finally:
        for server in (other, twin):
            server.stop()
            server.cleanup()
