"""One training/dvc.yaml for either task: `dvc repro` of a regression example in a fresh clone.

evaluate's output is the directory training/plots/ (a classification writes its three curves'
files, a regression its two), so the diabetes example reproduces with the dvc.yaml the bundled
classification uses. Beside it, the defect it replaces: the evaluate stage that declared the
classification's plot files fails that same repro after evaluate has run.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from training_helpers import clone, make_origin, repro, run, stages_run, switch_to_example

pytestmark = pytest.mark.integration  # real git and DVC

#: The evaluate outputs training/dvc.yaml declared before it declared the directory.
CLASSIFICATION_PLOTS = ["roc.csv", "precision_recall.csv", "confusion.csv"]


def declare_classification_plots(repo: Path) -> None:
    """The old evaluate stage: the classification's three plot files as its plots."""
    path = repo / "training/dvc.yaml"
    document = yaml.safe_load(path.read_text())
    evaluate = document["stages"]["evaluate"]
    del evaluate["outs"]
    evaluate["plots"] = [
        {f"training/plots/{name}": {"cache": False}} for name in CLASSIFICATION_PLOTS
    ]
    path.write_text(yaml.safe_dump(document, sort_keys=False))


def test_the_same_dvc_yaml_reproduces_a_regression_the_classification_plots_one_did_not(
    tmp_path: Path,
) -> None:
    repo = clone(make_origin(tmp_path), tmp_path / "clone", tmp_path / "dvc-remote")
    switch_to_example(repo, "diabetes")
    declare_classification_plots(repo)
    failed = repro(repo, check=False)
    assert failed.returncode != 0
    assert re.search(r"training/plots/(roc|precision_recall|confusion)\.csv' does not exist",
                     failed.stderr), failed.stderr  # fmt: skip
    run("git", "checkout", "--", "training/dvc.yaml", cwd=repo)
    done = repro(repo)
    assert stages_run(done)[-2:] == ["evaluate", "export"]
    written = sorted(p.name for p in (repo / "training/plots").iterdir())
    assert written == ["predicted_actual.csv", "residuals.csv"]
    assert run("dvc", "status", "training/dvc.yaml", cwd=repo).stdout.strip() == (
        "Data and pipelines are up to date."
    )
