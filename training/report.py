"""The pull-request report: params and metrics diffs against a base revision, and the plots as PNG.

    python -m training.report --base origin/main --out out/report

Writes ``report.md`` (markdown tables from ``dvc params diff --md`` and ``dvc metrics diff --md``)
and one PNG per DVC plot, rendered offline with vl-convert from ``dvc plots diff --json`` (base and
workspace overlaid) and linked from the markdown, so ``cml comment create out/report/report.md``
posts it with its images. Run it from the repository root, after ``dvc repro`` (or on a checkout
whose committed metrics and plots are current).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import vl_convert

from training.errors import StageError, run_stage

#: What a PNG file starts with; checked before a plot is linked.
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def dvc(repo: Path, *args: str) -> str:
    """Run one dvc command in the repository; its stdout, or StageError with dvc's own message."""
    result = subprocess.run(
        [sys.executable, "-m", "dvc", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit code {result.returncode}"
        raise StageError(f"dvc {' '.join(args)} failed: {reason}")
    return result.stdout


def table_rows(markdown: str) -> int:
    """How many data rows a markdown table has (header and rule excluded)."""
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    return max(len(lines) - 2, 0)


def png_name(plot_path: str) -> str:
    """``training/plots/precision_recall.csv`` -> ``precision_recall.png``."""
    stem = Path(plot_path).stem
    return re.sub(r"[^0-9A-Za-z_.-]+", "_", stem) + ".png"


def render_plots(plots_json: dict[str, Any], out: Path) -> list[tuple[str, str]]:
    """Render every vega-lite plot to a PNG in ``out``; (title, file name) per plot."""
    rendered = []
    for plot_path, views in sorted(plots_json.get("data", {}).items()):
        for view in views:
            if view.get("type") != "vega":
                continue
            spec = view["content"]
            png = vl_convert.vegalite_to_png(spec, scale=2)
            if not png.startswith(PNG_SIGNATURE):
                raise StageError(f"vl-convert did not return a PNG for {plot_path}")
            name = png_name(plot_path)
            (out / name).write_bytes(png)
            title = spec.get("title")
            if isinstance(title, dict):
                title = title.get("text")
            rendered.append((str(title or plot_path), name))
    return rendered


def build_report(repo: Path, base: str, out: Path) -> Path:
    """Write report.md and the PNGs into ``out``; return the path of report.md."""
    out.mkdir(parents=True, exist_ok=True)
    params = dvc(repo, "params", "diff", base, "--md")
    metrics = dvc(repo, "metrics", "diff", base, "--md", "--all")
    plots = json.loads(dvc(repo, "plots", "diff", base, "--json"))
    images = render_plots(plots, out)

    lines = [f"## Model report: workspace vs `{base}`", "", "### Parameters", ""]
    if table_rows(params):
        lines += [params.strip(), ""]
    else:
        lines += [f"No parameter changes against `{base}`.", ""]
    lines += ["### Metrics (test split)", ""]
    if table_rows(metrics):
        lines += [metrics.strip(), ""]
    else:
        lines += ["No metrics found (run `dvc repro` first).", ""]
    lines += ["### Plots", ""]
    if not images:
        lines += ["No plots found.", ""]
    for title, name in images:
        lines += [f"#### {title}", "", f"![{title}]({name})", ""]
    report = out / "report.md"
    report.write_text("\n".join(lines), encoding="utf-8")
    return report


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="git revision to compare against")
    parser.add_argument("--out", type=Path, required=True, help="directory for report.md + PNGs")
    parser.add_argument("--repo", type=Path, default=Path(), help="repository root (default: .)")
    args = parser.parse_args(argv)
    report = build_report(args.repo, args.base, args.out)
    print(f"report: {report}")


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
