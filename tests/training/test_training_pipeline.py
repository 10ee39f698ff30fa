"""The DVC pipeline in a fresh clone: reproducibility, what re-runs when, the remote, the gate.

One clone is reproduced once per session (conftest.py); tests that change something work on a
private copy of it, with its own bare origin and DVC remote.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml
from training_helpers import (
    clone,
    commit_if_changed,
    committed,
    copy_repo,
    lock_outputs,
    make_origin,
    origin_of,
    remote_of,
    repro,
    run,
    set_param,
    stages_run,
    tool_env,
)

from training import numerics

pytestmark = pytest.mark.integration  # real git, DVC and GTO repositories

ALL_STAGES = ["prepare", "train", "evaluate", "export"]
SPLITS = ("training/data/train.csv", "training/data/test.csv")
RAW = "training/data/breast_cancer.csv"
PLOTS = (
    "training/plots/roc.csv",
    "training/plots/precision_recall.csv",
    "training/plots/confusion.csv",
)
#: What a repro off the reference CPU level may rewrite: the model's hashes, metrics, curves.
MAY_DIFFER_OFF_REFERENCE = {"training/dvc.lock", "training/metrics.json", *PLOTS[:2]}


def md5_file(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


@pytest.fixture
def repo(reproduced: tuple[Path, list[str]], tmp_path: Path) -> Path:
    """A private copy of the session's reproduced clone."""
    return copy_repo(reproduced[0], tmp_path / "repo")


def test_a_fresh_clone_reruns_every_stage_whose_outputs_it_lacks(
    reproduced: tuple[Path, list[str]],
) -> None:
    """evaluate's outputs (metrics, plot data) are committed to git: it runs again only when the
    model it scores came out different (off the x86-64-v3 kernels), the others always."""
    clone_dir, ran = reproduced
    pipeline = "training/pipeline/model.pkl"
    retrained = lock_outputs((clone_dir / "training/dvc.lock").read_text())[pipeline]
    same_model = retrained == lock_outputs(committed(clone_dir, "training/dvc.lock"))[pipeline]
    assert ran == [stage for stage in ALL_STAGES if stage != "evaluate" or not same_model]
    assert (clone_dir / "training/pipeline/model.pkl").is_file()
    served = sorted(p.name for p in (clone_dir / "training/model").iterdir())
    assert served == ["metadata.json", "model.onnx", "profile.json", "verification.json"]


def test_a_fresh_repro_gives_the_committed_bytes_where_the_numerics_are_pinned(
    reproduced: tuple[Path, list[str]],
) -> None:
    clone_dir, _ = reproduced
    produced = lock_outputs((clone_dir / "training/dvc.lock").read_text())
    expected = lock_outputs(committed(clone_dir, "training/dvc.lock"))
    # prepare is plain pandas and CSV: its splits are the same bytes on every machine.
    assert {p: produced[p] for p in SPLITS} == {p: expected[p] for p in SPLITS}
    changed = run("git", "status", "--porcelain", cwd=clone_dir).stdout.splitlines()
    diff = run("git", "diff", "--stat", cwd=clone_dir).stdout
    card = json.loads((clone_dir / "training/model/metadata.json").read_text())
    if numerics.on_reference_level():
        # Every x86-64-v3 CPU runs the same kernels: dvc.lock, metrics and plots byte for byte.
        assert card["numerics"] == numerics.REFERENCE_LEVEL
        assert changed == [], f"a fresh repro changed committed files (stale? make train):\n{diff}"
    else:
        # Elsewhere only the model's last bits may differ (docs/training.md); the next test
        # checks that the model is equivalent.
        assert card["numerics"].startswith("native ")
        assert {line[3:] for line in changed} <= MAY_DIFFER_OFF_REFERENCE, diff


def test_a_model_trained_on_other_kernels_predicts_the_same_and_scores_within_tolerance(
    reproduced: tuple[Path, list[str]], tmp_path: Path
) -> None:
    """What another CPU trains: here the stage modules run unpinned, on OpenBLAS's Sandybridge
    kernels where this CPU can run them (any x86-64-v3 CPU can), else on the native ones."""
    clone_dir, _ = reproduced
    env = tool_env()
    if numerics.on_reference_level():
        env.update(OPENBLAS_CORETYPE="Sandybridge", OPENBLAS_NUM_THREADS="2")
    model_dir, plots, pipeline = tmp_path / "model", tmp_path / "plots", tmp_path / "model.pkl"
    stage_args = [
        ("train", "--data", "training/data/train.csv", "--model", pipeline),
        (
            "evaluate", "--test", "training/data/test.csv", "--model", pipeline,
            "--metrics", tmp_path / "metrics.json", "--plots", plots,
        ),
        (
            "export", "--pipeline", pipeline, "--train", "training/data/train.csv",
            "--test", "training/data/test.csv", "--metrics", tmp_path / "metrics.json",
            "--out", model_dir,
        ),
    ]  # fmt: skip
    for stage, *args in stage_args:
        run(
            "python", "-m", f"training.{stage}", "--params", "training/params.yaml", *args,
            cwd=clone_dir, env=env,
        )  # fmt: skip
    card = json.loads((model_dir / "metadata.json").read_text())
    assert card["numerics"].startswith("native ")
    if numerics.on_reference_level():
        assert "Sandybridge" in card["numerics"]
        pinned = (clone_dir / "training/pipeline/model.pkl").read_bytes()
        assert pipeline.read_bytes() != pinned, "the kernel made no difference"
    # The same label for every test row ...
    confusion = committed(clone_dir, "training/plots/confusion.csv")
    assert (plots / "confusion.csv").read_text() == confusion
    # ... and every metric within the stated tolerance of the committed one.
    got = json.loads((tmp_path / "metrics.json").read_text())
    want = json.loads(committed(clone_dir, "training/metrics.json"))
    assert got.keys() == want.keys()
    for name, value in want.items():
        assert got[name] == pytest.approx(value, abs=numerics.METRIC_TOLERANCE), name


def test_two_fresh_clones_on_one_machine_train_the_same_bytes(
    reproduced: tuple[Path, list[str]], tmp_path: Path
) -> None:
    first, _ = reproduced
    second = clone(make_origin(tmp_path), tmp_path / "clone", tmp_path / "dvc-remote")
    assert stages_run(repro(second)) == reproduced[1]
    assert (second / "training/dvc.lock").read_text() == (first / "training/dvc.lock").read_text()
    served = [f"training/model/{name}" for name in ("metadata.json", "model.onnx")]
    for name in ("training/metrics.json", *PLOTS, "training/pipeline/model.pkl", *served):
        assert (second / name).read_bytes() == (first / name).read_bytes(), name


def test_a_fresh_clone_of_the_origin_pulls_exactly_what_dvc_lock_names(
    repo: Path, tmp_path: Path
) -> None:
    commit_if_changed(repo, "train: reproduce on this machine")
    run("dvc", "push", cwd=repo)
    run("git", "push", "-q", "origin", "HEAD:main", cwd=repo)
    fresh = clone(origin_of(repo), tmp_path / "fresh", remote_of(repo), restore=False)
    assert not (fresh / "training/model").exists()
    assert not (fresh / RAW).exists()
    run("dvc", "pull", cwd=fresh)
    assert md5_file(fresh / RAW) == md5_file(repo / RAW)  # the raw data went to the remote too
    recorded = lock_outputs(committed(fresh, "training/dvc.lock"))
    files = {path: md5 for path, md5 in recorded.items() if not md5.endswith(".dir")}
    assert {path: md5_file(fresh / path) for path in files} == files
    # The artifact directory: dvc status (below) checks each file against the .dir listing.
    assert all((fresh / path).is_dir() for path in recorded.keys() - files.keys())
    assert run("dvc", "status", cwd=fresh).stdout.strip() == "Data and pipelines are up to date."


def test_a_second_repro_runs_no_stage(repo: Path) -> None:
    result = repro(repo)
    assert stages_run(result) == []
    assert "Data and pipelines are up to date" in result.stdout


def test_bytecode_caches_in_the_families_directory_change_no_dependency(repo: Path) -> None:
    """Python writes __pycache__ into training/families (a directory train and export depend on)
    when a stage imports it, with this machine's timestamps: .dvcignore keeps it out of the
    directory's hash. Without that line the same clone re-runs both stages."""
    cache = repo / "training/families/__pycache__"
    cache.mkdir(exist_ok=True)
    (cache / "logistic_regression.cpython-311.pyc").write_bytes(b"written on another machine")
    assert stages_run(repro(repo)) == []
    ignore = repo / ".dvcignore"
    ignore.write_text(ignore.read_text().replace("__pycache__/\n", ""))
    assert stages_run(repro(repo)) == ["train", "export"]


def test_changing_a_param_reruns_train_and_later_stages_only(repo: Path) -> None:
    set_param(repo, "train.logistic_regression.C", 0.5)
    assert stages_run(repro(repo)) == ["train", "evaluate", "export"]
    card = json.loads((repo / "training/model/metadata.json").read_text())
    assert card["params"]["C"] == 0.5
    assert card["estimator"] == "logistic_regression"


def test_changing_an_estimator_that_is_not_chosen_reruns_nothing(repo: Path) -> None:
    set_param(repo, "train.random_forest.n_estimators", 7)
    assert stages_run(repro(repo)) == []


def test_a_new_data_version_reruns_every_stage_and_the_old_one_comes_back_with_its_dvc_file(
    repo: Path,
) -> None:
    """A data version is a commit of the raw file's .dvc file: dvc add, dvc repro, commit."""
    raw = repo / RAW
    lines = raw.read_text().splitlines(keepends=True)
    raw.write_text("".join(lines[:-40]))  # a version with 40 rows fewer
    run("dvc", "add", RAW, cwd=repo)
    assert stages_run(repro(repo)) == ALL_STAGES
    card = json.loads((repo / "training/model/metadata.json").read_text())
    assert card["data"]["train_rows"] + card["data"]["test_rows"] == 569 - 40
    run("git", "commit", "-q", "-am", "data: 40 rows fewer", cwd=repo)
    # Back to the first version: its .dvc file, then dvc checkout and repro (from the run cache).
    run("git", "checkout", "-q", "HEAD~1", "--", f"{RAW}.dvc", cwd=repo)
    run("dvc", "checkout", f"{RAW}.dvc", cwd=repo)
    assert md5_file(raw) == lock_dvc_md5(repo)
    repro(repo)
    produced = lock_outputs((repo / "training/dvc.lock").read_text())
    assert produced == lock_outputs(committed(repo, "training/dvc.lock", "HEAD~1"))


def lock_dvc_md5(repo: Path) -> str:
    text = (repo / f"{RAW}.dvc").read_text()
    return next(line.split()[-1] for line in text.splitlines() if "md5:" in line)


def test_bad_data_fails_prepare_in_one_line_naming_the_column_and_writes_no_split(
    repo: Path,
) -> None:
    raw = repo / RAW
    raw.write_text(raw.read_text().replace(",benign\n", ",healthy\n", 1))
    result = repro(repo, check=False)
    assert result.returncode != 0
    ours = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert ours == [
        f"error: {RAW}: column 'diagnosis': label 'healthy' in line 21 is not in data.classes "
        "(benign, malignant)"
    ]
    assert not (repo / "training/data/train.csv").exists()
    assert not (repo / "training/data/test.csv").exists()


def test_changing_the_split_reruns_from_prepare(repo: Path) -> None:
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
    # A model that fails the gate is never exported, so nothing can serve it; export run by hand
    # refuses it too.
    exported = run(
        "python", "-m", "training", "export", "--params", "training/params.yaml",
        "--pipeline", "training/pipeline/model.pkl", "--train", "training/data/train.csv",
        "--test", "training/data/test.csv", "--metrics", "training/metrics.json",
        "--out", "training/model", cwd=repo, check=False,
    )  # fmt: skip
    assert exported.returncode == 1
    assert exported.stderr.splitlines() == [
        "error: training/metrics.json is below evaluate.thresholds for recall: only a model that "
        "passed the quality gate is exported"
    ]


def test_a_wrong_type_fails_the_stage_with_one_line_naming_the_key(repo: Path) -> None:
    set_param(repo, "train.logistic_regression.C", "abc")
    result = repro(repo, check=False)
    assert result.returncode != 0
    ours = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert ours == [
        "error: training/params.yaml: train.logistic_regression.C must be a number, got 'abc'"
    ]


def test_a_missing_key_fails_the_stage_with_one_line_naming_the_key(repo: Path) -> None:
    set_param(repo, "prepare.seed", None)
    result = repro(repo, check=False)
    assert result.returncode != 0
    # DVC checks the params it tracks before running the stage, in one line of its own.
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line or "error" in line]
    assert len(errors) == 1
    assert "prepare.seed" in errors[0]
    assert stages_run(result) == []


@pytest.mark.parametrize(
    ("stage", "key", "value", "message"),
    [
        (
            "train",
            "train.logistic_regression.max_iter",
            None,
            "train.logistic_regression.max_iter is missing",
        ),
        ("train", "train.estimator", "svm", "train.estimator must be one of hist_gradient"),
        ("train", "train.random_forest.n_jobs", 2, "train.random_forest.n_jobs is not a known"),
        (
            "prepare",
            "data.target",
            "label",
            "error: training/data/breast_cancer.csv: column 'label'",
        ),
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
        "train": ["--data", "training/data/train.csv", "--model", "training/pipeline/model.pkl"],
        "evaluate": [
            "--test", "training/data/test.csv", "--model", "training/pipeline/model.pkl",
            "--metrics", "training/metrics.json", "--plots", "training/plots",
        ],
    }[stage]  # fmt: skip
    result = run(
        "python", "-m", f"training.{stage}", "--params", "training/params.yaml", *args,
        cwd=repo, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("error: training/")
    assert message in result.stderr


def test_an_experiment_with_a_set_param_is_listed_by_exp_show(repo: Path) -> None:
    result = run(
        "dvc", "exp", "run", "-S", "train.logistic_regression.C=0.25", "--name", "lower-c",
        cwd=repo / "training",
    )  # fmt: skip
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
    assert (
        exp["params"]["training/params.yaml"]["data"]["train"]["logistic_regression"]["C"] == 0.25
    )
    assert 0 < exp["metrics"]["training/metrics.json"]["data"]["roc_auc"] <= 1


@pytest.mark.parametrize("estimator", ["random_forest", "hist_gradient_boosting"])
def test_an_experiment_switches_the_estimator_with_one_set_param(
    repo: Path, estimator: str
) -> None:
    result = run("dvc", "exp", "run", "-S", f"train.estimator={estimator}", cwd=repo / "training")
    assert "Ran experiment(s):" in result.stdout
    assert stages_run(result) == ["train", "evaluate", "export"]
    card = json.loads((repo / "training/model/metadata.json").read_text())
    assert card["estimator"] == estimator
    assert card["params"]["random_state"] == 42
    # Served as an ONNX graph proven on the test split and 10,000 generated rows.
    assert card["format"] == "onnx" and card["model_file"] == "model.onnx"
    assert card["proof"]["generated_rows"] >= 10_000
    assert card["proof"]["largest_difference"] <= card["proof"]["tolerance"] == 1e-6
    lock = yaml.safe_load((repo / "training/dvc.lock").read_text())
    tracked = lock["stages"]["train"]["params"]["training/params.yaml"]
    assert tracked["train.estimator"] == estimator and f"train.{estimator}" in tracked
    metrics = json.loads((repo / "training/metrics.json").read_text())
    assert metrics.keys() == {"accuracy", "precision", "recall", "f1", "roc_auc"}
