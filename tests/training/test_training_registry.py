"""The GTO registry on a real repository: versions, stages, and fetching a model by its tag.

One repository per module registers two versions (the second trained with another C), assigns dev
to both in turn and staging to the second, and pushes the tags to a bare origin. The model is then
fetched from that bare origin by every tag, as the image build will.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from training_helpers import (
    ARTIFACT,
    commit_if_changed,
    copy_repo,
    origin_of,
    remote_of,
    repro,
    run,
    set_param,
    tool_env,
)

import modelcard
from training.errors import StageError
from training.remote import missing_from_remote, require_all_in_remote

pytestmark = pytest.mark.integration  # real git, DVC and GTO repositories

MODEL_FILES = ("metadata.json", "model.onnx", "profile.json", "verification.json")


@dataclass
class Registry:
    repo: Path
    origin: Path
    remote: Path
    models: dict[str, dict[str, bytes]]  # version -> file name -> bytes


def snapshot(repo: Path) -> dict[str, bytes]:
    return {name: (repo / "training/model" / name).read_bytes() for name in MODEL_FILES}


@pytest.fixture(scope="module")
def registry(
    reproduced: tuple[Path, list[str]], tmp_path_factory: pytest.TempPathFactory
) -> Registry:
    repo = copy_repo(reproduced[0], tmp_path_factory.mktemp("registry") / "clone")
    origin, remote = origin_of(repo), remote_of(repo)
    # A team commits its shared remote, so a bare clone alone is enough for `dvc get`.
    run("dvc", "remote", "add", "--default", "storage", remote, cwd=repo)
    run("git", "commit", "-q", "-m", "dvc: shared remote", ".dvc/config", cwd=repo)

    repro(repo)
    # Register what this machine trained: off the reference CPU level (training/numerics.py) the
    # model's bytes differ from the committed dvc.lock, whose objects no remote here holds.
    commit_if_changed(repo, "train: reproduce on this machine")
    run("dvc", "push", cwd=repo)
    run("gto", "register", ARTIFACT, cwd=repo)
    run("gto", "assign", ARTIFACT, "--version", "v0.0.1", "--stage", "dev", cwd=repo)
    v1 = snapshot(repo)

    set_param(repo, "train.logistic_regression.C", 0.1)
    repro(repo)
    run("git", "commit", "-q", "-am", "train: logistic_regression.C=0.1", cwd=repo)
    run("dvc", "push", cwd=repo)
    run("gto", "register", ARTIFACT, cwd=repo)
    run("gto", "assign", ARTIFACT, "--version", "v0.0.2", "--stage", "dev", cwd=repo)
    run("gto", "assign", ARTIFACT, "--version", "v0.0.2", "--stage", "staging", cwd=repo)
    v2 = snapshot(repo)
    require_all_in_remote(repo, tool_env())
    run("git", "push", "-q", "origin", "main", "--tags", cwd=repo)
    return Registry(repo, origin, remote, {"v0.0.1": v1, "v0.0.2": v2})


def test_the_two_trainings_gave_two_different_models(registry: Registry) -> None:
    assert registry.models["v0.0.1"]["model.onnx"] != registry.models["v0.0.2"]["model.onnx"]


def test_register_and_assign_create_the_documented_tags_on_the_origin(registry: Registry) -> None:
    listed = run("git", "ls-remote", "--tags", registry.origin, cwd=registry.repo).stdout
    tags = {line.split("refs/tags/")[1] for line in listed.splitlines() if "^{}" not in line}
    # N counts every assignment of the artifact, whatever the stage.
    assert tags == {
        f"{ARTIFACT}@v0.0.1",
        f"{ARTIFACT}@v0.0.2",
        f"{ARTIFACT}#dev#1",
        f"{ARTIFACT}#dev#2",
        f"{ARTIFACT}#staging#3",
    }


def test_the_remote_holds_every_output_a_tag_names(registry: Registry) -> None:
    assert missing_from_remote(registry.repo, tool_env()) == {}


def test_a_tag_naming_outputs_the_remote_lacks_is_reported_by_path(
    registry: Registry, tmp_path: Path
) -> None:
    repo = copy_repo(registry.repo, tmp_path / "repo")  # its own, empty remote
    missing = missing_from_remote(repo, tool_env())
    assert {"training/pipeline/model.pkl", "training/model"} <= missing.keys()
    with pytest.raises(StageError, match=r"lacks outputs a tag names: .*model\.pkl \(new\)"):
        require_all_in_remote(repo, tool_env())


def test_register_twice_gives_two_ordered_versions(registry: Registry) -> None:
    shown = json.loads(run("gto", "show", ARTIFACT, "--json", cwd=registry.repo).stdout)
    assert [v["version"] for v in shown] == ["v0.0.2", "v0.0.1"]
    latest = run("gto", "show", f"{ARTIFACT}@latest", "--version", cwd=registry.repo).stdout
    assert latest.strip() == "v0.0.2"


def test_gto_show_in_a_fresh_clone_reports_the_stages(registry: Registry, tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    run("git", "clone", "-q", registry.origin, fresh, cwd=tmp_path)
    summary = json.loads(run("gto", "show", "--json", cwd=fresh).stdout)
    assert summary[ARTIFACT]["version"] == "v0.0.2"
    assert summary[ARTIFACT]["stage"] == {"dev": "v0.0.2", "staging": "v0.0.2"}
    for stage in ("dev", "staging"):
        ref = run("gto", "show", f"{ARTIFACT}#{stage}", "--ref", cwd=fresh).stdout.strip()
        assert ref == f"{ARTIFACT}@v0.0.2"
    event = json.loads(run("gto", "check-ref", f"{ARTIFACT}#dev#1", "--json", cwd=fresh).stdout)
    assert (event["version"], event["stage"], event["event"]) == ("v0.0.1", "dev", "assignment")


@pytest.mark.parametrize(
    ("tag", "version"),
    [
        (f"{ARTIFACT}@v0.0.1", "v0.0.1"),
        (f"{ARTIFACT}@v0.0.2", "v0.0.2"),
        (f"{ARTIFACT}#dev#1", "v0.0.1"),
        (f"{ARTIFACT}#dev#2", "v0.0.2"),
        (f"{ARTIFACT}#staging#3", "v0.0.2"),
    ],
)
def test_dvc_get_by_tag_from_the_bare_origin_returns_that_model(
    registry: Registry, tmp_path: Path, tag: str, version: str
) -> None:
    out = tmp_path / "model"
    run("dvc", "get", registry.origin, "training/model", "--rev", tag, "-o", out, cwd=tmp_path)
    assert sorted(p.name for p in out.iterdir()) == sorted(MODEL_FILES)
    got = {name: (out / name).read_bytes() for name in MODEL_FILES}
    assert got == registry.models[version]
    assert modelcard.load(out)["model_sha256"]


def test_dvc_get_with_the_remote_mounted_elsewhere(registry: Registry, tmp_path: Path) -> None:
    """The image build's form: the remote is reachable at another path than the committed one."""
    mounted = shutil.copytree(registry.remote, tmp_path / "mounted-remote")
    out = tmp_path / "model"
    run(
        "dvc", "get", registry.origin, "training/model", "--rev", f"{ARTIFACT}#staging#3",
        "-o", out, "--remote-config", f"url={mounted}",
        cwd=tmp_path,
    )  # fmt: skip
    assert {name: (out / name).read_bytes() for name in MODEL_FILES} == registry.models["v0.0.2"]


def test_dvc_get_fails_clearly_for_an_unknown_tag(registry: Registry, tmp_path: Path) -> None:
    result = run(
        "dvc", "get", registry.origin, "training/model", "--rev", f"{ARTIFACT}@v9.9.9",
        "-o", tmp_path / "model", cwd=tmp_path, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "v9.9.9" in result.stderr
    assert not (tmp_path / "model").exists()
