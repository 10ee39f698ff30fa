"""Fixtures of the deployment tests: the pinned tools, rendering the chart and building overlays.

helm (4), helm3 and kubectl (with its kustomize) come from .tools/bin (`make tools`), checkov
from its own venv (`make checkov`); both are test-prereqs. Each render is a real `helm template` or
`kubectl kustomize` run; expensive renders are shared per session. CRD_SCHEMAS is
scripts/crd_schemas.py, the fetcher of the pinned CRD schemas, as a module.
"""

from __future__ import annotations

import importlib.util
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from gitops import environments, monitoring

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".tools" / "bin"
CHART = ROOT / "charts" / "model"
OVERLAYS = ROOT / "kustomize" / "overlays"
ENVIRONMENTS = tuple(env.name for env in environments.load())  # environments.toml, in order
Docs = list[dict[str, Any]]


def script_module(name: str) -> ModuleType:
    """scripts/NAME.py as the module NAME, registered as scripts/ importing each other see it."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


CRD_SCHEMAS = script_module("crd_schemas")
UNPINNED = "0" * 40  # the commit of the tests' own lock files


def write_lock(path: Path, url: str, pins: Iterable[Any]) -> Path:
    """A lock file in the format of scripts/argocd-schemas.lock: URL pattern, commit UNPINNED and
    one table per pin (anything with file, kind and sha256)."""
    tables = "".join(
        f'\n[files."{pin.file}"]\nkind = "{pin.kind}"\nsha256 = "{pin.sha256}"\n' for pin in pins
    )
    path.write_text(
        f'name = "Argo CD"\nsource = "https://example.org/schemas"\nlicense = "MIT"\n'
        f'commit = "{UNPINNED}"\nurl = "{url}"\napi_version = "argoproj.io/v1alpha1"\n'
        f'variable = "MODELOPS_ARGOCD_SCHEMAS"\n{tables}'
    )
    return path


def closed_port() -> int:
    """A loopback TCP port nothing listens on (just bound and released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


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


@pytest.fixture(scope="session")
def monitored_overlay_docs(
    kubectl: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Docs]:
    """`kubectl kustomize` output of every overlay with its monitoring component turned on (by
    gitops.monitoring, in a copy of kustomize/)."""
    copy = tmp_path_factory.mktemp("monitored")
    shutil.copytree(ROOT / "kustomize", copy / "kustomize")
    for env in environments.load():
        assert monitoring.turn_on(copy, env)
    return {
        env: documents(run(kubectl, "kustomize", str(copy / "kustomize" / "overlays" / env)).stdout)
        for env in ENVIRONMENTS
    }


@pytest.fixture
def repo_copy(tmp_path: Path) -> Iterator[Path]:
    """A copy of the deployment files (chart with its linked serving config, kustomize, argocd)."""
    copy = tmp_path / "repo"
    for part in ("charts", "kustomize", "argocd", "serving/config"):
        shutil.copytree(ROOT / part, copy / part, symlinks=True)
    yield copy


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The numbers each pod drain test recorded (test_pod_drain.py: ``record_property("pod
    drain", ...)``), one line per test, so that a run shows them without -s or a JUnit file."""
    lines = [
        f"{report.nodeid.rpartition('::')[2]}: {value}"
        for outcome in ("passed", "failed")
        for report in terminalreporter.stats.get(outcome, [])
        if report.when == "call"
        for key, value in report.user_properties
        if key == "pod drain"
    ]
    if lines:
        terminalreporter.section("pod drain")
        for line in lines:
            terminalreporter.write_line(line)
