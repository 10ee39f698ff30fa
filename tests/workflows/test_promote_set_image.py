"""scripts/promote-set-image: the deployment is a one-line image-tag change in one overlay.

Runs against a temp copy of the repository's own kustomize/ tree (every overlay it has) and against
a fixture overlay of the same shape, with the real pinned kustomize from .tools/bin.
"""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from workflow_helpers import REPO, git, run_script, run_step, tool_env

SHA = "3f1c2d4e5b6a79881726354433221100aabbccdd"
ALL_DIGITS = "1234567890123456789012345678901234567890"
REAL_OVERLAYS = sorted(p.parent.name for p in REPO.glob("kustomize/overlays/*/kustomization.yaml"))

FIXTURE_BASE = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: model
spec:
  selector:
    matchLabels:
      app: model
  template:
    metadata:
      labels:
        app: model
    spec:
      containers:
      - name: app
        image: modelops/model-server:0.1.0
"""
# The layout kustomize writes itself (sequences not indented), as the overlays must keep.
FIXTURE_OVERLAY = """\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: modelops-dev
resources:
- ../../fixture-base
images:
- name: modelops/model-server
  newName: registry.example.org/modelops/model-server
  newTag: "0000000000000000000000000000000000000000"
"""


def fixture_tree(root: Path) -> Path:
    """Add a base (fixture-base) and an overlay (overlays/fixture) of the real overlays' shape."""
    (root / "fixture-base").mkdir(parents=True)
    (root / "fixture-base" / "deployment.yaml").write_text(FIXTURE_BASE)
    (root / "fixture-base" / "kustomization.yaml").write_text("resources:\n- deployment.yaml\n")
    (root / "overlays" / "fixture").mkdir(parents=True)
    (root / "overlays" / "fixture" / "kustomization.yaml").write_text(FIXTURE_OVERLAY)
    return root


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with a copy of the real kustomize/ tree, the fixture overlay and scripts."""
    if (REPO / "kustomize").is_dir():
        shutil.copytree(REPO / "kustomize", tmp_path / "kustomize")
    fixture_tree(tmp_path / "kustomize")
    (tmp_path / "scripts").mkdir()
    for script in (REPO / "scripts").glob("promote-*"):
        shutil.copy2(script, tmp_path / "scripts" / script.name)
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "config", "user.name", "test")
    git(tmp_path, "config", "user.email", "test@example.org")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-qm", "base")
    return tmp_path


def set_image(
    repo: Path, env: str, sha: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return run_script("promote-set-image", env, sha, cwd=repo, check=check)


@pytest.mark.parametrize("env", [*REAL_OVERLAYS, "fixture"])
def test_it_changes_exactly_one_line_of_the_overlay(repo: Path, env: str) -> None:
    assert set_image(repo, env, SHA).stdout == "changed\n"
    assert git(repo, "diff", "--numstat").split() == [
        "1",
        "1",
        f"kustomize/overlays/{env}/kustomization.yaml",
    ]
    diff = git(repo, "diff", "-U0").splitlines()
    added = [line for line in diff if line.startswith("+") and not line.startswith("+++")]
    removed = [line for line in diff if line.startswith("-") and not line.startswith("---")]
    assert len(added) == len(removed) == 1
    assert added[0].split() == ["+", "newTag:", SHA]


@pytest.mark.parametrize("env", [*REAL_OVERLAYS, "fixture"])
def test_the_built_overlay_runs_the_image_of_that_commit(repo: Path, env: str) -> None:
    set_image(repo, env, SHA)
    built = subprocess.run(
        ["kubectl", "kustomize", f"kustomize/overlays/{env}"],
        cwd=repo,
        env=tool_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    images = [
        container["image"]
        for doc in yaml.safe_load_all(built)
        if doc and doc.get("kind") == "Deployment"
        for container in doc["spec"]["template"]["spec"]["containers"]
        if "model-server" in container["image"]
    ]
    assert images
    assert all(image.endswith(f"/modelops/model-server:{SHA}") for image in images)


def test_it_is_idempotent(repo: Path) -> None:
    set_image(repo, "fixture", SHA)
    git(repo, "commit", "-qam", "deploy")
    assert set_image(repo, "fixture", SHA).stdout == "unchanged\n"
    assert git(repo, "status", "--porcelain") == ""


def test_it_keeps_an_all_digit_sha_a_string(repo: Path) -> None:
    set_image(repo, "fixture", ALL_DIGITS)
    overlay = yaml.safe_load((repo / "kustomize/overlays/fixture/kustomization.yaml").read_text())
    assert overlay["images"][0]["newTag"] == ALL_DIGITS


def test_it_refuses_an_overlay_kustomize_would_reformat_and_restores_it(repo: Path) -> None:
    kustomization = repo / "kustomize/overlays/fixture/kustomization.yaml"
    indented = FIXTURE_OVERLAY.replace("- ", "  - ").replace("\n  new", "\n    new")
    kustomization.write_text(indented)
    result = set_image(repo, "fixture", SHA, check=False)
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1
    assert "kustomize's own layout" in result.stderr
    assert kustomization.read_text() == indented


@pytest.mark.parametrize(
    ("env", "sha", "message"),
    [
        ("fixture", SHA[:12], "not a full 40-character lowercase git SHA"),
        ("fixture", SHA.upper(), "not a full 40-character lowercase git SHA"),
        ("qa", SHA, "no overlay at kustomize/overlays/qa"),
    ],
)
def test_it_refuses_bad_input_with_one_line_and_changes_nothing(
    repo: Path, env: str, sha: str, message: str
) -> None:
    result = set_image(repo, env, sha, check=False)
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1
    assert message in result.stderr
    assert git(repo, "status", "--porcelain") == ""


def test_it_refuses_an_overlay_without_the_model_server_image(repo: Path) -> None:
    kustomization = repo / "kustomize/overlays/fixture/kustomization.yaml"
    kustomization.write_text(FIXTURE_OVERLAY.replace("modelops/model-server", "other/app"))
    before = kustomization.read_text()
    result = set_image(repo, "fixture", SHA, check=False)
    assert result.returncode == 1
    assert "0 images: entries named 'modelops/model-server'" in result.stderr
    assert kustomization.read_text() == before


def test_it_requires_the_overlay_to_pull_from_the_registry_it_was_given(repo: Path) -> None:
    ok = run_script(
        "promote-set-image", "--registry", "registry.example.org", "fixture", SHA, cwd=repo
    )
    assert ok.stdout == "changed\n"
    git(repo, "checkout", "-q", ".")
    result = run_script(
        "promote-set-image", "--registry", "ghcr.io/acme", "fixture", SHA, cwd=repo, check=False
    )
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1
    assert "pulls 'registry.example.org/modelops/model-server', not ghcr.io/acme/" in result.stderr
    assert git(repo, "status", "--porcelain") == ""


GH_STUB = """\
#!/usr/bin/env bash
# Stands in for the GitHub API, which no test reaches: records the call.
printf '%s\\n' "$@" > "$GH_CALLS"
"""


def run_pr_step(repo: Path, tmp_path: Path, sha: str) -> subprocess.CompletedProcess[str]:
    """promote.yml's overlay pull request step, in REPO, with a recording stand-in for gh."""
    stub_dir = tmp_path / "stub-bin"
    stub_dir.mkdir(exist_ok=True)
    (stub_dir / "gh").write_text(GH_STUB)
    (stub_dir / "gh").chmod(0o755)
    env = tool_env(
        GH_CALLS=str(tmp_path / "gh-calls"),
        IMAGE_REGISTRY="registry.example.org",
        GITOPS_BRANCH="main",
        STAGE="fixture",
        MODEL_REF="diagnosis-classifier#staging#4",
        VERSION="v0.3.0",
        GITHUB_SHA=sha,
    )
    env["PATH"] = f"{stub_dir}:{env['PATH']}"
    step = "Open the pull request that deploys it (the overlay's image tag)"
    return run_step("promote.yml", step, repo, env)


def test_the_promote_workflow_opens_one_pull_request_with_the_one_line_change(
    repo: Path, tmp_path: Path
) -> None:
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    git(repo, "remote", "add", "origin", str(origin))
    git(repo, "push", "-q", "origin", "main")
    git(repo, "switch", "-q", "-c", "staging")  # the workflow runs on the merged branch

    result = run_pr_step(repo, tmp_path, SHA)
    assert result.returncode == 0, result.stderr
    branch = f"deploy/fixture/{SHA}"
    assert git(repo, "ls-remote", "--heads", "origin").split()[1::2] == [
        f"refs/heads/{branch}",
        "refs/heads/main",
    ]
    assert git(repo, "rev-parse", f"origin/{branch}~1") == git(repo, "rev-parse", "origin/main")
    assert git(repo, "diff", "--numstat", "origin/main", f"origin/{branch}").split() == [
        "1",
        "1",
        "kustomize/overlays/fixture/kustomization.yaml",
    ]
    calls = (tmp_path / "gh-calls").read_text().splitlines()
    assert calls[:6] == ["pr", "create", "--base", "main", "--head", branch]
    assert "diagnosis-classifier#staging#4" in "\n".join(calls)


def test_the_promote_workflow_opens_no_pull_request_when_the_overlay_runs_that_image(
    repo: Path, tmp_path: Path
) -> None:
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    git(repo, "remote", "add", "origin", str(origin))
    set_image(repo, "fixture", SHA)
    git(repo, "commit", "-qam", "deployed already")
    git(repo, "push", "-q", "origin", "main")

    result = run_pr_step(repo, tmp_path, SHA)
    assert result.returncode == 0, result.stderr
    assert "already runs" in result.stdout
    assert git(repo, "ls-remote", "--heads", "origin").split()[1::2] == ["refs/heads/main"]
    assert not (tmp_path / "gh-calls").exists()
