#!/usr/bin/env python3
"""The pinned CRD schemas (Argo CD's, the Prometheus Operator's), verified by sha256 before any use.

Role: the one way the project obtains the kubeconform-format JSON Schemas that custom resources
are validated against: argocd/ against the Argo CD ones, the chart's ServiceMonitor and
PrometheusRule against the Prometheus Operator ones.
Callers: scripts/validate-manifests.py (`make validate`) through `verified_schemas()`, the
deployment tests, and `python scripts/crd_schemas.py`, which obtains every set in LOCKS and says
where each came from.

Contract:
- A lock file pins one set (name, source, commit, URL pattern, API version, file names, their kinds
  and sha256s): scripts/argocd-schemas.lock and scripts/prometheus-operator-schemas.lock, the only
  places these pins are written. Both sets are files of one catalog at one commit.
- A set whose lock names a `directory` (inside the repository) has committed copies there: they
  are read from it and nothing is fetched.
- A set whose lock names a `variable`, set in the environment to a directory (relative to the
  repository root or absolute), is read from that directory and nothing is fetched: the offline
  copy for machines without access to the URLs.
- Otherwise each file comes from the cache, .cache/crd-schemas/<commit>/ inside the repository,
  when its sha256 matches the pin; else it is fetched from its URL and written to the cache only
  after its sha256 matched. A cached file that does not match is deleted and fetched again.
- No content is returned before its sha256 matched the pin. Every failure raises SchemaError with
  one line naming the file (and for a mismatch the expected and the actual sha256) and saying what
  is allowed.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import sys
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "scripts" / "argocd-schemas.lock"
LOCKS = (LOCK, ROOT / "scripts" / "prometheus-operator-schemas.lock")
CACHE = ROOT / ".cache" / "crd-schemas"
TIMEOUT_SECONDS = 30
MAX_BYTES = 16 * 1024 * 1024  # the largest pinned file is about 2 MB


class SchemaError(Exception):
    """Why the schemas cannot be had, in one line that says what is allowed."""


@dataclass(frozen=True)
class Pin:
    """One pinned file: its name, the kind it validates, its sha256 and its URL."""

    file: str
    kind: str
    sha256: str
    url: str


@dataclass(frozen=True)
class Pins:
    """The contents of the lock file, checked."""

    lock: Path
    name: str
    source: str
    commit: str
    api_version: str
    files: tuple[Pin, ...]
    variable: str = ""
    directory: str = ""

    def names(self) -> str:
        return ", ".join(pin.file for pin in self.files)

    def where(self) -> str:
        return f"sha256s in {shown(self.lock)}"


@dataclass(frozen=True)
class Schemas:
    """Verified schema files by kind (raw bytes) of one API version, and where they came from."""

    name: str
    api_version: str
    by_kind: dict[str, bytes]
    origin: str


def shown(path: Path) -> str:
    """PATH relative to the repository when it is inside, as messages print it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def one_line(text: object) -> str:
    return " ".join(str(text).split())


def load_pins(lock: Path = LOCK) -> Pins:
    """The pins of LOCK; SchemaError naming the key when one is missing or malformed."""
    try:
        data = tomllib.loads(lock.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise SchemaError(f"{shown(lock)}: cannot read the pins: {one_line(error)}") from error

    def field(table: Mapping[str, object], key: str, where: str, pattern: str) -> str:
        value = table.get(key)
        if not isinstance(value, str) or not re.fullmatch(pattern, value):
            raise SchemaError(f"{shown(lock)}: {where}{key} must match {pattern}, not {value!r}")
        return value

    name = field(data, "name", "", r"\w[\w ]*")
    source = field(data, "source", "", r"https://\S+")
    commit = field(data, "commit", "", r"[0-9a-f]{40}")
    pattern = field(data, "url", "", r"https?://\S*\{file\}\S*")
    api_version = field(data, "api_version", "", r"[a-z0-9.-]+/v\w+")
    variable = field(data, "variable", "", r"(MODELOPS_\w+)?") if "variable" in data else ""
    directory = field(data, "directory", "", r"[\w.-]+(/[\w.-]+)*") if "directory" in data else ""
    if bool(variable) == bool(directory):
        raise SchemaError(
            f"{shown(lock)}: exactly one of variable (the offline directory's environment "
            "variable) and directory (committed copies inside the repository) must be set"
        )
    files = data.get("files")
    if not isinstance(files, dict) or not files:
        raise SchemaError(f'{shown(lock)}: [files."<name>"] tables with kind and sha256 missing')
    pins = []
    for file, table in files.items():
        where = f'files."{file}".'
        if not isinstance(table, dict) or not re.fullmatch(r"[\w.-]+\.json", file):
            raise SchemaError(f"{shown(lock)}: {where[:-1]} must be a table named <file>.json")
        url = pattern.format(commit=commit, file=file)
        pins.append(
            Pin(
                file=file,
                kind=field(table, "kind", where, r"[A-Z]\w*"),
                sha256=field(table, "sha256", where, r"[0-9a-f]{64}"),
                url=url,
            )
        )
    return Pins(
        lock=lock,
        name=name,
        source=source,
        commit=commit,
        api_version=api_version,
        files=tuple(pins),
        variable=variable,
        directory=directory,
    )


def from_directory(directory: Path, pins: Pins, what: str) -> dict[str, bytes]:
    """Each pinned file read from DIRECTORY (an offline copy named by the variable WHAT, or the
    committed copies when WHAT is the lock's directory); refused unless it matches."""
    if not directory.is_dir():
        if what == pins.directory:
            raise SchemaError(f"{what}: no such directory; it must hold {pins.names()}")
        raise SchemaError(
            f"{what}={directory}: no such directory; set it to a directory holding "
            f"{pins.names()} ({pins.where()}), or unset it to fetch them from {pins.source}"
        )
    by_kind = {}
    for pin in pins.files:
        path = directory / pin.file
        try:
            content = path.read_bytes()
        except OSError as error:
            raise SchemaError(
                f"{what}: cannot read {path} ({one_line(error.strerror)}); the directory must "
                f"hold {pins.names()} ({pins.where()})"
            ) from error
        actual = sha256(content)
        if actual != pin.sha256:
            raise SchemaError(
                f"{what}: {path} refused: sha256 {actual}, expected {pin.sha256} "
                f"({pins.where()}); it must be {pin.url}"
            )
        by_kind[pin.kind] = content
    return by_kind


def fetch(pin: Pin, pins: Pins) -> bytes:
    """The bytes at PIN's URL, unverified; SchemaError saying how to work offline."""
    if urllib.parse.urlsplit(pin.url).scheme not in {"http", "https"}:
        raise SchemaError(f"{pin.url}: only http and https URLs are fetched")
    try:
        with urllib.request.urlopen(pin.url, timeout=TIMEOUT_SECONDS) as answer:  # noqa: S310 (scheme checked above)
            content: bytes = answer.read(MAX_BYTES + 1)
    except urllib.error.HTTPError as error:
        reason = f"HTTP {error.code} {error.reason}"
    except urllib.error.URLError as error:
        reason = one_line(error.reason)
    except (OSError, http.client.HTTPException) as error:
        reason = one_line(error) or type(error).__name__
    else:
        if len(content) > MAX_BYTES:
            raise SchemaError(f"{pin.url}: larger than {MAX_BYTES} bytes, refused")
        return content
    raise SchemaError(
        f"cannot fetch the {pins.name} schema {pin.url} ({reason}); without access to it, set "
        f"{pins.variable} to a directory holding copies of {pins.names()} from {pins.source} at "
        f"commit {pins.commit} ({pins.where()})"
    )


def from_cache_or_url(pins: Pins, cache: Path) -> dict[str, bytes]:
    """Each pinned file from CACHE/<commit>/ when it matches, else fetched, verified and cached."""
    by_kind = {}
    for pin in pins.files:
        entry = cache / pins.commit / pin.file
        if entry.is_file():
            content = entry.read_bytes()
            if sha256(content) == pin.sha256:
                by_kind[pin.kind] = content
                continue
            print(
                f"warning: {shown(entry)} has sha256 {sha256(content)}, expected {pin.sha256}: "
                "not used, fetching it again",
                file=sys.stderr,
            )
            entry.unlink()
        content = fetch(pin, pins)
        actual = sha256(content)
        if actual != pin.sha256:
            raise SchemaError(
                f"{pin.url} refused: sha256 {actual}, expected {pin.sha256} ({pins.where()}); "
                "nothing cached"
            )
        entry.parent.mkdir(parents=True, exist_ok=True)
        partial = entry.with_name(f".{entry.name}.{os.getpid()}.partial")
        partial.write_bytes(content)
        partial.replace(entry)
        by_kind[pin.kind] = content
    return by_kind


def verified_schemas(
    pins: Pins | None = None,
    cache: Path = CACHE,
    environ: Mapping[str, str] = os.environ,
) -> Schemas:
    """The pinned schemas of one set, verified: from the lock's committed `directory`, else from
    the directory its `variable` names when set, else from the cache or the URL."""
    pins = pins if pins is not None else load_pins()

    def found(by_kind: dict[str, bytes], origin: str) -> Schemas:
        return Schemas(pins.name, pins.api_version, by_kind, origin)

    if pins.directory:
        return found(from_directory(ROOT / pins.directory, pins, pins.directory), pins.directory)
    configured = environ.get(pins.variable, "")
    if configured:
        directory = ROOT / configured  # an absolute value replaces ROOT
        origin = f"{pins.variable}={configured}"
        return found(from_directory(directory, pins, pins.variable), origin)
    return found(from_cache_or_url(pins, cache), f"{pins.source} at {pins.commit[:12]}")


def main() -> int:
    status = 0
    for lock in LOCKS:
        try:
            schemas = verified_schemas(load_pins(lock))
        except SchemaError as error:
            print(f"error: {error}", file=sys.stderr)
            status = 1
            continue
        kinds = ", ".join(schemas.by_kind)
        print(f"{schemas.name} schemas verified ({kinds}) from {schemas.origin}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
