"""gitops.set_image: the deployment is a two-line change in one overlay: the image's tag (the git
SHA it was built from) and its manifest digest.

With --model-version/--model-sha256 it also sets the two model annotations of provenance.yaml
(two more lines), so the pod reports the model the image ships. Runs against a temp copy of the
repository's own kustomize/ tree (every overlay it has) and against a fixture overlay of the same
shape, with the real pinned kubectl (and its kustomize) from .tools/bin.
"""

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from workflow_helpers import REPO, git, run_tool, tool_env

SHA = "3f1c2d4e5b6a79881726354433221100aabbccdd"
ALL_DIGITS = "1234567890123456789012345678901234567890"
VERSION = "v0.3.0"
MODEL_SHA256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
# Digits and one e: a YAML float (1.2 core schema) unless the script quotes it.
FLOATY_SHA256 = "1" + "0" * 60 + "e10"
MODEL_ARGS = ("--model-version", VERSION, "--model-sha256", MODEL_SHA256)
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
patches:
- path: provenance.yaml
images:
- name: modelops/model-server
  newName: registry.example.org/modelops/model-server
  newTag: "0000000000000000000000000000000000000000"
  digest: sha256:0000000000000000000000000000000000000000000000000000000000000000
"""
# The same overlay pulling by tag only (no digest line).
UNPINNED_OVERLAY = FIXTURE_OVERLAY.replace("  digest: sha256:" + "0" * 64 + "\n", "")
DIGEST = "sha256:" + "5615049ac5f1f24c364393f088ecba678712ef2536aca9b825027146d8d3e1b1"

FIXTURE_PROVENANCE = """\
# The model this environment runs.
apiVersion: apps/v1
kind: Deployment
metadata:
  name: model
spec:
  template:
    metadata:
      annotations:
        modelops.io/model-version: v0.1.0
        modelops.io/model-stage: dev
        modelops.io/model-sha256: ""
"""


def fixture_tree(root: Path) -> Path:
    """Add a base (fixture-base) and an overlay (overlays/fixture) of the real overlays' shape."""
    (root / "fixture-base").mkdir(parents=True)
    (root / "fixture-base" / "deployment.yaml").write_text(FIXTURE_BASE)
    (root / "fixture-base" / "kustomization.yaml").write_text("resources:\n- deployment.yaml\n")
    (root / "overlays" / "fixture").mkdir(parents=True)
    (root / "overlays" / "fixture" / "kustomization.yaml").write_text(FIXTURE_OVERLAY)
    (root / "overlays" / "fixture" / "provenance.yaml").write_text(FIXTURE_PROVENANCE)
    return root


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with a copy of the real kustomize/ tree and the fixture overlay."""
    if (REPO / "kustomize").is_dir():
        shutil.copytree(REPO / "kustomize", tmp_path / "kustomize")
    fixture_tree(tmp_path / "kustomize")
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "config", "user.name", "test")
    git(tmp_path, "config", "user.email", "test@example.org")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-qm", "base")
    return tmp_path


def set_image(
    repo: Path, env: str, sha: str, *options: str, check: bool = True, digest: str | None = DIGEST
) -> subprocess.CompletedProcess[str]:
    """gitops.set_image ENV SHA with OPTIONS, and --digest DIGEST unless digest is None."""
    pinned = ("--digest", digest) if digest is not None else ()
    return run_tool("set_image", *options, *pinned, env, sha, cwd=repo, check=check)


def changed(repo: Path, path: str) -> tuple[list[str], list[str]]:
    """The (removed, added) lines of PATH's uncommitted diff in REPO."""
    diff = git(repo, "diff", "-U0", "--", path).splitlines()
    removed = [line[1:] for line in diff if line.startswith("-") and not line.startswith("---")]
    added = [line[1:] for line in diff if line.startswith("+") and not line.startswith("+++")]
    return removed, added


def built_deployments(repo: Path, env: str) -> list[dict[str, Any]]:
    """The Deployments `kubectl kustomize` renders from REPO's overlay ENV."""
    built = subprocess.run(
        ["kubectl", "kustomize", f"kustomize/overlays/{env}"],
        cwd=repo,
        env=tool_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [doc for doc in yaml.safe_load_all(built) if doc and doc.get("kind") == "Deployment"]


@pytest.mark.parametrize("env", [*REAL_OVERLAYS, "fixture"])
def test_it_changes_the_tag_and_the_digest_line_of_the_overlay(repo: Path, env: str) -> None:
    assert set_image(repo, env, SHA).stdout == "changed\n"
    assert git(repo, "diff", "--numstat").split() == [
        "2",
        "2",
        f"kustomize/overlays/{env}/kustomization.yaml",
    ]
    removed, added = changed(repo, f"kustomize/overlays/{env}/kustomization.yaml")
    assert len(removed) == 2
    assert [line.split() for line in added] == [["newTag:", SHA], ["digest:", DIGEST]]


@pytest.mark.parametrize("env", [*REAL_OVERLAYS, "fixture"])
def test_the_built_overlay_runs_the_image_of_that_commit(repo: Path, env: str) -> None:
    set_image(repo, env, SHA)
    images = [
        container["image"]
        for doc in built_deployments(repo, env)
        for container in doc["spec"]["template"]["spec"]["containers"]
        if "model-server" in container["image"]
    ]
    assert images
    assert all(image.endswith(f"/modelops/model-server:{SHA}@{DIGEST}") for image in images)


def test_it_is_idempotent(repo: Path) -> None:
    set_image(repo, "fixture", SHA)
    git(repo, "commit", "-qam", "deploy")
    assert set_image(repo, "fixture", SHA).stdout == "unchanged\n"
    assert git(repo, "status", "--porcelain") == ""


def test_it_keeps_an_all_digit_sha_a_string(repo: Path) -> None:
    set_image(repo, "fixture", ALL_DIGITS)
    overlay = yaml.safe_load((repo / "kustomize/overlays/fixture/kustomization.yaml").read_text())
    assert overlay["images"][0]["newTag"] == ALL_DIGITS


def test_it_changes_one_line_in_any_layout_the_overlay_keeps(repo: Path) -> None:
    kustomization = repo / "kustomize/overlays/fixture/kustomization.yaml"
    indented = FIXTURE_OVERLAY.replace("\n  ", "\n    ").replace("- ", "  - ")
    kustomization.write_text(indented + "# the deployed image, set by gitops.set_image\n")
    git(repo, "commit", "-qam", "indented layout")
    assert set_image(repo, "fixture", SHA).stdout == "changed\n"
    removed, added = changed(repo, "kustomize/overlays/fixture/kustomization.yaml")
    assert removed == ['    newTag: "' + "0" * 40 + '"', "    digest: sha256:" + "0" * 64]
    assert added == [f"    newTag: {SHA}", f"    digest: {DIGEST}"]
    assert built_deployments(repo, "fixture")[0]["spec"]["template"]["spec"]["containers"][0][
        "image"
    ].endswith(f":{SHA}@{DIGEST}")


def test_it_edits_only_the_model_servers_entry_among_several(repo: Path) -> None:
    kustomization = repo / "kustomize/overlays/fixture/kustomization.yaml"
    other = "- name: other/app\n  newTag: v1.2.3\n"
    kustomization.write_text(FIXTURE_OVERLAY.replace("images:\n", f"images:\n{other}"))
    git(repo, "commit", "-qam", "two images")
    set_image(repo, "fixture", SHA)
    removed, added = changed(repo, "kustomize/overlays/fixture/kustomization.yaml")
    assert added == [f"  newTag: {SHA}", f"  digest: {DIGEST}"]
    assert removed == ['  newTag: "' + "0" * 40 + '"', "  digest: sha256:" + "0" * 64]


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


@pytest.mark.parametrize("env", [*REAL_OVERLAYS, "fixture"])
def test_the_model_options_change_the_tag_line_and_the_two_annotation_lines(
    repo: Path, env: str
) -> None:
    provenance = repo / f"kustomize/overlays/{env}/provenance.yaml"
    before = provenance.read_text()
    assert set_image(repo, env, SHA, *MODEL_ARGS).stdout == "changed\n"
    overlay = f"kustomize/overlays/{env}"
    assert sorted(git(repo, "diff", "--name-only").split()) == [
        f"{overlay}/kustomization.yaml",
        f"{overlay}/provenance.yaml",
    ]
    removed, added = changed(repo, f"{overlay}/kustomization.yaml")
    assert len(removed) == 2
    assert [line.split() for line in added] == [["newTag:", SHA], ["digest:", DIGEST]]
    removed, added = changed(repo, f"{overlay}/provenance.yaml")
    assert [line.split(":")[0].strip() for line in removed] == [
        "modelops.io/model-version",
        "modelops.io/model-sha256",
    ]
    assert [line.strip() for line in added] == [
        f"modelops.io/model-version: {VERSION}",
        f'modelops.io/model-sha256: "{MODEL_SHA256}"',
    ]
    # The comments and layout are kept: only those two lines differ, with the same indentation.
    after = provenance.read_text()
    assert len(after.splitlines()) == len(before.splitlines())
    assert [line for line in after.splitlines() if line.lstrip().startswith("#")] == [
        line for line in before.splitlines() if line.lstrip().startswith("#")
    ]
    assert [len(line) - len(line.lstrip()) for line in added] == [
        len(line) - len(line.lstrip()) for line in removed
    ]


@pytest.mark.parametrize("env", REAL_OVERLAYS)
def test_the_built_overlay_reports_the_new_model_in_annotations_and_env(
    repo: Path, env: str
) -> None:
    set_image(repo, env, SHA, *MODEL_ARGS)
    deployments = [
        doc
        for doc in built_deployments(repo, env)
        if any(c["name"] == "app" for c in doc["spec"]["template"]["spec"]["containers"])
    ]
    assert len(deployments) == 1
    template = deployments[0]["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    assert annotations["modelops.io/model-version"] == VERSION
    assert annotations["modelops.io/model-sha256"] == MODEL_SHA256
    assert annotations["modelops.io/git-commit"] == SHA
    app = next(c for c in template["spec"]["containers"] if c["name"] == "app")
    app_env = {var["name"]: var.get("value") for var in app.get("env", [])}
    assert app_env["MODELOPS_MODEL_VERSION"] == VERSION
    assert app_env["MODELOPS_MODEL_SHA256"] == MODEL_SHA256
    assert app_env["MODELOPS_GIT_COMMIT"] == SHA
    assert app["image"].endswith(f"/modelops/model-server:{SHA}@{DIGEST}")


def test_a_sha256_that_looks_like_a_number_stays_a_string(repo: Path) -> None:
    set_image(
        repo, REAL_OVERLAYS[0], SHA, "--model-version", VERSION, "--model-sha256", FLOATY_SHA256
    )
    (deployment,) = [
        doc
        for doc in built_deployments(repo, REAL_OVERLAYS[0])
        if "modelops.io/model-sha256" in doc["spec"]["template"]["metadata"]["annotations"]
    ]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["modelops.io/model-sha256"] == FLOATY_SHA256


def test_the_model_options_are_idempotent(repo: Path) -> None:
    set_image(repo, "fixture", SHA, *MODEL_ARGS)
    git(repo, "commit", "-qam", "deploy")
    assert set_image(repo, "fixture", SHA, *MODEL_ARGS).stdout == "unchanged\n"
    assert git(repo, "status", "--porcelain") == ""
    # A new model with the same image is still a change (of provenance.yaml only).
    other = MODEL_SHA256[::-1]
    assert (
        set_image(repo, "fixture", SHA, "--model-version", "v0.4.0", "--model-sha256", other).stdout
        == "changed\n"
    )
    assert git(repo, "diff", "--name-only").split() == [
        "kustomize/overlays/fixture/provenance.yaml"
    ]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("--model-version", "0.3.0", "--model-sha256", MODEL_SHA256), "not a model version"),
        (("--model-version", "v0.3", "--model-sha256", MODEL_SHA256), "not a model version"),
        (("--model-version", VERSION, "--model-sha256", MODEL_SHA256.upper()), "64 lowercase hex"),
        (("--model-version", VERSION, "--model-sha256", MODEL_SHA256[:63]), "64 lowercase hex"),
        (("--model-version", VERSION, "--model-sha256", ""), "64 lowercase hex"),
        (("--model-version", VERSION), "go together"),
        (("--model-sha256", MODEL_SHA256), "go together"),
    ],
)
def test_bad_model_values_fail_in_one_line_and_change_nothing(
    repo: Path, options: tuple[str, ...], message: str
) -> None:
    result = set_image(repo, REAL_OVERLAYS[0], SHA, *options, check=False)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1
    assert message in result.stderr
    assert git(repo, "status", "--porcelain") == ""


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        # A bad tag: the provenance edit, made first, is undone.
        (None, "not a full 40-character lowercase git SHA"),
        # The entry has no newTag line to edit: both files are restored.
        ("no-tag", "has 0 newTag lines, not 1"),
        # The annotation appears twice (or not at all): nothing is written.
        ("twice", "2 lines setting modelops.io/model-version"),
        ("missing", "0 lines setting modelops.io/model-sha256"),
        # The key is on a line, but not as the pod's annotation: the read-back fails.
        ("not-an-annotation", "does not read"),
    ],
)
def test_any_surprise_restores_both_files_and_fails_in_one_line(
    repo: Path, break_it: str | None, message: str
) -> None:
    overlay = repo / "kustomize/overlays/fixture"
    kustomization, provenance = overlay / "kustomization.yaml", overlay / "provenance.yaml"
    sha = SHA
    if break_it is None:
        sha = SHA[:12]
    elif break_it == "no-tag":
        kustomization.write_text(FIXTURE_OVERLAY.replace('  newTag: "0' + "0" * 39 + '"\n', ""))
    elif break_it == "twice":
        provenance.write_text(FIXTURE_PROVENANCE + "        modelops.io/model-version: v0.0.9\n")
    elif break_it == "missing":
        provenance.write_text(
            FIXTURE_PROVENANCE.replace('        modelops.io/model-sha256: ""\n', "")
        )
    else:
        provenance.write_text(
            FIXTURE_PROVENANCE.replace(
                "        modelops.io/model-sha256",
                "      labels:\n        modelops.io/model-sha256",
            )
        )
    before = {path: path.read_text() for path in (kustomization, provenance)}
    result = set_image(repo, "fixture", sha, *MODEL_ARGS, check=False)
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1
    assert message in result.stderr
    assert {path: path.read_text() for path in before} == before


def test_it_refuses_an_overlay_without_the_model_server_image(repo: Path) -> None:
    kustomization = repo / "kustomize/overlays/fixture/kustomization.yaml"
    kustomization.write_text(FIXTURE_OVERLAY.replace("modelops/model-server", "other/app"))
    before = kustomization.read_text()
    result = set_image(repo, "fixture", SHA, check=False)
    assert result.returncode == 1
    assert "0 images: entries named 'modelops/model-server'" in result.stderr
    assert kustomization.read_text() == before


def test_it_requires_the_overlay_to_pull_from_the_registry_it_was_given(repo: Path) -> None:
    ok = set_image(repo, "fixture", SHA, "--registry", "registry.example.org")
    assert ok.stdout == "changed\n"
    git(repo, "checkout", "-q", ".")
    result = set_image(repo, "fixture", SHA, "--registry", "ghcr.io/acme", check=False)
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1
    assert "pulls 'registry.example.org/modelops/model-server', not ghcr.io/acme/" in result.stderr
    assert git(repo, "status", "--porcelain") == ""


@pytest.fixture
def pinned(repo: Path) -> Path:
    """The fixture overlay, which pins its image by digest like the real ones."""
    return repo


def test_a_pinned_overlay_gets_the_tag_and_the_digest_in_two_lines(pinned: Path) -> None:
    assert set_image(pinned, "fixture", SHA).stdout == "changed\n"
    removed, added = changed(pinned, "kustomize/overlays/fixture/kustomization.yaml")
    assert added == [f"  newTag: {SHA}", f"  digest: {DIGEST}"]
    assert len(removed) == 2
    (deployment,) = built_deployments(pinned, "fixture")
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"registry.example.org/modelops/model-server:{SHA}@{DIGEST}"
    git(pinned, "commit", "-qam", "deploy")
    assert set_image(pinned, "fixture", SHA).stdout == "unchanged\n"


def test_a_pinned_overlay_without_the_new_digest_is_refused_and_kept(pinned: Path) -> None:
    result = set_image(pinned, "fixture", SHA, check=False, digest=None)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: kustomize/overlays/fixture/kustomization.yaml pins "
        "modelops/model-server by digest: give the new image's --digest"
    ]
    assert git(pinned, "status", "--porcelain") == ""


def test_a_digest_for_an_overlay_that_pins_none_is_refused(repo: Path) -> None:
    (repo / "kustomize/overlays/fixture/kustomization.yaml").write_text(UNPINNED_OVERLAY)
    git(repo, "commit", "-qam", "pull by tag only")
    result = set_image(repo, "fixture", SHA, check=False)
    assert result.returncode == 1
    assert "has no digest line to set" in result.stderr
    assert git(repo, "status", "--porcelain") == ""


@pytest.mark.parametrize("digest", ["sha256:abc", DIGEST.upper(), DIGEST.removeprefix("sha256:")])
def test_a_malformed_digest_is_a_usage_error(pinned: Path, digest: str) -> None:
    result = set_image(pinned, "fixture", SHA, check=False, digest=digest)
    assert result.returncode == 2
    assert "is not an image digest sha256:<64 hex>" in result.stderr
    assert git(pinned, "status", "--porcelain") == ""


def test_an_overlay_that_is_not_yaml_is_refused_in_one_line(repo: Path) -> None:
    kustomization = repo / "kustomize/overlays/fixture/kustomization.yaml"
    kustomization.write_text("images: [\n")
    git(repo, "commit", "-qam", "broken")
    result = set_image(repo, "fixture", SHA, check=False)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: kustomize/overlays/fixture/kustomization.yaml: not valid YAML at line 2"
    ]
