"""Run podman the way make does: the repository's containers.conf, the project's dvc/gto on PATH;
and the local pod runner (images/pod.py) as a module.

Shared by the image tests and the deployment's pod smoke test.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONTAINERS_CONF = ROOT / "images" / "containers.conf"


def podman_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", str(CONTAINERS_CONF))
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}:{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = env["GTO_NO_ANALYTICS"] = "1"
    return env


def podman(
    *args: str, check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``podman ARGS``; with ``check``, a failure raises with podman's output."""
    done = subprocess.run(
        ["podman", *args], env=podman_env(), capture_output=True, text=True, timeout=timeout
    )
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done


def pod_runner() -> ModuleType:
    """images/pod.py, the one local pod runner (an overlay's rendered manifests played by podman),
    as the module ``modelops_pod``."""
    if "modelops_pod" not in sys.modules:
        spec = importlib.util.spec_from_file_location("modelops_pod", ROOT / "images" / "pod.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["modelops_pod"] = module  # before running it: its dataclass needs it
        spec.loader.exec_module(module)
    return sys.modules["modelops_pod"]


def require_kubectl() -> None:
    """The pod runner renders overlays with the pinned kubectl (make tools)."""
    if not (ROOT / ".tools" / "bin" / "kubectl").exists():
        pytest.skip("kubectl missing from .tools/bin: run make tools")
