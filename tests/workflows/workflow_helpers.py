"""Helpers for the CI/CD workflow tests: where the repository is and how to run its tools.

The gitops commands run as the workflows run them: ``python -m gitops.<command>``, with
.tools/bin and .venv/bin first on PATH (make sets that up; these helpers do the same when pytest
is started directly) and this checkout's gitops package importable from any directory.
"""

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml

from gitops import environments

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / ".github" / "workflows"
#: The dev overlay's image name as the repository ships it (the locally built image).
SHIPPED_IMAGE = "localhost/modelops/model-server"


def tool_env(**extra: str) -> dict[str, str]:
    """The environment make gives recipes: pinned tools first on PATH, no analytics."""
    path = os.pathsep.join([str(REPO / ".tools" / "bin"), str(REPO / ".venv" / "bin")])
    env = dict(os.environ, PATH=f"{path}{os.pathsep}{os.environ['PATH']}")
    # `python -m gitops.<command>` from any directory imports this checkout's package.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env.update(DVC_NO_ANALYTICS="1", GTO_NO_ANALYTICS="1", **extra)
    return env


def run_tool(
    command: str,
    *args: str,
    cwd: Path | None = None,
    check: bool = True,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m gitops.COMMAND ARGS`` (INPUT_TEXT on stdin); with check, a non-zero exit
    fails the test with its stderr."""
    result = subprocess.run(
        ["python", "-m", f"gitops.{command}", *args],
        input=input_text,
        cwd=cwd,
        env=tool_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"gitops.{command} {' '.join(args)} exited {result.returncode}: {result.stderr}"
        )
    return result


def git(repo: Path, *args: str) -> str:
    """Run git in REPO and return its stdout."""
    return subprocess.run(
        ["git", *args], cwd=repo, env=tool_env(), capture_output=True, text=True, check=True
    ).stdout


def set_up_as_a_fork(work: Path, registry: str, evidence_toml: str) -> str:
    """What a fork commits on main before it deploys its own images (docs/workflow.md, "Setting
    it up in a fork"): the dev overlay pulls from REGISTRY (the variable IMAGE_REGISTRY), the
    rendered files made again, and evidence.toml as EVIDENCE_TOML (tests/registry_kit.py,
    Signer.evidence_toml: the evidence App's id and CI's image signing key). One commit on the
    branch checked out in WORK, not pushed; returns the image's name, REGISTRY/modelops/
    model-server, which promote.yml pushes to and the image gate reads from. Callers: the act
    walks of promote.yml (test_act_image) and environments.yml (test_act_environments)."""
    name = f"{registry}/modelops/model-server"
    kustomization = work / environments.load()[0].overlay / "kustomization.yaml"
    text = kustomization.read_text()
    assert f"newName: {SHIPPED_IMAGE}\n" in text, f"{kustomization} no longer names {SHIPPED_IMAGE}"
    kustomization.write_text(text.replace(f"newName: {SHIPPED_IMAGE}\n", f"newName: {name}\n"))
    run_tool("rendered", cwd=work)
    (work / "evidence.toml").write_text(evidence_toml)
    git(work, "commit", "-qam", "dev pulls from the registry; CI's image signing key")
    return name


def workflow_files() -> Sequence[Path]:
    """Every workflow file of the repository."""
    return sorted([*WORKFLOWS.glob("*.yml"), *WORKFLOWS.glob("*.yaml")])


def step_script(workflow: str, step_name: str) -> str:
    """The `run:` script of the step named STEP_NAME in .github/workflows/WORKFLOW."""
    document = yaml.safe_load((WORKFLOWS / workflow).read_text())
    scripts = [
        step["run"]
        for job in document["jobs"].values()
        for step in job["steps"]
        if step.get("name") == step_name
    ]
    assert len(scripts) == 1, f"{workflow} has {len(scripts)} steps named {step_name!r}"
    return str(scripts[0])


# How GitHub runs a `run:` script on a Linux runner with `shell: bash`, which every workflow sets
# as its default (test_workflow_files: left unset, it would be `bash -e`, without pipefail).
GITHUB_BASH = ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c"]


def run_step(
    workflow: str, step_name: str, cwd: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """Run a workflow step's script in CWD with ENV, in the shell GitHub uses."""
    script = step_script(workflow, step_name)
    return subprocess.run([*GITHUB_BASH, script], cwd=cwd, env=env, capture_output=True, text=True)
