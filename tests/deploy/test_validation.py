"""`make validate` passes on the repository, and each of its checks catches a broken input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT, TOOLS, run

MANIFESTS = ROOT / "scripts" / "validate-manifests.py"
POLICIES = ROOT / "scripts" / "validate-policies.py"
CHECKOV = ROOT / ".tools" / "checkov-venv" / "bin" / "checkov"


def tool_env(path: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = path if path is not None else f"{TOOLS}:{env['PATH']}"
    env["MODELOPS_ARGOCD_SCHEMAS"] = str((ROOT / "../shared/schemas/argocd").resolve())
    return env


def validate(*args: str, path: str | None = None) -> tuple[int, str]:
    result = run_env(sys.executable, str(MANIFESTS), *args, env=tool_env(path))
    return result.returncode, result.stderr


def run_env(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, env=env, check=False)


@pytest.fixture(scope="module")
def checkov() -> Path:
    if not CHECKOV.exists():
        pytest.skip(f"{CHECKOV} missing: run make checkov")
    return CHECKOV


def test_make_validate_passes_on_the_repository(helm: str, checkov: Path) -> None:
    result = run("make", "-s", "validate", cwd=ROOT, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "valid: 3 overlay(s) against Kubernetes 1.35.0, 1.36.0, 1.37.0" in result.stdout
    assert "checkov helm: " in result.stdout and "checkov kubernetes: " in result.stdout
    assert ", 0 failed," in result.stdout


def test_an_unknown_field_in_a_rendered_manifest_fails_for_every_kubernetes_version(
    kubectl: str, tmp_path: Path
) -> None:
    rendered = run(kubectl, "kustomize", str(ROOT / "kustomize" / "overlays" / "prod")).stdout
    broken = tmp_path / "prod.yaml"
    broken.write_text(rendered.replace("  maxReplicas:", "  bogusField: 1\n  maxReplicas:", 1))
    code, errors = validate("--files", str(broken))
    assert code == 1
    for version in ("1.35.0", "1.36.0", "1.37.0"):
        assert f"HorizontalPodAutoscaler/model invalid for Kubernetes {version}" in errors
    assert "'bogusField' was unexpected" in errors


def test_a_broken_overlay_patch_fails_validation(repo_copy: Path) -> None:
    patch = repo_copy / "kustomize" / "overlays" / "staging" / "scaling.yaml"
    patch.write_text(patch.read_text().replace("minReplicas:", "minReplica:"))
    code, errors = validate("--overlays", str(repo_copy / "kustomize" / "overlays" / "staging"))
    assert code == 1
    assert "'minReplica' was unexpected" in errors


def test_a_duplicate_yaml_key_in_an_argocd_file_fails_validation(repo_copy: Path) -> None:
    project = repo_copy / "argocd" / "appproject.yaml"
    project.write_text(project.read_text() + "  description: twice\n")
    code, errors = validate("--argocd", str(repo_copy / "argocd"))
    assert code == 1
    assert "duplicate key 'description'" in errors


def test_a_misspelt_applicationset_field_fails_the_argocd_schema(repo_copy: Path) -> None:
    appset = repo_copy / "argocd" / "applicationset.yaml"
    appset.write_text(appset.read_text().replace("goTemplate: true", "goTemplat: true"))
    code, errors = validate("--argocd", str(repo_copy / "argocd"))
    assert code == 1
    assert (
        "ApplicationSet/model: spec: Additional properties are not allowed ('goTemplat'" in errors
    )


def test_missing_argocd_schemas_are_an_error_not_a_pass(repo_copy: Path) -> None:
    env = tool_env()
    env["MODELOPS_ARGOCD_SCHEMAS"] = str(repo_copy / "no-such-dir")
    result = run_env(sys.executable, str(MANIFESTS), "--argocd", str(repo_copy / "argocd"), env=env)
    assert result.returncode == 1
    assert "Argo CD schemas not found" in result.stderr


def test_checkov_refuses_to_run_without_helm(checkov: Path) -> None:
    result = run_env(sys.executable, str(POLICIES), env=tool_env(path="/usr/bin:/bin"))
    assert result.returncode == 1
    assert "helm is not on PATH" in result.stderr


def test_checkov_fails_a_container_that_may_escalate_privileges(
    checkov: Path, repo_copy: Path
) -> None:
    for template in [repo_copy / "charts" / "model" / "templates" / "_helpers.tpl"]:
        template.write_text(
            template.read_text().replace(
                "allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true"
            )
        )
    base = repo_copy / "kustomize" / "base" / "deployment.yaml"
    base.write_text(
        base.read_text().replace(
            "allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true"
        )
    )
    result = run_env(
        sys.executable,
        str(POLICIES),
        "--chart",
        str(repo_copy / "charts" / "model"),
        "--overlays",
        str(repo_copy / "kustomize" / "overlays" / "dev"),
        env=tool_env(),
    )
    assert result.returncode == 1
    assert "helm: CKV_K8S_20" in result.stderr
    assert "kubernetes: CKV_K8S_20" in result.stderr
