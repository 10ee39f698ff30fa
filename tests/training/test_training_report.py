"""The pull-request report: params and metrics tables against a base revision, PNG plots offline,
linked next to report.md or, for a report that travels without them, listed with their artifact."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from training_helpers import ROOT, copy_repo, png_size, repro, run, set_param

pytestmark = pytest.mark.integration  # real git and DVC repositories

IMAGE_LINK = re.compile(r"!\[[^\]]*\]\(([^)]+)\)")
LINK_TARGET = re.compile(r"\]\(([^)]+)\)")
RUN_URL = "https://github.com/acme/modelops/actions/runs/42"
PNGS = ["confusion.png", "precision_recall.png", "roc.png"]


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
    set_param(repo, "train.logistic_regression.C", 0.05)
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
    assert rows == [["training/params.yaml", "train.logistic_regression.C", "1.0", "0.05"]]


def test_the_report_says_which_estimator_and_data_ran(changed: tuple[Path, str]) -> None:
    _, report = changed
    model = report.split("### Model", 1)[1].split("###", 1)[0]
    assert table_rows(model, "estimator") == [
        ["estimator", "`logistic_regression`", "`logistic_regression`"]
    ]
    assert table_rows(model, "data") == [
        ["data", "`training/data/breast_cancer.csv`", "`training/data/breast_cancer.csv`"]
    ]
    assert table_rows(model, "classes") == [
        ["classes", "`benign, malignant`", "`benign, malignant`"]
    ]


def test_a_report_on_another_estimator_names_both(base_clone: Path, tmp_path: Path) -> None:
    repo = copy_repo(base_clone, tmp_path / "repo")
    set_param(repo, "train.estimator", "random_forest")
    repro(repo)
    run("python", "-m", "training.report", "--base", "HEAD", "--out", "out/report", cwd=repo)
    report = (repo / "out/report/report.md").read_text()
    assert table_rows(report, "estimator") == [
        ["estimator", "`logistic_regression`", "`random_forest`"]
    ]
    params_rows = {row[1]: row[2:] for row in table_rows(report, "training/params.yaml")}
    assert params_rows["train.estimator"] == ["logistic_regression", "random_forest"]
    assert len(table_rows(report, "training/metrics.json")) == 5


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


def report_with_artifact(repo: Path, out: Path, *options: str) -> str:
    run(
        "python", "-m", "training.report", "--base", "HEAD", "--out", out,
        "--plots-artifact", "training-report", *options,
        cwd=repo,
    )  # fmt: skip
    return (out / "report.md").read_text()


def test_with_an_artifact_the_report_lists_the_plots_and_links_no_local_file(
    base_clone: Path, tmp_path: Path
) -> None:
    report = report_with_artifact(base_clone, tmp_path, "--plots-url", RUN_URL)
    assert IMAGE_LINK.findall(report) == []
    assert LINK_TARGET.findall(report) == [RUN_URL]
    plots = report.split("### Plots", 1)[1]
    where = f"in the artifact `training-report` of [this workflow run]({RUN_URL}):"
    assert f"The plots are PNG files {where}" in plots
    listed = re.findall(r"^- (.+): `([^`]+)`$", plots, re.MULTILINE)
    assert sorted(name for _, name in listed) == PNGS
    assert all(title and not title.endswith(".csv") for title, _ in listed), listed
    assert sorted(p.name for p in tmp_path.glob("*.png")) == PNGS  # still written, for the artifact


def test_with_an_artifact_and_no_url_the_report_names_the_artifact_without_a_link(
    base_clone: Path, tmp_path: Path
) -> None:
    report = report_with_artifact(base_clone, tmp_path)
    assert LINK_TARGET.findall(report) == []
    assert "in the artifact `training-report` of this workflow run:" in report


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            ["--plots-url", RUN_URL],
            "error: --plots-url needs --plots-artifact: the artifact the URL holds",
        ),
        (
            ["--plots-artifact", "plots/png"],
            "error: --plots-artifact must be letters, digits, '.', '_' or '-', got 'plots/png'",
        ),
        (
            ["--plots-artifact", "p", "--plots-url", "https://x/(y)"],
            "error: --plots-url must be an http(s) URL without spaces, brackets or parentheses,"
            " got 'https://x/(y)'",
        ),
        (
            ["--plots-artifact", "p", "--plots-url", "file:///tmp/run"],
            "error: --plots-url must be an http(s) URL without spaces, brackets or parentheses,"
            " got 'file:///tmp/run'",
        ),
    ],
    ids=["url-without-artifact", "artifact-with-slash", "url-with-parenthesis", "not-http"],
)
def test_plots_options_the_report_could_not_carry_fail_in_one_line(
    base_clone: Path, tmp_path: Path, options: list[str], message: str
) -> None:
    result = run(
        "python", "-m", "training.report", "--base", "HEAD", "--out", tmp_path, *options,
        cwd=base_clone, check=False,
    )  # fmt: skip
    assert (result.returncode, result.stderr) == (1, message + "\n")
    assert not (tmp_path / "report.md").exists()


def test_make_report_passes_the_artifact_and_its_url_only_when_given() -> None:
    def dry_run(*variables: str) -> str:
        out = run("make", "-n", "report", "REPORT_BASE=abc", *variables, cwd=ROOT).stdout
        return out.split("training.report", 1)[1].replace("\\\n", " ")

    plain = dry_run()
    given = dry_run("REPORT_ARTIFACT=training-report", f"REPORT_PLOTS_URL={RUN_URL}")
    assert "--plots" not in plain
    assert f'--plots-artifact "training-report" --plots-url "{RUN_URL}"' in " ".join(given.split())


def test_the_model_section_says_the_task_classification_when_params_leave_it_out() -> None:
    from training.report import model_facts

    committed = model_facts((ROOT / "training/params.yaml").read_text())
    assert committed["task"] == "`classification`"
    assert committed["classes"] == "`benign, malignant`"
    regression = model_facts(
        "data: {file: training/data/diabetes.csv, task: regression, target: progression}\n"
        "train: {estimator: ridge}\n"
    )
    assert (regression["task"], regression["classes"]) == ("`regression`", "-")
    assert model_facts(None)["task"] == "-"  # no params file: nothing to default
