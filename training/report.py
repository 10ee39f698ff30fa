"""The pull-request report: params and metrics diffs against a base revision, and the plots as PNG.

    python -m training.report --base origin/main --out out/report
    python -m training.report --base origin/main --out out/report \\
        --plots-artifact training-report --plots-url https://github.com/OWNER/REPO/actions/runs/ID

Called by ``make report`` (mk/training.mk), locally and in .github/workflows/training-report.yml.
Writes ``report.md`` (which estimator and which data ran, base against workspace, from
training/params.yaml; markdown tables from ``dvc params diff --md`` and ``dvc metrics diff --md``)
and one PNG per DVC plot into OUT, rendered offline with vl-convert from ``dvc plots diff --json``
(base and workspace overlaid). Run it from the repository root, after ``dvc repro`` (or on a
checkout whose committed metrics and plots are current).

How report.md refers to the PNGs: without ``--plots-artifact`` it links them as images next to it
(``![ROC curve](roc.png)``), for reading it where it was written. With ``--plots-artifact NAME``,
for a report that travels without its PNGs (CI posts the markdown as a pull-request comment and
keeps OUT as the workflow run's artifact NAME), report.md links no local file: it lists each plot's
file name and names the artifact that holds them, linked to ``--plots-url`` (the workflow run) when
given. Any failure is one line on stderr and exit status 1, and no report.md is written.
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
import yaml

from training.errors import StageError, run_stage

#: What a PNG file starts with; checked before a plot is linked.
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: An artifact name --plots-artifact accepts (a subset of what actions/upload-artifact allows).
ARTIFACT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
PARAMS = "training/params.yaml"
#: What the Model section shows of params.yaml: (row title, dotted key).
MODEL_ROWS = (
    ("estimator", "train.estimator"),
    ("data", "data.file"),
    ("task", "data.task"),
    ("classes", "data.classes"),
    ("artifact", "artifact.name"),
)
#: What a key MODEL_ROWS names means when a params file with its section leaves it out.
DEFAULTS = {"data.task": "classification"}
#: A URL --plots-url accepts: http(s), and nothing that would end a markdown link early.
PLOTS_URL = re.compile(r"https?://[^\s()<>\[\]]+")


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


def model_facts(text: str | None) -> dict[str, str]:
    """What MODEL_ROWS names, read from a params.yaml text (``-`` for what it does not hold)."""
    try:
        document = yaml.safe_load(text or "")
    except yaml.YAMLError:
        document = None
    facts = {}
    for title, dotted in MODEL_ROWS:
        node: Any = document
        for key in dotted.split("."):
            parent, node = node, node.get(key) if isinstance(node, dict) else None
        if node is None and isinstance(parent, dict):
            node = DEFAULTS.get(dotted)
        if isinstance(node, list):
            node = ", ".join(str(item) for item in node)
        facts[title] = f"`{node}`" if isinstance(node, str | int | float) and node != "" else "-"
    return facts


def model_section(repo: Path, base: str) -> list[str]:
    """The report's Model section: estimator, data, task, classes, artifact; base and
    workspace."""
    shown = subprocess.run(
        ["git", "show", f"{base}:{PARAMS}"], cwd=repo, capture_output=True, text=True, check=False
    )
    before = model_facts(shown.stdout if shown.returncode == 0 else None)
    path = repo / PARAMS
    now = model_facts(path.read_text(encoding="utf-8") if path.is_file() else None)
    lines = ["### Model", "", f"| | `{base}` | workspace |", "|---|---|---|"]
    for title, _ in MODEL_ROWS:
        lines.append(f"| {title} | {before[title]} | {now[title]} |")
    return [*lines, ""]


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


def plots_section(
    images: list[tuple[str, str]], artifact: str | None, url: str | None
) -> list[str]:
    """The lines of the report's Plots section for the rendered IMAGES (title, file name).

    Without ARTIFACT, each plot is an image link to its PNG next to report.md. With ARTIFACT, no
    link to a local file at all: a sentence naming the artifact (linked to URL when given), then
    one list item per plot with its file name."""
    lines = ["### Plots", ""]
    if not images:
        return [*lines, "No plots found.", ""]
    if artifact is None:
        for title, name in images:
            lines += [f"#### {title}", "", f"![{title}]({name})", ""]
        return lines
    run = f"[this workflow run]({url})" if url else "this workflow run"
    lines += [f"The plots are PNG files in the artifact `{artifact}` of {run}:", ""]
    lines += [f"- {title}: `{name}`" for title, name in images]
    return [*lines, ""]


def check_plots_options(artifact: str | None, url: str | None) -> None:
    """Refuse --plots-artifact/--plots-url values report.md could not carry, in one line each."""
    if url is not None and artifact is None:
        raise StageError("--plots-url needs --plots-artifact: the artifact the URL holds")
    if artifact is not None and not ARTIFACT_NAME.fullmatch(artifact):
        raise StageError(
            f"--plots-artifact must be letters, digits, '.', '_' or '-', got {artifact!r}"
        )
    if url is not None and not PLOTS_URL.fullmatch(url):
        raise StageError(
            "--plots-url must be an http(s) URL without spaces, brackets or parentheses,"
            f" got {url!r}"
        )


def build_report(
    repo: Path,
    base: str,
    out: Path,
    *,
    plots_artifact: str | None = None,
    plots_url: str | None = None,
) -> Path:
    """Write report.md and the PNGs into ``out``; return the path of report.md.

    PLOTS_ARTIFACT and PLOTS_URL say where a reader finds the PNGs (``plots_section``)."""
    check_plots_options(plots_artifact, plots_url)
    out.mkdir(parents=True, exist_ok=True)
    params = dvc(repo, "params", "diff", base, "--md")
    metrics = dvc(repo, "metrics", "diff", base, "--md", "--all")
    plots = json.loads(dvc(repo, "plots", "diff", base, "--json"))
    images = render_plots(plots, out)

    lines = [f"## Model report: workspace vs `{base}`", "", *model_section(repo, base)]
    lines += ["### Parameters", ""]
    if table_rows(params):
        lines += [params.strip(), ""]
    else:
        lines += [f"No parameter changes against `{base}`.", ""]
    lines += ["### Metrics (test split)", ""]
    if table_rows(metrics):
        lines += [metrics.strip(), ""]
    else:
        lines += ["No metrics found (run `dvc repro` first).", ""]
    lines += plots_section(images, plots_artifact, plots_url)
    report = out / "report.md"
    report.write_text("\n".join(lines), encoding="utf-8")
    return report


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="git revision to compare against")
    parser.add_argument("--out", type=Path, required=True, help="directory for report.md + PNGs")
    parser.add_argument("--repo", type=Path, default=Path(), help="repository root (default: .)")
    parser.add_argument(
        "--plots-artifact",
        metavar="NAME",
        help="the PNGs are published as the CI artifact NAME: list them, link no local file",
    )
    parser.add_argument(
        "--plots-url", metavar="URL", help="where that artifact is (the workflow run's page)"
    )
    args = parser.parse_args(argv)
    report = build_report(
        args.repo, args.base, args.out, plots_artifact=args.plots_artifact, plots_url=args.plots_url
    )
    print(f"report: {report}")


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
