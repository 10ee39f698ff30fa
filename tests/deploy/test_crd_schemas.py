"""scripts/crd_schemas.py: the pinned CRD schemas are used only once their sha256 matched.

Offline: a local HTTP server on 127.0.0.1 serves small files each test writes itself, and a lock
file written by the test pins them (its URL pattern points at that server), so nothing here needs
the network or the real Argo CD schemas. The Prometheus Operator's are the committed copies.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .conftest import CRD_SCHEMAS, UNPINNED, closed_port, write_lock

SchemaError = CRD_SCHEMAS.SchemaError
VARIABLE = "MODELOPS_ARGOCD_SCHEMAS"
GOOD = {
    "application_v1alpha1.json": ("Application", b'{"title": "application"}\n'),
    "appproject_v1alpha1.json": ("AppProject", b'{"title": "appproject"}\n'),
}


@dataclass(frozen=True)
class Pin:
    file: str
    kind: str
    sha256: str


@dataclass
class Server:
    """What the local server serves (path → bytes) and the paths it was asked for."""

    url: str
    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    state = Server(url="")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append(self.path)
            body = state.files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def pins_for(tmp_path: Path, base_url: str) -> Any:
    """The pins of a lock file that pins GOOD at BASE_URL/<commit>/<file>."""
    pins = [Pin(name, kind, sha256(content)) for name, (kind, content) in GOOD.items()]
    return CRD_SCHEMAS.load_pins(
        write_lock(tmp_path / "test.lock", base_url + "/{commit}/{file}", pins)
    )


def serve_good(server: Server) -> None:
    server.files.update({f"/{UNPINNED}/{name}": content for name, (_, content) in GOOD.items()})


def offline_copy(tmp_path: Path) -> Path:
    """A directory holding GOOD's files, as MODELOPS_ARGOCD_SCHEMAS would name one."""
    offline = tmp_path / "offline"
    offline.mkdir()
    for name, (_, content) in GOOD.items():
        (offline / name).write_bytes(content)
    return offline


def expected() -> dict[str, bytes]:
    return {kind: content for kind, content in GOOD.values()}


def test_a_good_file_is_fetched_verified_cached_and_then_used_from_the_cache(
    server: Server, tmp_path: Path
) -> None:
    serve_good(server)
    pins = pins_for(tmp_path, server.url)
    cache = tmp_path / "cache"
    schemas = CRD_SCHEMAS.verified_schemas(pins, cache=cache, environ={})
    assert schemas.by_kind == expected()
    for name, (_, content) in GOOD.items():
        assert (cache / UNPINNED / name).read_bytes() == content
    assert sorted(server.requests) == sorted(f"/{UNPINNED}/{name}" for name in GOOD)

    server.files.clear()
    server.requests.clear()
    again = CRD_SCHEMAS.verified_schemas(pins, cache=cache, environ={})
    assert again.by_kind == expected()
    assert server.requests == []


def test_a_fetched_file_with_the_wrong_sha256_is_refused_in_one_line_and_nothing_is_cached(
    server: Server, tmp_path: Path
) -> None:
    serve_good(server)
    tampered = b'{"title": "something else"}\n'
    server.files[f"/{UNPINNED}/appproject_v1alpha1.json"] = tampered
    pins = pins_for(tmp_path, server.url)
    cache = tmp_path / "cache"
    with pytest.raises(SchemaError) as raised:
        CRD_SCHEMAS.verified_schemas(pins, cache=cache, environ={})
    message = str(raised.value)
    assert "\n" not in message
    url = f"{server.url}/{UNPINNED}/appproject_v1alpha1.json"
    good = GOOD["appproject_v1alpha1.json"][1]
    assert f"{url} refused: sha256 {sha256(tampered)}, expected {sha256(good)}" in message
    assert not (cache / UNPINNED / "appproject_v1alpha1.json").exists()
    assert [p.name for p in (cache / UNPINNED).iterdir()] == ["application_v1alpha1.json"]


def test_a_corrupted_cache_entry_is_not_used_but_fetched_again(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    serve_good(server)
    pins = pins_for(tmp_path, server.url)
    cache = tmp_path / "cache"
    entry = cache / UNPINNED / "application_v1alpha1.json"
    entry.parent.mkdir(parents=True)
    entry.write_bytes(b'{"title": "corrupted"}\n')
    schemas = CRD_SCHEMAS.verified_schemas(pins, cache=cache, environ={})
    assert schemas.by_kind == expected()
    assert entry.read_bytes() == GOOD["application_v1alpha1.json"][1]
    assert f"/{UNPINNED}/application_v1alpha1.json" in server.requests
    assert "not used, fetching it again" in capsys.readouterr().err


def test_a_corrupted_cache_entry_is_an_error_not_a_fallback_when_it_cannot_be_fetched_again(
    server: Server, tmp_path: Path
) -> None:
    pins = pins_for(tmp_path, server.url)  # the server serves nothing: 404
    cache = tmp_path / "cache"
    entry = cache / UNPINNED / "application_v1alpha1.json"
    entry.parent.mkdir(parents=True)
    entry.write_bytes(b'{"title": "corrupted"}\n')
    with pytest.raises(SchemaError, match=r"HTTP 404"):
        CRD_SCHEMAS.verified_schemas(pins, cache=cache, environ={})
    assert not entry.exists()


def test_the_offline_directory_variable_is_read_and_nothing_is_fetched(
    server: Server, tmp_path: Path
) -> None:
    offline = offline_copy(tmp_path)
    pins = pins_for(tmp_path, server.url)
    cache = tmp_path / "cache"
    schemas = CRD_SCHEMAS.verified_schemas(pins, cache=cache, environ={VARIABLE: str(offline)})
    assert schemas.by_kind == expected()
    assert schemas.origin == f"{VARIABLE}={offline}"
    assert server.requests == []
    assert not cache.exists()


def test_a_wrong_file_in_the_offline_directory_is_refused_naming_it_and_both_sha256s(
    server: Server, tmp_path: Path
) -> None:
    offline = offline_copy(tmp_path)
    wrong = b'{"title": "another version"}\n'
    (offline / "appproject_v1alpha1.json").write_bytes(wrong)
    serve_good(server)  # a good copy is reachable, and still not used instead
    pins = pins_for(tmp_path, server.url)
    with pytest.raises(SchemaError) as raised:
        CRD_SCHEMAS.verified_schemas(
            pins, cache=tmp_path / "cache", environ={VARIABLE: str(offline)}
        )
    message = str(raised.value)
    assert "\n" not in message
    good = GOOD["appproject_v1alpha1.json"][1]
    assert message.startswith(
        f"{VARIABLE}: {offline / 'appproject_v1alpha1.json'} refused: "
        f"sha256 {sha256(wrong)}, expected {sha256(good)}"
    )
    assert server.requests == []


def test_a_file_missing_from_the_offline_directory_is_refused_naming_every_file_it_must_hold(
    server: Server, tmp_path: Path
) -> None:
    offline = tmp_path / "offline"
    offline.mkdir()
    (offline / "application_v1alpha1.json").write_bytes(GOOD["application_v1alpha1.json"][1])
    pins = pins_for(tmp_path, server.url)
    with pytest.raises(
        SchemaError,
        match=r"cannot read .*appproject_v1alpha1\.json .*must hold application_v1alpha1\.json, "
        r"appproject_v1alpha1\.json",
    ):
        CRD_SCHEMAS.verified_schemas(
            pins, cache=tmp_path / "cache", environ={VARIABLE: str(offline)}
        )


def test_without_network_the_error_names_the_url_and_how_to_set_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    base = f"http://127.0.0.1:{closed_port()}"
    pins = pins_for(tmp_path, base)
    with pytest.raises(SchemaError) as raised:
        CRD_SCHEMAS.verified_schemas(pins, cache=tmp_path / "cache", environ={})
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(
        f"cannot fetch the Argo CD schema {base}/{UNPINNED}/application_v1alpha1.json ("
    )
    assert (
        f"set {VARIABLE} to a directory holding copies of "
        "application_v1alpha1.json, appproject_v1alpha1.json" in message
    )
    assert not (tmp_path / "cache").exists()


def test_the_lock_pins_the_three_argocd_schemas_at_one_commit_of_the_datree_catalog() -> None:
    pins = CRD_SCHEMAS.load_pins()
    assert pins.source == "https://github.com/datreeio/CRDs-catalog"
    assert {pin.kind: pin.file for pin in pins.files} == {
        "Application": "application_v1alpha1.json",
        "ApplicationSet": "applicationset_v1alpha1.json",
        "AppProject": "appproject_v1alpha1.json",
    }
    for pin in pins.files:
        assert pin.url == (
            "https://raw.githubusercontent.com/datreeio/CRDs-catalog/"
            f"{pins.commit}/argoproj.io/{pin.file}"
        )


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        ('commit = "main"', r"commit must match \[0-9a-f\]\{40\}, not 'main'"),
        ('sha256 = "abc"', r"files\.\"application_v1alpha1\.json\"\.sha256 must match"),
    ],
    ids=["commit", "sha256"],
)
def test_a_malformed_lock_is_refused_naming_the_key(
    tmp_path: Path, broken: str, message: str
) -> None:
    lock = tmp_path / "broken.lock"
    pin = Pin("application_v1alpha1.json", "Application", "0" * 64)
    text = write_lock(lock, "https://example.org/{commit}/{file}", [pin]).read_text()
    key = broken.split(" = ")[0]
    lines = [broken if line.startswith(f"{key} = ") else line for line in text.splitlines()]
    lock.write_text("\n".join(lines) + "\n")
    with pytest.raises(SchemaError, match=message):
        CRD_SCHEMAS.load_pins(lock)


def test_the_prometheus_operator_schemas_are_committed_copies_verified_without_any_fetch(
    tmp_path: Path,
) -> None:
    pins = CRD_SCHEMAS.load_pins(CRD_SCHEMAS.LOCKS[1])
    assert pins.source == "https://github.com/datreeio/CRDs-catalog"
    assert pins.commit == CRD_SCHEMAS.load_pins().commit  # one catalog, one commit
    schemas = CRD_SCHEMAS.verified_schemas(pins, cache=tmp_path / "cache", environ={})
    assert schemas.api_version == "monitoring.coreos.com/v1"
    assert sorted(schemas.by_kind) == ["PrometheusRule", "ServiceMonitor"]
    assert schemas.origin == "scripts/crd-schemas/monitoring.coreos.com"
    assert not (tmp_path / "cache").exists()


def test_a_changed_committed_copy_is_refused_naming_it_and_both_sha256s(tmp_path: Path) -> None:
    pins = CRD_SCHEMAS.load_pins(CRD_SCHEMAS.LOCKS[1])
    copy = tmp_path / "copies"
    shutil.copytree(CRD_SCHEMAS.ROOT / pins.directory, copy)
    changed = copy / "servicemonitor_v1.json"
    changed.write_text(changed.read_text().replace('"additionalProperties": false', "", 1))
    with pytest.raises(SchemaError) as raised:
        CRD_SCHEMAS.verified_schemas(
            dataclasses.replace(pins, directory=str(copy)), cache=tmp_path / "cache", environ={}
        )
    message = str(raised.value)
    assert message.startswith(f"{copy}: {changed} refused: sha256 {sha256(changed.read_bytes())}")
    assert f"expected {pins.files[0].sha256}" in message
