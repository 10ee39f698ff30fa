"""The training demo: a sandbox that registers and assigns dev, never tagging the user's clone."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from training_helpers import ARTIFACT, make_source_repo, run, tool_env

import modelcard
from training import numerics
from training.remote import missing_from_remote

pytestmark = pytest.mark.integration  # real git, DVC and GTO repositories


def read_env(path: Path) -> dict[str, str]:
    """Parse model.env the way a POSIX shell would (``set -a; . model.env``)."""
    values = {}
    for line in path.read_text().splitlines():
        key, _, raw = line.partition("=")
        (values[key],) = shlex.split(raw)
    return values


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """The user's clone (a committed source repo), the sandbox, and the first run's output."""
    tmp = tmp_path_factory.mktemp("demo")
    user = make_source_repo(tmp / "user")
    (user / "uncommitted.txt").write_text("not part of the demo\n")
    out = tmp / "out"
    result = run("python", "-m", "training.demo", "--repo", user, "--out", out, cwd=tmp)
    return user, out, result.stdout


def test_it_prints_metrics_version_and_stage(demo: tuple[Path, Path, str]) -> None:
    _, _, stdout = demo
    assert "| training/metrics.json |" in stdout
    assert f"{ARTIFACT} v0.0.1 is in stage dev" in stdout


def test_it_writes_a_sourceable_env_for_the_fetched_verified_model(
    demo: tuple[Path, Path, str],
) -> None:
    user, out, _ = demo
    env = read_env(out / "model.env")
    head = run("git", "rev-parse", "HEAD", cwd=user).stdout.strip()
    assert env["MODELOPS_MODEL_NAME"] == ARTIFACT
    assert env["MODELOPS_MODEL_VERSION"] == "v0.0.1"
    assert env["MODELOPS_MODEL_STAGE"] == "dev"
    # The registered commit is the user's HEAD when its dvc.lock reproduced here (always on an
    # x86-64-v3 CPU); otherwise the sandbox committed this machine's dvc.lock on top of it.
    registered = env["MODELOPS_GIT_COMMIT"]
    if numerics.on_reference_level():
        assert registered == head
    elif registered != head:
        assert run("git", "rev-parse", f"{registered}^", cwd=out / "repo").stdout.strip() == head
    assert Path(env["MODELOPS_MODEL_DIR"]) == out / "model"
    card = modelcard.load(out / "model")
    assert env["MODELOPS_MODEL_SHA256"] == card["model_sha256"]
    # The same bytes the sandbox trained.
    trained = out / "repo/training/model/model.onnx"
    assert (out / "model/model.onnx").read_bytes() == trained.read_bytes()
    shell = run("sh", "-c", '. ./model.env && printf %s "$MODELOPS_MODEL_STAGE"', cwd=out)
    assert shell.stdout == "dev"


def test_tags_go_to_the_sandbox_origin_never_to_the_users_clone(
    demo: tuple[Path, Path, str],
) -> None:
    user, out, _ = demo
    assert run("git", "tag", cwd=user).stdout == ""
    origin_tags = run("git", "tag", cwd=out / "origin.git").stdout.split()
    assert sorted(origin_tags) == [f"{ARTIFACT}#dev#1", f"{ARTIFACT}@v0.0.1"]
    assert not (out / "repo/uncommitted.txt").exists()


def test_the_sandbox_remote_holds_every_output_a_tag_names(demo: tuple[Path, Path, str]) -> None:
    _, out, _ = demo
    assert missing_from_remote(out / "repo", tool_env()) == {}


def test_rerunning_recreates_the_sandbox(demo: tuple[Path, Path, str]) -> None:
    user, out, _ = demo
    first = read_env(out / "model.env")
    (out / "repo" / "leftover").write_text("from the first run\n")
    run("python", "-m", "training.demo", "--repo", user, "--out", out, cwd=out.parent)
    assert not (out / "repo" / "leftover").exists()
    assert read_env(out / "model.env") == first  # same commit, same version, same model
