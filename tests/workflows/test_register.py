"""gitops.register: register only a changed model with GTO, assign the stage, push the tags.

A real git repository with a real DVC pipeline (one stage writing training/model), a bare origin
and a local DVC remote, in temp dirs; real gto. Each test starts from a copy of one repository
built once for the module.
"""

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from workflow_helpers import REPO, git, run_step, run_tool, tool_env

from training.params import load_artifact

pytestmark = pytest.mark.integration  # real git, DVC and GTO repositories

NAME = load_artifact().name  # the default of gitops.register --name
# The shape of the real pipeline (training/dvc.yaml): stages run from the repository root
# (wdir: ..) and the model directory is made of two outputs of two stages.
DVC_YAML = f"""\
stages:
  train:
    wdir: ..
    cmd: python training/train.py
    deps:
    - training/train.py
    - training/seed.txt
    outs:
    - training/model/model.pkl
  evaluate:
    wdir: ..
    cmd: python training/evaluate.py
    deps:
    - training/evaluate.py
    - training/model/model.pkl
    outs:
    - training/model/metadata.json
artifacts:
  {NAME}:
    path: model
    type: model
"""
TRAIN = """\
from pathlib import Path

Path("training/model").mkdir(exist_ok=True)
seed = Path("training/seed.txt").read_text()
Path("training/model/model.pkl").write_text("weights for seed " + seed)
"""
EVALUATE = """\
import hashlib
from pathlib import Path

digest = hashlib.sha256(Path("training/model/model.pkl").read_bytes()).hexdigest()
Path("training/model/metadata.json").write_text('{"model_sha256": "' + digest + '"}')
"""


def sh(cwd: Path, *args: str) -> str:
    """Run a tool (dvc, gto) in CWD and return its stdout."""
    result = subprocess.run(args, cwd=cwd, env=tool_env(), capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(args)}: {result.stderr}"
    return result.stdout


def commit_all(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message)


def retrain(repo: Path, message: str) -> None:
    """dvc repro, push the outputs to the DVC remote, commit dvc.lock (the developer's part)."""
    sh(repo / "training", "dvc", "repro", "-q")
    sh(repo, "dvc", "push", "-q")
    commit_all(repo, message)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("register")
    repo = root / "work"
    (repo / "training").mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.name", "test")
    git(repo, "config", "user.email", "test@example.org")
    sh(repo, "dvc", "init", "-q")
    sh(repo, "dvc", "remote", "add", "-d", "local", str(root / "dvc-remote"))
    (repo / "training" / "dvc.yaml").write_text(DVC_YAML)
    (repo / "training" / "train.py").write_text(TRAIN)
    (repo / "training" / "evaluate.py").write_text(EVALUATE)
    (repo / "training" / "seed.txt").write_text("1\n")
    retrain(repo, "first model")
    return root


@pytest.fixture
def repo(template: Path, tmp_path: Path) -> Iterator[Path]:
    """A copy of the template repository with an empty bare origin."""
    shutil.copytree(template, tmp_path, dirs_exist_ok=True)
    git(tmp_path, "init", "-q", "--bare", "origin.git")
    git(tmp_path / "work", "remote", "add", "origin", str(tmp_path / "origin.git"))
    yield tmp_path / "work"


def register(repo: Path, stage: str, *args: str) -> dict[str, str]:
    out = run_tool("register", stage, *args, cwd=repo).stdout
    return dict(line.split("=", 1) for line in out.splitlines())


def test_the_first_registration_makes_v0_1_0_and_assigns_dev(repo: Path) -> None:
    result = register(repo, "dev")
    assert result == {
        "version": "v0.1.0",
        "registered": "true",
        "assigned": "true",
        "model_ref": f"{NAME}#dev#1",
        "tags": f"{NAME}@v0.1.0 {NAME}#dev#1",
    }
    assert sh(repo, "gto", "show", f"{NAME}#dev", "--ref").strip() == f"{NAME}@v0.1.0"
    head = git(repo, "rev-parse", "HEAD").strip()
    assert git(repo, "rev-list", "-n1", f"{NAME}@v0.1.0").strip() == head


def test_it_pushes_exactly_the_tags_it_created(repo: Path) -> None:
    result = register(repo, "dev", "--push", "origin")
    remote_tags = {
        line.split("refs/tags/")[1]
        for line in git(repo, "ls-remote", "--tags", "origin").splitlines()
        if not line.endswith("^{}")
    }
    assert remote_tags == set(result["tags"].split()) == {f"{NAME}@v0.1.0", f"{NAME}#dev#1"}


def test_a_merge_that_keeps_the_model_assigns_the_registered_version(repo: Path) -> None:
    register(repo, "dev")
    (repo / "README.md").write_text("code changed, model not\n")
    commit_all(repo, "docs")
    (repo / "training" / "train.py").write_text(TRAIN + "# a refactor: same output\n")
    retrain(repo, "refactor the training script")
    result = register(repo, "staging")
    assert result["registered"] == "false"
    assert result["version"] == "v0.1.0"
    assert result["tags"] == result["model_ref"]
    checked = json.loads(sh(repo, "gto", "check-ref", result["model_ref"], "--json"))
    assert (checked["version"], checked["stage"]) == ("v0.1.0", "staging")
    assert git(repo, "tag", "--list", f"{NAME}@*").split() == [f"{NAME}@v0.1.0"]


def test_running_it_again_creates_nothing(repo: Path) -> None:
    first = register(repo, "prod")
    again = register(repo, "prod")
    assert again == {**first, "registered": "false", "assigned": "false", "tags": ""}


def test_dvc_get_by_the_model_ref_fetches_the_registered_model(repo: Path, tmp_path: Path) -> None:
    result = register(repo, "dev", "--push", "origin")
    git(repo, "push", "-q", "origin", "main")
    out = tmp_path / "fetched"
    sh(
        tmp_path,
        "dvc",
        "get",
        str(repo.parent / "origin.git"),
        "training/model",
        "--rev",
        result["model_ref"],
        "-o",
        str(out),
    )
    assert (out / "model.pkl").read_text() == "weights for seed 1\n"


def test_it_refuses_a_commit_without_a_recorded_model_with_one_line(repo: Path) -> None:
    git(repo, "rm", "-q", "training/dvc.lock")
    git(repo, "commit", "-qm", "drop the lock")
    result = run_tool("register", "dev", cwd=repo, check=False)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: no dvc.lock at HEAD records training/model: dvc repro, commit dvc.lock"
    ]
    assert git(repo, "tag", "--list") == ""


def test_it_refuses_an_unknown_stage_with_one_line(repo: Path) -> None:
    result = run_tool("register", "qa", cwd=repo, check=False)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1
    assert "invalid choice: 'qa'" in result.stderr


def merge(repo: Path, source: str, target: str) -> None:
    """Merge SOURCE into TARGET with a merge commit, as a merged pull request does."""
    git(repo, "switch", "-q", target)
    git(repo, "merge", "-q", "--no-ff", "-m", f"Merge {source} into {target}", source)


def stage_version(repo: Path, stage: str) -> str:
    return sh(repo, "gto", "show", f"{NAME}#{stage}", "--ref").strip()


def test_a_model_travels_experiment_main_staging_production_as_one_version(repo: Path) -> None:
    git(repo, "branch", "staging")
    git(repo, "branch", "production")
    git(repo, "switch", "-q", "-c", "experiment/seed-2")
    (repo / "training" / "seed.txt").write_text("2\n")
    retrain(repo, "experiment: seed 2")
    registered = []
    for source, branch in [
        ("experiment/seed-2", "main"),
        ("main", "staging"),
        ("staging", "production"),
    ]:
        merge(repo, source, branch)  # the branch order is gitops.check_pr_order's (elsewhere)
        stage = run_tool("stage_for_branch", branch).stdout.strip()
        result = register(repo, stage, "--push", "origin")
        registered.append(result["registered"])
        assert result["version"] == "v0.1.0"
        assert stage_version(repo, stage) == f"{NAME}@v0.1.0"
    assert registered == ["true", "false", "false"]
    # The next experiment reaches dev only; staging and production keep the version they have.
    git(repo, "switch", "-q", "-c", "experiment/seed-3", "main")
    (repo / "training" / "seed.txt").write_text("3\n")
    retrain(repo, "experiment: seed 3")
    merge(repo, "experiment/seed-3", "main")
    assert register(repo, "dev", "--push", "origin")["version"] == "v0.2.0"
    assert [stage_version(repo, s) for s in ("dev", "staging", "prod")] == [
        f"{NAME}@v0.2.0",
        f"{NAME}@v0.1.0",
        f"{NAME}@v0.1.0",
    ]
    local = set(git(repo, "tag", "--list").split())
    remote = {
        line.split("refs/tags/")[1]
        for line in git(repo, "ls-remote", "--tags", "origin").splitlines()
        if not line.endswith("^{}")
    }
    assert remote == local


def test_it_registers_the_model_the_repository_itself_records(tmp_path: Path) -> None:
    """Contract with training/: the committed training/dvc.lock records training/model."""
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", "--no-local", str(REPO), str(clone))
    git(clone, "config", "user.name", "test")
    git(clone, "config", "user.email", "test@example.org")
    result = register(clone, "dev")
    checked = json.loads(sh(clone, "gto", "check-ref", result["model_ref"], "--json"))
    assert (checked["artifact"], checked["stage"]) == (NAME, "dev")
    assert checked["version"] == result["version"]


def run_dvc_step(cwd: Path, workflow: str, step_name: str) -> subprocess.CompletedProcess[str]:
    """Run a workflow step's script in CWD, in the shell GitHub uses."""
    return run_step(workflow, step_name, cwd, tool_env())


def test_the_workflows_dvc_steps_work_on_a_fresh_clone_and_catch_an_unpushed_model(
    repo: Path, tmp_path: Path
) -> None:
    clone = tmp_path / "clone"
    git(repo, "push", "-q", "origin", "main")
    git(tmp_path, "clone", "-q", "-b", "main", str(repo.parent / "origin.git"), str(clone))
    check = run_dvc_step(clone, "promote.yml", "Check the DVC remote holds the pipeline's outputs")
    assert check.returncode == 0, check.stderr
    assert (clone / "training/model/model.pkl").read_text() == "weights for seed 1\n"
    report = run_dvc_step(clone, "training-report.yml", "dvc pull, dvc repro")
    assert report.returncode == 0, report.stderr
    assert git(clone, "status", "--porcelain") == ""

    # A model committed but never pushed to the remote: the check fails before any tag is made.
    (repo / "training" / "seed.txt").write_text("9\n")
    sh(repo / "training", "dvc", "repro", "-q")
    commit_all(repo, "retrained, not pushed")
    git(repo, "push", "-q", "origin", "main")
    git(clone, "pull", "-q")
    shutil.rmtree(clone / ".dvc" / "cache", ignore_errors=True)
    unpushed = run_dvc_step(
        clone, "promote.yml", "Check the DVC remote holds the pipeline's outputs"
    )
    assert unpushed.returncode != 0
    assert "training/model/model.pkl" in unpushed.stderr + unpushed.stdout
