#!/usr/bin/env python3
"""Policy checks with checkov: the chart (helm framework) and every rendered overlay (kubernetes).

Zero failed checks are allowed; the few checks skipped are listed in SKIPPED with the reason for
each. Guards against checkov's silent passes: without helm on PATH its helm framework runs nothing
and exits 0, and helm's log lines about the chart's symlinked files (charts/model/files/) make it
drop the chart the same way. So this script requires helm, scans a copy of the chart with the
symlinks resolved, and fails unless each framework reports more than zero passed checks.

usage: scripts/validate-policies.py [--checkov BIN] [--chart DIR] [--overlays DIR...]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CHECKOV = ROOT / ".tools" / "checkov-venv" / "bin" / "checkov"

# check id -> why it does not apply here. Shown in docs/deployment.md too.
SKIPPED_EVERYWHERE = {
    "CKV_K8S_43": "the overlays pin the model server by digest (NAME:SHA@DIGEST); the chart's "
    "defaults and the Nginx sidecar use exact, immutable tags (docs/image.md says how to pin "
    "Nginx's digest)",
    "CKV_K8S_15": "tags are immutable, so IfNotPresent pulls the same bytes as Always without "
    "making every restart depend on the registry (and air-gapped nodes work)",
    "CKV_K8S_8": "the app container listens on a unix socket only; liveness is probed through "
    "the Nginx container (/v2/health/live), which is the only port of the pod",
    "CKV_K8S_9": "the app container listens on a unix socket only; readiness is probed through "
    "the Nginx container (/v2/health/ready), which gates the whole pod",
}
SKIPPED_HELM_ONLY = {
    "CKV_K8S_21": "the chart is namespace-agnostic; the overlays set the namespace, and the "
    "kubernetes-framework run over the rendered overlays checks it",
}


def require_helm() -> None:
    if shutil.which("helm") is None:
        sys.exit(
            "error: helm is not on PATH; checkov's helm framework would silently check nothing"
        )


def checkov(binary: Path, directory: Path, framework: str, skipped: dict[str, str]) -> Any:
    """Run checkov on one directory and framework; its JSON report."""
    try:
        result = subprocess.run(
            [
                str(binary),
                "--directory",
                str(directory),
                "--framework",
                framework,
                "--skip-check",
                ",".join(sorted(skipped)),
                "--skip-download",
                "--output",
                "json",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError as error:
        sys.exit(f"error: cannot run {binary} ({error.strerror}): run make checkov")
    if result.returncode not in {0, 1}:
        sys.exit(f"error: checkov ({framework}) failed to run: {result.stderr.strip()[-300:]}")
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError:
        sys.exit(f"error: checkov ({framework}) printed no report: {result.stdout.strip()[:300]}")


def failures(report: Any, framework: str) -> tuple[int, list[str]]:
    """Passed-check count and one line per failed check."""
    reports = report if isinstance(report, list) else [report]
    passed, failed = 0, []
    for entry in reports:
        if entry.get("check_type") != framework:
            continue
        passed += entry["summary"]["passed"]
        for check in entry["results"]["failed_checks"]:
            failed.append(
                f"{framework}: {check['check_id']} {check['check_name']}: {check['resource']} "
                f"({check['file_path']})"
            )
    return passed, failed


def render_overlays(overlays: list[Path], out: Path) -> None:
    for overlay in overlays:
        rendered = subprocess.run(
            ["kubectl", "kustomize", str(overlay)], capture_output=True, text=True, check=True
        )
        (out / f"{overlay.name}.yaml").write_text(rendered.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkov", type=Path, default=DEFAULT_CHECKOV)
    parser.add_argument("--chart", type=Path, default=ROOT / "charts" / "model")
    parser.add_argument("--overlays", type=Path, nargs="*", default=None)
    args = parser.parse_args(argv)
    require_helm()
    if not args.checkov.exists():
        sys.exit(f"error: checkov not found at {args.checkov} (run: make checkov)")
    overlays = args.overlays
    if overlays is None:
        overlays = sorted(p for p in (ROOT / "kustomize" / "overlays").iterdir() if p.is_dir())
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="modelops-checkov-") as tmp:
        chart = Path(tmp) / "chart" / args.chart.name
        shutil.copytree(args.chart, chart, symlinks=False)
        rendered = Path(tmp) / "rendered"
        rendered.mkdir()
        render_overlays(overlays, rendered)
        runs = [
            ("helm", chart.parent, {**SKIPPED_EVERYWHERE, **SKIPPED_HELM_ONLY}),
            ("kubernetes", rendered, SKIPPED_EVERYWHERE),
        ]
        for framework, directory, skipped in runs:
            passed, failed = failures(
                checkov(args.checkov, directory, framework, skipped), framework
            )
            if passed == 0:
                problems.append(f"{framework}: checkov ran no check at all")
            problems += failed
            print(
                f"checkov {framework}: {passed} passed, {len(failed)} failed, "
                f"{len(skipped)} skipped"
            )
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
