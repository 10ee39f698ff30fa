#!/usr/bin/env python3
"""Validate the deployment offline: Kubernetes, Argo CD and Prometheus Operator schemas, duplicate
YAML keys.

- every YAML file under kustomize/ and argocd/, and every --files file, parses with duplicate
  mapping keys rejected; each --files file is read once (`--files /dev/stdin` after a pipe is how
  `make validate` feeds each chart scenario's render) and must hold at least one resource;
- every overlay's `kubectl kustomize` output and every --files document validates strictly (unknown
  fields are errors) against the Kubernetes schemas of KUBERNETES_VERSIONS (kubernetes-validate,
  bundled schemas, offline); a Prometheus Operator ServiceMonitor or PrometheusRule instead against
  its CRD schema (Draft 4, as kubeconform does), pinned in scripts/prometheus-operator-schemas.lock;
- the default run checks each overlay twice: as it is, and with its monitoring Component on
  (gitops.monitoring.monitored_copy, in a temporary copy: the ServiceMonitor, the PrometheusRule
  and the retraining relay, kustomize/monitoring/relay); `--monitored DIR...` names such overlays;
- `kubectl kustomize argocd` validates against the Argo CD CRD schemas (Draft 4): the files
  pinned by sha256 in scripts/argocd-schemas.lock (from $MODELOPS_ARGOCD_SCHEMAS when set, else
  the cache or the URL); its one core object (the notifications ConfigMap) strictly against the
  Kubernetes schemas, as the overlays are. scripts/crd_schemas.py obtains and verifies both sets.

Prints one line per failure and exits 1 when anything failed.

usage: scripts/validate-manifests.py [--overlays DIR...] [--monitored DIR...] [--argocd DIR]
                                    [--files FILE...] [--argocd-lock FILE]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import crd_schemas
import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate  # type: ignore[import-untyped]
import yaml

ROOT = Path(__file__).resolve().parent.parent
if (
    str(ROOT) not in sys.path
):  # run as `python scripts/validate-manifests.py`: the checkout's gitops
    sys.path.insert(0, str(ROOT))
from gitops import monitoring as monitoring_component  # noqa: E402

KUBERNETES_VERSIONS = ("1.35.0", "1.36.0", "1.37.0")


class UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a mapping with the same key twice (YAML 1.2 forbids it)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_documents(text: str, origin: str) -> list[dict[str, Any]]:
    """The non-empty documents of a YAML stream, duplicate keys rejected."""
    try:
        docs = list(yaml.load_all(text, Loader=UniqueKeyLoader))
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ValueError(f"{origin}:{where}: {error.problem}") from error
    except yaml.YAMLError as error:
        raise ValueError(f"{origin}: {' '.join(str(error).split())}") from error
    return [doc for doc in docs if doc is not None]


def kustomize(directory: Path) -> str:
    """`kubectl kustomize DIR`, or ValueError with kubectl's message."""
    result = subprocess.run(
        ["kubectl", "kustomize", str(directory)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise ValueError(f"{directory}: kubectl kustomize failed: {result.stderr.strip()}")
    return result.stdout


def describe(doc: dict[str, Any]) -> str:
    return f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"


def kubernetes_errors(
    docs: list[dict[str, Any]], origin: str, crds: crd_schemas.Schemas | None = None
) -> Iterator[str]:
    """Strict validation of each document against each Kubernetes version; a document of one of
    CRDS' kinds against that CRD schema instead."""
    for doc in docs:
        if crds is not None and doc.get("apiVersion") == crds.api_version:
            yield from crd_errors([doc], origin, crds)
            continue
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                path = ".".join(str(p) for p in error.path)
                where = f"{origin}: {describe(doc)}"
                yield f"{where} invalid for Kubernetes {version}: {path}: {error.message}"
            except (
                kubernetes_validate.SchemaNotFoundError,
                kubernetes_validate.InvalidSchemaError,
            ):
                yield f"{origin}: {describe(doc)}: no Kubernetes {version} schema for this kind"


def crd_errors(
    docs: list[dict[str, Any]], origin: str, schemas: crd_schemas.Schemas
) -> Iterator[str]:
    """Validation of custom resources against one set of pinned CRD schemas (Draft 4, as
    kubeconform does); a document of another API version or kind is an error naming the kinds."""
    for doc in docs:
        schema = schemas.by_kind.get(str(doc.get("kind")))
        if doc.get("apiVersion") != schemas.api_version or schema is None:
            kinds = ", ".join(schemas.by_kind)
            yield (
                f"{origin}: {describe(doc)} is not a {schemas.name} {schemas.api_version} "
                f"resource ({kinds})"
            )
            continue
        validator = jsonschema.Draft4Validator(json.loads(schema))
        for error in sorted(validator.iter_errors(doc), key=lambda e: list(e.path)):
            path = ".".join(str(p) for p in error.path)
            yield f"{origin}: {describe(doc)}: {path}: {error.message}"


def yaml_files(directories: list[Path]) -> Iterator[Path]:
    for directory in directories:
        yield from sorted(directory.rglob("*.yaml"))


def run(
    overlays: list[Path],
    argocd: Path | None,
    files: list[Path],
    lock: Path = crd_schemas.LOCK,
    monitoring_lock: Path = crd_schemas.LOCKS[1],
    monitored: list[Path] | None = None,
) -> list[str]:
    """Every failure, one line each. Each of FILES is read exactly once: it may be a pipe.
    MONITORED: overlays with their monitoring Component on (its kinds checked against the pinned
    Prometheus Operator schemas)."""
    failures: list[str] = []
    monitored = monitored or []
    sources = [*overlays, *([argocd] if argocd else [])]
    for path in yaml_files(sources):
        try:
            load_documents(path.read_text(), str(path))
        except ValueError as error:
            failures.append(str(error))
    monitoring: crd_schemas.Schemas | None = None
    if files or monitored:
        try:
            monitoring = crd_schemas.verified_schemas(crd_schemas.load_pins(monitoring_lock))
        except crd_schemas.SchemaError as error:
            failures.append(str(error))
    for path in files:
        try:
            docs = load_documents(path.read_text(), str(path))
        except (OSError, ValueError) as error:
            failures.append(str(error))
            continue
        if not docs:
            failures.append(f"{path}: holds no resource (did the render before the pipe fail?)")
        failures += kubernetes_errors(docs, str(path), monitoring)
    for overlay in overlays:
        try:
            docs = load_documents(kustomize(overlay), str(overlay))
        except ValueError as error:
            failures.append(str(error))
            continue
        if not docs:
            failures.append(f"{overlay}: renders no resources")
        failures += kubernetes_errors(docs, str(overlay))
    for overlay in monitored:
        try:
            docs = load_documents(kustomize(overlay), f"{overlay.name} (monitoring on)")
        except ValueError as error:
            failures.append(str(error))
            continue
        failures += kubernetes_errors(docs, f"{overlay.name} (monitoring on)", monitoring)
    if argocd is not None:
        try:
            schemas = crd_schemas.verified_schemas(crd_schemas.load_pins(lock))
            docs = load_documents(kustomize(argocd), str(argocd))
            # Argo CD's kinds against its CRD schemas, its notifications ConfigMap against
            # Kubernetes'.
            failures += kubernetes_errors(docs, str(argocd), schemas)
        except (crd_schemas.SchemaError, ValueError) as error:
            failures.append(str(error))
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--overlays", type=Path, nargs="*", default=None)
    parser.add_argument("--monitored", type=Path, nargs="*", default=[])
    parser.add_argument("--argocd", type=Path, default=None)
    parser.add_argument("--files", type=Path, nargs="*", default=[])
    parser.add_argument("--argocd-lock", type=Path, default=crd_schemas.LOCK)
    args = parser.parse_args(argv)
    default_run = (
        args.overlays is None and args.argocd is None and not args.files and not args.monitored
    )
    overlays = args.overlays or []
    if default_run:
        overlays = sorted(p for p in (ROOT / "kustomize" / "overlays").iterdir() if p.is_dir())
    argocd = ROOT / "argocd" if default_run else args.argocd
    with tempfile.TemporaryDirectory(prefix="modelops-monitored-") as tmp:
        monitored = args.monitored
        if default_run:
            monitored = monitoring_component.monitored_copy(ROOT, Path(tmp))
        failures = run(overlays, argocd, args.files, args.argocd_lock, monitored=monitored)
    for failure in failures:
        print(f"error: {failure}", file=sys.stderr)
    checked = ", ".join(KUBERNETES_VERSIONS)
    if failures:
        print(f"{len(failures)} validation failure(s)", file=sys.stderr)
        return 1
    checked_what = [f"{len(overlays)} overlay(s)"] if overlays else []
    checked_what += [f"{len(monitored)} with monitoring on"] if monitored else []
    checked_what += [f"{len(args.files)} file(s)"] if args.files else []
    print(f"valid: {', '.join(checked_what) or 'no manifest'} against Kubernetes {checked}", end="")
    print(
        f"; Argo CD: {argocd.relative_to(ROOT) if argocd.is_relative_to(ROOT) else argocd}"
        if argocd
        else ""
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
