"""The DVC pipeline in a fresh clone: reproducibility, what re-runs when, the remote, the gate.

One clone is reproduced once per session (conftest.py); tests that change something work on a
private copy of it, with its own bare origin and DVC remote.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from training_helpers import (
    copy_repo,
    repro,
    run,
    set_param,
    stages_run,
)

ALL_STAGES = ["prepare", "train", "evaluate"]


@pytest.fixture
def repo(reproduced: tuple[Path, list[str]], tmp_path: Path) -> Path:
    """A private copy of the session's reproduced clone."""
    return copy_repo(reproduced[0], tmp_path / "repo")


def test_a_fresh_clone_reproduces_the_committed_results_exactly(
    reproduced: tuple[Path, list[str]],
) -> None:
    clone_dir, ran = reproduced
    assert ran == ALL_STAGES
    # dvc.lock, metrics.json and the plot data are committed: a deterministic pipeline
    # regenerates them byte for byte.
    status = run("git", "status", "--porcelain", cwd=clone_dir).stdout
    diff = run("git", "diff", "--stat", cwd=clone_dir).stdout
    assert status == "", f"a fresh repro changed committed files (stale? run make train):\n{diff}"
    for name in ("model.pkl", "metadata.json"):
        assert (clone_dir / "training" / "model" / name).is_file()


def test_a_second_repro_runs_no_stage(repo: Path) -> None:
    result = repro(repo)
    assert stages_run(result) == []
    assert "Data and pipelines are up to date" in result.stdout


def test_changing_a_param_reruns_train_and_evaluate_only(repo: Path) -> None:
    set_param(repo, "train.C", 0.5)
    assert stages_run(repro(repo)) == ["train", "evaluate"]
    card = json.loads((repo / "training/model/metadata.json").read_text())
    assert card["params"]["C"] == 0.5


def test_changing_the_data_reruns_from_prepare(repo: Path) -> None:
    before = (repo / "training/data/train.csv").read_bytes()
    set_param(repo, "prepare.test_size", 0.25)
    assert stages_run(repro(repo)) == ALL_STAGES
    assert (repo / "training/data/train.csv").read_bytes() != before
    card = json.loads((repo / "training/model/metadata.json").read_text())
    assert card["data"]["test_rows"] == 143  # 25% of 569, rounded up by scikit-learn


def test_changing_a_stage_script_reruns_that_stage(repo: Path) -> None:
    with (repo / "training/evaluate.py").open("a") as script:
        script.write("\n# a change to the evaluate stage's own code\n")
    assert stages_run(repro(repo)) == ["evaluate"]


def test_push_then_pull_into_an_empty_cache_gives_byte_identical_outputs(repo: Path) -> None:
    outputs = [
        "training/model/model.pkl",
        "training/model/metadata.json",
        "training/data/train.csv",
    ]
    original = {name: (repo / name).read_bytes() for name in outputs}
    run("dvc", "push", cwd=repo)
    run("rm", "-rf", ".dvc/cache", "training/model", "training/data", cwd=repo)
    assert not (repo / "training/model").exists()
    run("dvc", "pull", cwd=repo)
    assert {name: (repo / name).read_bytes() for name in outputs} == original


def test_the_quality_gate_fails_the_run_and_names_the_metric(repo: Path) -> None:
    recall = json.loads((repo / "training/metrics.json").read_text())["recall"]
    assert recall < 0.999
    set_param(repo, "evaluate.thresholds.recall", 0.999)
    result = repro(repo, check=False)
    assert result.returncode != 0
    assert stages_run(result) == ["evaluate"]
    gate_lines = [line for line in result.stderr.splitlines() if "quality gate" in line]
    assert gate_lines == [
        f"error: quality gate failed: recall {recall:.4f} < 0.999 (evaluate.thresholds.recall)"
    ]
    # A model that fails the gate gets no model card, so nothing can serve it.
    assert not (repo / "training/model/metadata.json").exists()


def test_a_wrong_type_fails_the_stage_with_one_line_naming_the_key(repo: Path) -> None:
    set_param(repo, "train.C", "abc")
    result = repro(repo, check=False)
    assert result.returncode != 0
    ours = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert ours == ["error: training/params.yaml: train.C must be a number, got 'abc'"]


def test_a_missing_key_fails_the_stage_with_one_line_naming_the_key(repo: Path) -> None:
    set_param(repo, "train.max_iter", None)
    result = repro(repo, check=False)
    assert result.returncode != 0
    # DVC checks the params it tracks before running the stage, in one line of its own.
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line or "error" in line]
    assert len(errors) == 1
    assert "train.max_iter" in errors[0]
    assert stages_run(result) == []


@pytest.mark.parametrize(
    ("stage", "key", "value", "message"),
    [
        ("train", "train.max_iter", None, "train.max_iter is missing"),
        ("train", "train.solver", "sag", "train.solver must be one of lbfgs"),
        ("prepare", "prepare.seed", 1.5, "prepare.seed must be an integer, got 1.5"),
        ("evaluate", "evaluate.thresholds.roc_auc", 2, "evaluate.thresholds.roc_auc must be in"),
    ],
)
def test_a_stage_script_run_directly_rejects_bad_params_in_one_line(
    repo: Path, stage: str, key: str, value: object, message: str
) -> None:
    set_param(repo, key, value)
    args = {
        "prepare": ["--out", "training/data"],
        "train": ["--data", "training/data/train.csv", "--model", "training/model/model.pkl"],
        "evaluate": [
            "--train", "training/data/train.csv", "--test", "training/data/test.csv",
            "--model-dir", "training/model", "--metrics", "training/metrics.json",
            "--plots", "training/plots",
        ],
    }[stage]  # fmt: skip
    result = run(
        "python", "-m", f"training.{stage}", "--params", "training/params.yaml", *args,
        cwd=repo, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("error: training/params.yaml: ")
    assert message in result.stderr


def test_an_experiment_with_a_set_param_is_listed_by_exp_show(repo: Path) -> None:
    result = run(
        "dvc", "exp", "run", "-S", "train.C=0.25", "--name", "lower-c", cwd=repo / "training"
    )
    assert "Ran experiment(s): lower-c" in result.stdout
    shown = json.loads(run("dvc", "exp", "show", "--json", cwd=repo).stdout)
    experiments = [
        exp["data"]
        for commit in shown
        for exp in (commit.get("experiments") or [])
        for exp in exp["revs"]
        if exp.get("name") == "lower-c"
    ]
    assert len(experiments) == 1
    exp = experiments[0]
    assert exp["params"]["training/params.yaml"]["data"]["train"]["C"] == 0.25
    assert 0 < exp["metrics"]["training/metrics.json"]["data"]["roc_auc"] <= 1
