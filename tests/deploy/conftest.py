"""Fixtures of the deployment tests: the pinned tools, rendering the chart and building overlays.

helm (4), helm3, kubectl and kustomize come from .tools/bin (`make tools`), checkov from its own
venv (`make checkov`); both are test-prereqs. Each render is a real `helm template` or
`kubectl kustomize` run; expensive renders are shared per session.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".tools" / "bin"
CHART = ROOT / "charts" / "model"
OVERLAYS = ROOT / "kustomize" / "overlays"
ENVIRONMENTS = ("dev", "staging", "prod")
Docs = list[dict[str, Any]]


def tool(name: str) -> str:
    """The pinned binary from .tools/bin; skip (a failure in CI) when it is not installed."""
    path = TOOLS / name
    if not path.exists():
        pytest.skip(f"{path} missing: run make tools")
    return str(path)


def run(
    *args: str, cwd: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, cwd=cwd, check=check)


def documents(text: str) -> Docs:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def find(docs: Docs, kind: str, name: str | None = None) -> dict[str, Any]:
    """The one document of KIND (and NAME)."""
    found = [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def containers(docs: Docs) -> dict[str, dict[str, Any]]:
    spec = find(docs, "Deployment")["spec"]["template"]["spec"]
    return {c["name"]: c for c in spec["containers"]}


@pytest.fixture(scope="session")
def helm() -> str:
    return tool("helm")


@pytest.fixture(scope="session")
def helm3() -> str:
    return tool("helm3")


@pytest.fixture(scope="session")
def kubectl() -> str:
    return tool("kubectl")


@pytest.fixture(scope="session")
def kustomize() -> str:
    return tool("kustomize")


@pytest.fixture(scope="session")
def template(helm: str) -> Callable[..., str]:
    """`helm template model CHART [--set k=v ...] [-f file ...]` (helm 4), its stdout."""

    def render(*args: str, chart: Path = CHART, binary: str | None = None) -> str:
        result = run(binary or helm, "template", "model", str(chart), *args, check=False)
        if result.returncode != 0:
            raise AssertionError(f"helm template failed: {result.stderr}")
        return result.stdout

    return render


@pytest.fixture(scope="session")
def default_docs(template: Callable[..., str]) -> Docs:
    return documents(template())


@pytest.fixture(scope="session")
def overlay_docs(kubectl: str) -> dict[str, Docs]:
    """`kubectl kustomize` output of every overlay."""
    return {
        env: documents(run(kubectl, "kustomize", str(OVERLAYS / env)).stdout)
        for env in ENVIRONMENTS
    }


@pytest.fixture
def repo_copy(tmp_path: Path) -> Iterator[Path]:
    """A copy of the deployment files (chart with its linked serving config, kustomize, argocd)."""
    copy = tmp_path / "repo"
    for part in ("charts", "kustomize", "argocd", "serving/config"):
        shutil.copytree(ROOT / part, copy / part, symlinks=True)
    yield copy
