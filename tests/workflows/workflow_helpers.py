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

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / ".github" / "workflows"


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
