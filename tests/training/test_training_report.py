"""The pull-request report: params and metrics tables against a base revision, PNG plots offline."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from training_helpers import copy_repo, png_size, repro, run, set_param

pytestmark = pytest.mark.integration  # real git and DVC repositories

IMAGE_LINK = re.compile(r"!\[[^\]]*\]\(([^)]+)\)")


@pytest.fixture(scope="module")
def base_clone(
    reproduced: tuple[Path, list[str]], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A reproduced clone whose workspace equals its HEAD (the base of the report)."""
    return copy_repo(reproduced[0], tmp_path_factory.mktemp("report") / "clone")


@pytest.fixture(scope="module")
def changed(base_clone: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A copy trained with another C, and the report it writes against HEAD."""
    repo = copy_repo(base_clone, tmp_path_factory.mktemp("changed") / "repo")
    set_param(repo, "train.C", 0.05)
    repro(repo)
    run("python", "-m", "training.report", "--base", "HEAD", "--out", "out/report", cwd=repo)
    return repo, (repo / "out/report/report.md").read_text()


def table_rows(markdown: str, first_cell: str) -> list[list[str]]:
    rows = []
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            rows.append(cells)
    return rows


def test_the_report_has_the_params_diff_table(changed: tuple[Path, str]) -> None:
    _, report = changed
    assert "| Path" in report and "| Param" in report
    rows = table_rows(report, "training/params.yaml")
    assert rows == [["training/params.yaml", "train.C", "1.0", "0.05"]]


def test_the_report_has_the_metrics_diff_table(changed: tuple[Path, str]) -> None:
    _, report = changed
    rows = table_rows(report, "training/metrics.json")
    assert sorted(r[1] for r in rows) == ["accuracy", "f1", "precision", "recall", "roc_auc"]
    for _, metric, base, new, change in rows:
        assert 0 < float(base) <= 1 and 0 < float(new) <= 1, metric
        assert change == "-" or abs(float(new) - float(base) - float(change)) < 1e-4


def test_the_report_links_png_plots_that_decode(changed: tuple[Path, str]) -> None:
    repo, report = changed
    links = IMAGE_LINK.findall(report)
    assert sorted(links) == ["confusion.png", "precision_recall.png", "roc.png"]
    for link in links:
        width, height = png_size((repo / "out/report" / link).read_bytes())
        assert width > 200 and height > 200, link


def test_without_changes_the_report_says_so(base_clone: Path, tmp_path: Path) -> None:
    run("python", "-m", "training.report", "--base", "HEAD", "--out", tmp_path, cwd=base_clone)
    report = (tmp_path / "report.md").read_text()
    assert "No parameter changes against `HEAD`." in report
    assert len(table_rows(report, "training/metrics.json")) == 5


def test_an_unknown_base_revision_fails_in_one_line(base_clone: Path, tmp_path: Path) -> None:
    result = run(
        "python", "-m", "training.report", "--base", "no-such-rev", "--out", tmp_path,
        cwd=base_clone, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("error: dvc params diff no-such-rev")
    assert not (tmp_path / "report.md").exists()
