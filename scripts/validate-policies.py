#!/usr/bin/env python3
"""Policy checks with checkov (kubernetes framework) on the chart and on the deployed manifests.

Two runs, zero failed checks allowed in each:

- chart: `helm template` of charts/model with each render scenario, `ci/*-values.yaml`. Each
  scenario is a release, pinning the model server image by digest as every deployment does; the
  chart's defaults cannot (no digest exists before an image is built), which is why the chart is
  not checked through checkov's helm framework, whose only render is the defaults.
- manifests: what Argo CD applies, each `rendered/<env>/manifests.yaml` present on this branch,
  and the `kubectl kustomize` output of every overlay (what a promotion renders onto the other
  environments' branches), as it is and, in the default run (or with `--monitored DIR...`), with
  its monitoring Component on (gitops.monitoring.monitored_copy: the retraining relay's
  Deployment is checked too).

The few checks skipped are listed in SKIPPED_EVERYWHERE (none: each container has its own
liveness and readiness probes, CKV_K8S_8/9) and SKIPPED_CHART_ONLY with the reason for each;
image digests (CKV_K8S_43) and pull policy Always (CKV_K8S_15) are checked everywhere.
Guards against silent passes: helm must be on PATH (without it nothing of the chart is checked),
and each run must report more than zero passed checks.

usage: scripts/validate-policies.py [--checkov BIN] [--chart DIR] [--overlays DIR...]
                                    [--monitored DIR...] [--rendered FILE...]
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
if str(ROOT) not in sys.path:  # run as `python scripts/validate-policies.py`: the checkout's gitops
    sys.path.insert(0, str(ROOT))
from gitops import monitoring  # noqa: E402

DEFAULT_CHECKOV = ROOT / ".tools" / "checkov-venv" / "bin" / "checkov"
RELEASE = "model"

# check id -> why it does not apply here. Shown in docs/deployment.md too.
SKIPPED_EVERYWHERE: dict[str, str] = {}
SKIPPED_CHART_ONLY = {
    "CKV_K8S_21": "the chart is namespace-agnostic; the overlays set the namespace, and the "
    "manifests run checks it",
}


def require_helm() -> str:
    helm = shutil.which("helm")
    if helm is None:
        sys.exit("error: helm is not on PATH; the chart cannot be rendered for checkov")
    return helm


def checkov(binary: Path, directory: Path, skipped: dict[str, str]) -> Any:
    """checkov's kubernetes framework on one directory; its JSON report."""
    try:
        result = subprocess.run(
            [
                str(binary),
                "--directory",
                str(directory),
                "--framework",
                "kubernetes",
                *(["--skip-check", ",".join(sorted(skipped))] if skipped else []),
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
        sys.exit(f"error: checkov ({directory.name}) failed to run: {result.stderr.strip()[-300:]}")
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError:
        sys.exit(f"error: checkov ({directory.name}) printed no report: {result.stdout[:300]}")


def failures(report: Any, label: str) -> tuple[int, list[str]]:
    """Passed-check count and one line per failed check."""
    reports = report if isinstance(report, list) else [report]
    passed, failed = 0, []
    for entry in reports:
        if entry.get("check_type") != "kubernetes":
            continue
        passed += entry["summary"]["passed"]
        for check in entry["results"]["failed_checks"]:
            failed.append(
                f"{label}: {check['check_id']} {check['check_name']}: {check['resource']} "
                f"({check['file_path'].lstrip('/')})"
            )
    return passed, failed


def render_chart(helm: str, chart: Path, out: Path) -> list[str]:
    """`helm template` of each ci/*-values.yaml scenario (helm tests included) into OUT."""
    scenarios = sorted((chart / "ci").glob("*-values.yaml"))
    if not scenarios:
        sys.exit(f"error: {chart}/ci has no *-values.yaml scenario to check")
    for values in scenarios:
        result = subprocess.run(
            [helm, "template", RELEASE, str(chart), "-f", str(values)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            sys.exit(f"error: helm template -f {values.name} failed: {result.stderr.strip()}")
        (out / f"chart-{values.name}").write_text(result.stdout)
    return [f"ci/{values.name}" for values in scenarios]


def gather_manifests(
    rendered: list[Path], overlays: list[Path], out: Path, monitored: list[Path] | None = None
) -> list[str]:
    """The rendered files as they are and each overlay's `kubectl kustomize` output, into OUT;
    MONITORED: overlays with their monitoring Component on, likewise."""
    names = []
    for path in rendered:
        env = path.parent.name
        shutil.copyfile(path, out / f"rendered-{env}.yaml")
        names.append(f"rendered/{env}/{path.name}")
    for prefix, group in (("overlay", overlays), ("monitored", monitored or [])):
        for overlay in group:
            result = subprocess.run(
                ["kubectl", "kustomize", str(overlay)], capture_output=True, text=True, check=False
            )
            if result.returncode != 0:
                sys.exit(f"error: kubectl kustomize {overlay} failed: {result.stderr.strip()}")
            (out / f"{prefix}-{overlay.name}.yaml").write_text(result.stdout)
    if overlays:
        names.append("overlays " + ", ".join(overlay.name for overlay in overlays))
    if monitored:
        names.append("monitoring on " + ", ".join(overlay.name for overlay in monitored))
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkov", type=Path, default=DEFAULT_CHECKOV)
    parser.add_argument("--chart", type=Path, default=ROOT / "charts" / "model")
    parser.add_argument("--overlays", type=Path, nargs="*", default=None)
    parser.add_argument("--monitored", type=Path, nargs="*", default=None)
    parser.add_argument("--rendered", type=Path, nargs="*", default=None)
    args = parser.parse_args(argv)
    helm = require_helm()
    if not args.checkov.exists():
        sys.exit(f"error: checkov not found at {args.checkov} (run: make checkov)")
    overlays = args.overlays
    if overlays is None:
        overlays = sorted(p for p in (ROOT / "kustomize" / "overlays").iterdir() if p.is_dir())
    rendered = args.rendered
    if rendered is None:
        rendered = sorted((ROOT / "rendered").glob("*/manifests.yaml"))
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="modelops-checkov-") as tmp:
        chart_dir, manifests_dir = Path(tmp) / "chart", Path(tmp) / "manifests"
        chart_dir.mkdir()
        manifests_dir.mkdir()
        monitored = args.monitored
        if monitored is None:  # the default run: the repository's overlays, monitoring on too
            default_run = args.overlays is None and args.rendered is None
            monitored = (
                monitoring.monitored_copy(ROOT, Path(tmp) / "monitored") if default_run else []
            )
        runs = [
            (
                "chart",
                render_chart(helm, args.chart, chart_dir),
                chart_dir,
                {**SKIPPED_EVERYWHERE, **SKIPPED_CHART_ONLY},
            ),
            (
                "manifests",
                gather_manifests(rendered, overlays, manifests_dir, monitored),
                manifests_dir,
                SKIPPED_EVERYWHERE,
            ),
        ]
        for label, sources, directory, skipped in runs:
            if not sources:
                problems.append(f"{label}: nothing to check")
                continue
            passed, failed = failures(checkov(args.checkov, directory, skipped), label)
            if passed == 0:
                problems.append(f"{label}: checkov ran no check at all")
            problems += failed
            print(
                f"checkov {label} ({'; '.join(sources)}): {passed} passed, {len(failed)} failed, "
                f"{len(skipped)} skipped"
            )
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
