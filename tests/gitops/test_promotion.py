"""Promotion of one frozen release dev -> staging -> prod, and rollback: gitops.promote,
gitops.rollback, gitops.assign_stage and the smoke records, on real repositories.

Each test works in a copy of one repository built once for the module: this checkout's
kustomize/, argocd/, training/params.yaml and training/metrics.json in a fresh git repository
with a bare origin, the environment branches pushed as a fork makes them (docs/workflow.md), GTO
versions registered for real, and the dev deployment made by the deploy pull request's own tool
(gitops.deploy, merged, then gitops.assign_stage); promote.yml's step that runs it is played too.
Merging a pull request is a push of its head to the environment branch (the promotion branch is a
fast-forward of it).

The fork is set up as docs/workflow.md says (workflow_helpers.set_up_as_a_fork): its dev overlay
pulls from its registry (the suite's loopback registry, tests/conftest.py; each promotion carries
that name on), and its evidence.toml names the evidence App (the API
stand-in plays it) and CI's image signing key (tests/registry_kit.Signer, held by the tests as
the environment image-signing holds it). Each release's image is what promote.yml's build leaves
there: a stand-in image tagged with its commit and its build attestation, which every
promotion's image gate reads back by digest.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from gitops import attestation, environments, evidence, rendered
from gitops.github import GitHub
from tests.gitops.github_stand_in import evidence_api
from tests.registry_kit import Signer, push_image
from tests.workflows.act.github_api import (
    EVIDENCE_APP,
    EVIDENCE_KEY,
    GitHubApi,
    installation_token,
)
from tests.workflows.workflow_helpers import (
    REPO,
    git,
    run_step,
    run_tool,
    set_up_as_a_fork,
    tool_env,
)
from training.params import load_artifact

pytestmark = pytest.mark.integration  # real git, GTO and kustomize; a loopback registry

NAME = load_artifact().name  # this checkout's training/params.yaml, copied
DEV, STAGING, PROD = environments.load()
#: CI's image signing key of the fork (its public half in the template's evidence.toml).
SIGNER = Signer()


def image_name(repo: Path) -> str:
    """The image REPO's overlays pull (the template's registry): NAME without tag or digest."""
    overlay = yaml.safe_load((repo / DEV.overlay / "kustomization.yaml").read_text())
    return str(overlay["images"][0]["newName"])


def built(repo: Path) -> dict[str, str]:
    """The images CI built for REPO's fork, N -> digest, kept beside it (a copy of the fork
    keeps them)."""
    path = repo.parent / "images" / "built.json"
    return dict(json.loads(path.read_text())) if path.exists() else {}


def build(repo: Path, n: int, commit: str) -> str:
    """What promote.yml's build of COMMIT leaves in the registry, as image N of REPO: the image
    tagged with COMMIT and its attestation, signed with the fork's key; its digest."""
    found = {**built(repo), str(n): SIGNER.built(image_name(repo), commit, repo.parent / "images")}
    (repo.parent / "images" / "built.json").write_text(json.dumps(found))
    return found[str(n)]


def digest(repo: Path, n: int) -> str:
    """The digest of image N built in REPO."""
    return built(repo)[str(n)]


def model_sha(n: int) -> str:
    return f"{n:x}" * 64 if n < 16 else f"{n:064x}"


def sh(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, cwd=repo, env=tool_env(), capture_output=True, text=True)
    if check:
        assert done.returncode == 0, f"{' '.join(args)}: {done.stderr}"
    return done


def tool(repo: Path, command: str, *args: str, check: bool = True) -> dict[str, str]:
    """Run ``python -m gitops.COMMAND`` in REPO; its key=value output lines."""
    done = run_tool(command, *args, cwd=repo, check=check)
    if not check:
        return {"returncode": str(done.returncode), "stderr": done.stderr}
    return dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)


def refused(repo: Path, command: str, *args: str) -> str:
    """The one error line of a refused command (it must exit 1 and print nothing else)."""
    done = run_tool(command, *args, cwd=repo, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    (line,) = done.stderr.splitlines()
    return line


def origin_state(repo: Path) -> str:
    """Every ref of the origin (branches, tags, notes): what a refusal must leave alone."""
    return git(repo, "ls-remote", "origin")


def release_metrics(repo: Path, **changes: float) -> None:
    path = repo / "training" / "metrics.json"
    metrics = json.loads(path.read_text())
    metrics.update(changes)
    path.write_text(json.dumps(metrics, indent=2) + "\n")


def register(repo: Path, version: str, **metrics: float) -> str:
    """A new model on main (METRICS changed) registered as VERSION and pushed; its commit."""
    git(repo, "switch", "-q", "main")
    if metrics:
        release_metrics(repo, **metrics)
        git(repo, "commit", "-qam", f"experiment: model {version}")
    sh(repo, "gto", "register", NAME, "HEAD", "--version", version)
    git(repo, "push", "-q", "--tags", "origin", "main")
    return git(repo, "rev-parse", "HEAD").strip()


def deploy_dev(repo: Path, version: str, n: int, *, assign: bool = True, **metrics: float) -> None:
    """A new model on main: registered as VERSION (with METRICS), built as image N, deployed to
    dev by its deploy pull request (gitops.deploy, merged), its stage assigned after the merge
    (unless not ASSIGN)."""
    commit = register(repo, version, **metrics)
    outputs = tool(repo, "deploy", "--no-push", "--digest", build(repo, n, commit),
                   "--model-version", version, "--model-sha256", model_sha(n), commit)  # fmt: skip
    assert outputs["changed"] == "true" and outputs["branch"] == f"deploy/{DEV.stage}/{commit}"
    git(repo, "push", "-q", "origin", f"{outputs['commit']}:refs/heads/{DEV.branch}")
    git(repo, "fetch", "-q", "origin")
    git(repo, "merge", "-q", "--ff-only", f"origin/{DEV.branch}")
    if assign:
        tool(repo, "assign_stage", "dev", "--push", "origin")


@pytest.fixture(autouse=True)
def github(monkeypatch: pytest.MonkeyPatch) -> Iterator[GitHubApi]:
    """The GitHub API stand-in with the evidence App installed; the tools read it with the
    workflow's own token (the GitHub Actions app), as the propose job does. The registry is
    plain HTTP (loopback), which the tools read with MODELOPS_REGISTRY_TLS_VERIFY=false."""
    monkeypatch.setenv("MODELOPS_REGISTRY_TLS_VERIFY", "false")
    with evidence_api(monkeypatch) as api:
        yield api


def smoke_passed(
    repo: Path, env: environments.Environment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Record a passed smoke test of ENV's rendered manifests with the evidence App's token, as
    gitops.smoke --record does after its check (tests/gitops/test_evidence.py runs the check)."""
    git(repo, "fetch", "-q", "origin")
    ref = f"origin/{env.branch}"
    release = rendered.release(git(repo, "show", f"{ref}:{rendered.path(env)}"))
    api = GitHub.from_environ()
    api.token = installation_token(api.url, EVIDENCE_APP["id"], EVIDENCE_KEY)
    with monkeypatch.context() as patch:
        patch.chdir(repo)
        evidence.record(env, ref, release, {"passed": True}, api)


def merge(repo: Path, outputs: dict[str, str], env: environments.Environment) -> None:
    """Merge the proposal's pull request (a fast-forward), then the workflow's stage step."""
    git(repo, "push", "-q", "origin", f"{outputs['commit']}:refs/heads/{env.branch}")
    git(repo, "fetch", "-q", "origin")
    tool(repo, "assign_stage", env.name, "--ref", f"origin/{env.branch}", "--push", "origin")


def running(repo: Path, env: environments.Environment) -> rendered.Release:
    git(repo, "fetch", "-q", "origin")
    return rendered.release(git(repo, "show", f"origin/{env.branch}:{rendered.path(env)}"))


def stage_holder(repo: Path, env: environments.Environment) -> str:
    return sh(repo, "gto", "show", f"{NAME}#{env.stage}", "--ref").stdout.strip()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, loopback_registry: str) -> Path:
    root = tmp_path_factory.mktemp("promotion")
    repo = root / "work"
    for part in ("kustomize", "rendered", "argocd"):
        shutil.copytree(REPO / part, repo / part)
    for part in ("training/params.yaml", "training/metrics.json", "evidence.toml"):
        (repo / part).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / part, repo / part)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.name", "test")
    git(repo, "config", "user.email", "test@example.org")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "the repository as forked")
    # The fork's registry (dev pulls from it), its evidence App (the API stand-in plays it) and
    # CI's image signing key, as docs/workflow.md sets a fork up.
    set_up_as_a_fork(
        repo, f"{loopback_registry}/acme", SIGNER.evidence_toml(int(EVIDENCE_APP["id"]))
    )
    return root


@pytest.fixture(scope="module")
def monitored_template(template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The template with monitoring turned on in every overlay, as docs/monitoring.md says: one
    commit on main (gitops.monitoring on, which re-renders rendered/dev)."""
    root = tmp_path_factory.mktemp("promotion-monitored")
    shutil.copytree(template, root, dirs_exist_ok=True)
    repo = root / "work"
    run_tool("monitoring", "on", cwd=repo)
    git(repo, "commit", "-qam", "monitoring: on in every environment")
    return root


def forked(template: Path, tmp_path: Path) -> Path:
    """A copy of TEMPLATE with a bare origin holding main, staging and production, and v0.1.0
    deployed to dev."""
    shutil.copytree(template, tmp_path, dirs_exist_ok=True)
    work = tmp_path / "work"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", "origin.git")
    git(work, "remote", "add", "origin", str(tmp_path / "origin.git"))
    git(work, "push", "-q", "origin", "main", "main:staging", "main:production")
    deploy_dev(work, "v0.1.0", 1)
    return work


def copied(fork: Path, tmp_path: Path) -> Path:
    """A copy of the fork under FORK (its work/ and origin.git, as forked() made them) in
    TMP_PATH, its origin the copy's; its work/."""
    shutil.copytree(fork, tmp_path, dirs_exist_ok=True)
    work = tmp_path / "work"
    git(work, "remote", "set-url", "origin", str(tmp_path / "origin.git"))
    return work


@contextmanager
def fork_tools() -> Iterator[None]:
    """What the autouse fixture `github` gives a test, for a module fixture: the API stand-in
    and the registry read over plain HTTP."""
    with pytest.MonkeyPatch.context() as patch, evidence_api(patch):
        patch.setenv("MODELOPS_REGISTRY_TLS_VERIFY", "false")
        yield


@pytest.fixture(scope="module")
def deployed(template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fork with v0.1.0 deployed to dev, made once for the module (forked())."""
    root = tmp_path_factory.mktemp("deployed")
    with fork_tools():
        forked(template, root)
    return root


@pytest.fixture
def repo(deployed: Path, tmp_path: Path) -> Path:
    return copied(deployed, tmp_path)


def through_prod(repo: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """v0.1.0 promoted through staging to prod; v0.2.0 then through staging to prod too."""
    for version, n, metrics in (("v0.1.0", 1, {}), ("v0.2.0", 2, {"accuracy": 0.97})):
        if version != "v0.1.0":
            deploy_dev(repo, version, n, **metrics)
        for env in (STAGING, PROD):
            smoke_passed(repo, environments.previous(env), monkeypatch)
            merge(repo, tool(repo, "promote", env.name), env)
    return repo


@pytest.fixture(scope="module")
def released(deployed: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fork through_prod() made, once for the module (its smoke records stay in that API
    stand-in: rollback reads none)."""
    root = tmp_path_factory.mktemp("released")
    with fork_tools(), pytest.MonkeyPatch.context() as patch:
        through_prod(copied(deployed, root), patch)
    return root


@pytest.fixture
def in_prod(released: Path, tmp_path: Path) -> Path:
    return copied(released, tmp_path)


def test_a_release_reaches_staging_and_prod_as_the_same_digest_model_and_manifests(
    repo: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    dev = running(repo, DEV)
    smoke_passed(repo, DEV, monkeypatch)
    body = tmp_path / "body.md"
    outputs = tool(repo, "promote", "staging", "--body-file", str(body))
    assert outputs["changed"] == "true" and outputs["branch"].startswith("promote/staging/")
    assert git(repo, "ls-remote", "origin", outputs["branch"]).split()[0] == outputs["commit"]
    text = body.read_text()
    assert "```diff\n" in text and f"+++ b/{rendered.path(STAGING)}" in text
    assert f"+          value: {dev.model_sha256}" not in text or dev.digest in text
    for gate in ("image", "quality", "regression", "stage", "smoke", "manifests"):
        assert f"| {gate} |" in text
    assert f"{dev.digest[:19]} built by CI from {dev.git_commit[:12]}" in text
    merge(repo, outputs, STAGING)
    staging = running(repo, STAGING)
    assert (staging.image, staging.model_version, staging.model_sha256, staging.git_commit) == (
        dev.image, dev.model_version, dev.model_sha256, dev.git_commit)  # fmt: skip
    assert staging.namespace == STAGING.namespace and staging.model_stage == STAGING.stage
    assert stage_holder(repo, STAGING) == f"{NAME}@v0.1.0"
    smoke_passed(repo, STAGING, monkeypatch)
    merge(repo, tool(repo, "promote", "prod"), PROD)
    prod = running(repo, PROD)
    assert (prod.image, prod.model_sha256) == (dev.image, dev.model_sha256)
    assert stage_holder(repo, PROD) == f"{NAME}@v0.1.0"
    staging_text = git(repo, "show", f"origin/production:{rendered.path(STAGING)}")
    prod_text = git(repo, "show", f"origin/production:{rendered.path(PROD)}")
    assert rendered.differences(staging_text, prod_text) == []
    assert staging_text != prod_text  # namespace, replicas, resources: the environment fields


# --- the deploy pull request of promote.yml (gitops.deploy), its step run as GitHub runs it -------

GH_STUB = """\
#!/usr/bin/env bash
# Stands in for the GitHub API, which no test reaches: records the call, one argument a line.
printf '%s\\n' "$@" > "$GH_CALLS"
"""
DEPLOY_STEP = "Open the pull request that deploys it (the overlay's image and model, re-rendered)"


def deploy_step(
    repo: Path, tmp_path: Path, sha: str, version: str, n: int, registry: str = ""
) -> subprocess.CompletedProcess[str]:
    """promote.yml's deploy step in REPO for image N of SHA (model VERSION), pushed to REGISTRY
    (default: the one the overlays pull from), gh recorded in tmp_path/gh-calls."""
    stubs = tmp_path / "stub-bin"
    stubs.mkdir(exist_ok=True)
    (stubs / "gh").write_text(GH_STUB)
    (stubs / "gh").chmod(0o755)
    env = tool_env(
        GH_CALLS=str(tmp_path / "gh-calls"),
        IMAGE_REGISTRY=registry or image_name(repo).removesuffix("/modelops/model-server"),
        VERSION=version,
        MODEL_SHA256=model_sha(n),
        IMAGE_DIGEST=built(repo).get(str(n)) or build(repo, n, sha),
        GITHUB_SHA=sha,
    )
    env["PATH"] = f"{stubs}:{env['PATH']}"
    return run_step("promote.yml", DEPLOY_STEP, repo, env)


def test_the_deploy_step_opens_one_pull_request_that_pins_the_image_into_dev_only_once(
    repo: Path, tmp_path: Path
) -> None:
    commit = register(repo, "v0.2.0", accuracy=0.97)
    done = deploy_step(repo, tmp_path, commit, "v0.2.0", 2)
    assert done.returncode == 0, done.stderr
    branch = f"deploy/{DEV.stage}/{commit}"
    git(repo, "fetch", "-q", "origin")
    assert git(repo, "rev-parse", f"origin/{branch}~1") == git(repo, "rev-parse", "origin/main")
    changed = git(repo, "diff", "--name-only", "origin/main", f"origin/{branch}").split()
    assert changed == [
        f"{DEV.overlay}/kustomization.yaml", f"{DEV.overlay}/provenance.yaml", rendered.path(DEV),
    ]  # fmt: skip
    (tmp_path / "changed").write_text("\n".join(changed) + "\n")
    order = run_tool("check_pr_order", "--changed-files", str(tmp_path / "changed"), branch,
                     DEV.branch, check=False)  # fmt: skip
    assert order.returncode == 0, order.stderr  # the pr-guard takes it
    release = rendered.release(git(repo, "show", f"origin/{branch}:{rendered.path(DEV)}"))
    image = f"{image_name(repo)}:{commit}@{digest(repo, 2)}"
    assert release.image == image
    assert (release.model_version, release.model_sha256) == ("v0.2.0", model_sha(2))
    calls = (tmp_path / "gh-calls").read_text().splitlines()
    assert calls[:6] == ["pr", "create", "--base", DEV.branch, "--head", branch]
    assert calls[calls.index("--title") + 1] == f"deploy(dev): {NAME} v0.2.0, image {commit}"
    body = "\n".join(calls[calls.index("--body") + 1 :])
    assert f"+++ b/{rendered.path(DEV)}" in body and image in body
    assert f"{NAME}@v0.2.0" in body and model_sha(2) in body
    # the same push's run again (a re-run): nothing built, pushed or opened
    (tmp_path / "gh-calls").unlink()
    before = origin_state(repo)
    again = deploy_step(repo, tmp_path, commit, "v0.2.0", 2)
    assert again.returncode == 0, again.stderr
    assert f"deploy/{DEV.stage}/{commit} is proposed already" in again.stdout
    assert origin_state(repo) == before
    assert not (tmp_path / "gh-calls").exists()


def test_the_deploy_step_proposes_nothing_when_dev_runs_that_image(
    repo: Path, tmp_path: Path
) -> None:
    commit = git(repo, "rev-list", "-n1", f"{NAME}@v0.1.0").strip()  # deployed by the fixture
    before = origin_state(repo)
    done = deploy_step(repo, tmp_path, commit, "v0.1.0", 1)
    assert done.returncode == 0, done.stderr
    assert f"unchanged: the dev overlay already runs {commit}" in done.stdout
    assert origin_state(repo) == before
    assert not (tmp_path / "gh-calls").exists()


def test_the_deploy_step_refuses_an_overlay_that_pulls_from_another_registry(
    repo: Path, tmp_path: Path
) -> None:
    commit = register(repo, "v0.2.0", accuracy=0.97)
    before = origin_state(repo)
    done = deploy_step(repo, tmp_path, commit, "v0.2.0", 2, registry="ghcr.io/acme")
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: ") and f"pulls '{image_name(repo)}', not ghcr.io/acme/" in line
    assert origin_state(repo) == before
    assert not (tmp_path / "gh-calls").exists()


def diff_headers(markdown: str) -> list[str]:
    """The files a markdown text's diff blocks change, in order (their ``+++ b/`` lines)."""
    return [line[6:] for line in markdown.splitlines() if line.startswith("+++ b/")]


def test_rerunning_a_finished_promotion_changes_nothing(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    smoke_passed(repo, DEV, monkeypatch)
    merge(repo, tool(repo, "promote", "staging"), STAGING)
    before = origin_state(repo)
    done = run_tool("promote", "staging", cwd=repo)
    assert done.stdout.startswith("unchanged: staging already runs")
    assert origin_state(repo) == before


def test_an_open_promotion_is_not_proposed_twice(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    smoke_passed(repo, DEV, monkeypatch)
    first = tool(repo, "promote", "staging")
    before = origin_state(repo)
    again = tool(repo, "promote", "staging")
    assert (first["changed"], again["changed"]) == ("true", "false")
    assert origin_state(repo) == before


def test_dev_is_not_promoted_by_the_tool_and_prod_takes_only_what_staging_runs(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert refused(repo, "promote", "dev").startswith("error: gate order: dev is not promoted")
    before = origin_state(repo)
    line = refused(repo, "promote", "prod")  # skipping staging: staging runs nothing yet
    assert line == (
        "error: staging has no rendered/staging/manifests.yaml: nothing runs in staging yet"
    )
    assert origin_state(repo) == before
    smoke_passed(repo, DEV, monkeypatch)
    merge(repo, tool(repo, "promote", "staging"), STAGING)
    deploy_dev(repo, "v0.2.0", 2, accuracy=0.97)  # dev moves on; staging still runs v0.1.0
    smoke_passed(repo, STAGING, monkeypatch)
    outputs = tool(repo, "promote", "prod")
    assert outputs["version"] == "v0.1.0" and outputs["digest"] == digest(repo, 1)


def test_an_image_ci_did_not_sign_is_refused_at_the_image_gate_whatever_its_labels(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Someone with the registry's credentials pushed an image under a commit's tag, labelled as
    CI labels it, and it reached dev (pr-guard's image job refuses such a deploy pull request;
    here it was merged anyway): every later environment refuses it, and the same image signed
    with another key is refused too."""
    commit = register(repo, "v0.2.0", accuracy=0.97)
    name = image_name(repo)
    labels = {attestation.REVISION_LABEL: commit, "io.modelops.model.sha256": model_sha(2)}
    hand = push_image(name, repo.parent / "images", commit, labels)
    stranger = Signer().built(name, commit, repo.parent / "images")
    signed_elsewhere = ": its attestation is not signed by CI's key"
    for pushed, why in ((hand, " has no build attestation"), (stranger, signed_elsewhere)):
        outputs = tool(repo, "deploy", "--no-push", "--digest", pushed, "--model-version",
                       "v0.2.0", "--model-sha256", model_sha(2), commit)  # fmt: skip
        merge(repo, outputs, DEV)
        git(repo, "merge", "-q", "--ff-only", f"origin/{DEV.branch}")
        smoke_passed(repo, DEV, monkeypatch)
        before = origin_state(repo)
        line = refused(repo, "promote", "staging")
        assert line.startswith(f"error: gate image: image {name}@{pushed}{why}"), line
        assert origin_state(repo) == before


def test_a_version_that_does_not_hold_the_previous_stage_is_refused(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # v0.2.0 reaches main's rendered manifests, but its stage was never assigned.
    deploy_dev(repo, "v0.2.0", 2, assign=False, accuracy=0.97)
    smoke_passed(repo, DEV, monkeypatch)
    before = origin_state(repo)
    assert refused(repo, "promote", "staging") == (
        f"error: gate stage: {NAME} v0.2.0 does not hold the stage dev "
        f"(gto show: {NAME}@v0.1.0): promote it to dev first"
    )
    assert origin_state(repo) == before


def test_a_release_without_a_passed_smoke_test_is_refused(repo: Path) -> None:
    before = origin_state(repo)
    line = refused(repo, "promote", "staging")
    assert line.startswith("error: gate smoke: rendered/dev/manifests.yaml on main (commit ")
    assert line.endswith("has no check run smoke/dev by the evidence App 424242")
    assert origin_state(repo) == before


def test_thresholds_come_from_the_target_branch_so_lowering_them_with_the_model_is_refused(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = repo / "training" / "params.yaml"
    params.write_text(params.read_text().replace("accuracy: 0.95", "accuracy: 0.85"))
    deploy_dev(repo, "v0.2.0", 2, accuracy=0.9)  # one pull request: lower bar, worse model
    smoke_passed(repo, DEV, monkeypatch)
    before = origin_state(repo)
    assert refused(repo, "promote", "staging") == (
        "error: gate quality: accuracy 0.9 of v0.2.0 is below 0.95, the threshold of staging "
        "(training/params.yaml on staging)"
    )
    assert origin_state(repo) == before


def test_a_regression_against_the_model_the_target_runs_is_refused(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    smoke_passed(repo, DEV, monkeypatch)
    merge(repo, tool(repo, "promote", "staging"), STAGING)
    deploy_dev(repo, "v0.2.0", 2, roc_auc=0.975)  # above 0.97, but 0.021 below v0.1.0
    smoke_passed(repo, DEV, monkeypatch)
    before = origin_state(repo)
    assert refused(repo, "promote", "staging") == (
        "error: gate regression: roc_auc 0.975 of v0.2.0 is more than 0.01 below 0.996032 of "
        "v0.1.0, which staging runs"
    )
    assert origin_state(repo) == before


def test_an_overlay_change_beyond_the_environment_fields_is_refused(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    resources = repo / STAGING.overlay / "resources.yaml"
    patch = yaml.safe_load(resources.read_text())
    patch["spec"]["template"]["spec"]["containers"][0]["env"].append(
        {"name": "MODELOPS_LOG_LEVEL", "value": "debug"}
    )
    resources.write_text(yaml.safe_dump(patch))
    git(repo, "commit", "-qam", "staging: debug logs")
    git(repo, "push", "-q", "origin", "main")
    smoke_passed(repo, DEV, monkeypatch)
    line = refused(repo, "promote", "staging")
    assert line.startswith(
        "error: gate manifests: staging would differ from dev in Deployment/model "
        "spec.template.spec.containers[0].env"
    )


def test_verify_accepts_the_promotion_and_refuses_a_hand_edited_one(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    smoke_passed(repo, DEV, monkeypatch)
    outputs = tool(repo, "promote", "staging")
    assert run_tool(
        "promote", "staging", "--verify", outputs["commit"], cwd=repo
    ).stdout.startswith(f"ok: {outputs['commit'][:12]} promotes dev's release to staging")
    git(repo, "switch", "-q", "--detach", outputs["commit"])
    manifests = repo / rendered.path(STAGING)
    manifests.write_text(manifests.read_text().replace("minReplicas: 2", "minReplicas: 1"))
    git(repo, "commit", "-qam", "promote(staging): one replica will do")
    edited = git(repo, "rev-parse", "HEAD").strip()
    assert refused(repo, "promote", "staging", "--verify", edited).startswith(
        f"error: verify: {edited[:12]} is not a promotion onto staging's tip"
    )
    git(repo, "switch", "-q", "main")


def test_rollback_restores_the_previous_release_byte_for_byte_and_moves_the_stage_back(
    in_prod: Path, tmp_path: Path
) -> None:
    repo = in_prod
    assert running(repo, PROD).model_version == "v0.2.0"
    # the first-parent history of production: its promotions, newest first
    earlier = git(repo, "rev-list", "--first-parent", "origin/production").split()[1]
    before = git(repo, "show", f"{earlier}:{rendered.path(PROD)}")
    body = tmp_path / "body.md"
    outputs = tool(repo, "rollback", "prod", "--body-file", str(body))
    assert outputs["branch"].startswith("rollback/prod/") and outputs["version"] == "v0.1.0"
    text = body.read_text()
    assert "-        modelops.io/model-version: v0.2.0" in text
    # Production's branch carries rendered/dev and rendered/staging too (as main and staging had
    # them); only rendered/prod reaches the cluster: first and alone, the rest folded below.
    shown, _, folded = text.partition("<details>")
    assert diff_headers(shown) == [rendered.path(PROD)]
    assert f"### `{rendered.path(PROD)}`: what Argo CD applies to prod" in shown
    assert set(diff_headers(folded)) == {rendered.path(DEV), rendered.path(STAGING)}
    assert "not applied to prod" in folded and folded.rstrip().count("</details>") == 1
    ok = run_tool("rollback", "prod", "--verify", outputs["commit"], cwd=repo).stdout
    assert ok.startswith(f"ok: {outputs['commit'][:12]} restores production")
    merge(repo, outputs, PROD)
    assert git(repo, "show", f"origin/production:{rendered.path(PROD)}") == before
    assert running(repo, PROD).model_version == "v0.1.0"
    assert stage_holder(repo, PROD) == f"{NAME}@v0.1.0"
    assert stage_holder(repo, STAGING) == f"{NAME}@v0.2.0"  # only prod went back


def test_a_revert_of_the_last_promotion_passes_verify_an_older_one_or_the_first_state_does_not(
    in_prod: Path,
) -> None:
    repo = in_prod
    git(repo, "switch", "-q", "-c", "revert-7-promote", "origin/production")
    last, older = git(repo, "rev-list", "--first-parent", "--merges", "-n", "2", "HEAD").split()
    git(repo, "revert", "--no-edit", "-m", "1", last)  # what GitHub's Revert button commits
    head = git(repo, "rev-parse", "HEAD").strip()
    assert run_tool("rollback", "prod", "--verify", head, cwd=repo).returncode == 0
    # A hand-made "revert": the older manifests back, but the tree around them as it is now.
    git(repo, "reset", "-q", "--hard", "origin/production")
    git(repo, "checkout", older, "--", rendered.path(PROD))
    git(repo, "commit", "-qm", "Revert the v0.2.0 manifests only")
    head = git(repo, "rev-parse", "HEAD").strip()
    assert refused(repo, "rollback", "prod", "--verify", head).startswith(
        f"error: verify: {head[:12]} does not restore a state production had before"
    )
    # The fork's first commit is on production's first-parent history but has no rendered/prod:
    # restoring it would deploy nothing Argo CD can apply.
    first = git(repo, "rev-list", "--first-parent", "origin/production").split()[-1]
    assert git(repo, "ls-tree", "--name-only", "-r", first, "rendered").split() == [
        rendered.path(DEV)
    ]
    tip = git(repo, "rev-parse", "origin/production").strip()
    head = git(repo, "commit-tree", f"{first}^{{tree}}", "-p", tip, "-m", "back").strip()
    assert refused(repo, "rollback", "prod", "--verify", head) == (
        f"error: verify: {head[:12]} restores production as of {first[:12]}, which has no "
        f"{rendered.path(PROD)}: prod ran no release then"
    )


def test_with_monitoring_on_in_every_overlay_a_release_walks_to_prod_and_rolls_back(
    monitored_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole walk of test_a_release_reaches_... and test_rollback_..., with each overlay
    listing its monitoring component: each environment's PrometheusRule reads its own namespace,
    and the manifests gate passes every promotion all the same."""
    repo = through_prod(forked(monitored_template, tmp_path), monkeypatch)
    for env in environments.load():
        docs = rendered.documents(git(repo, "show", f"origin/{env.branch}:{rendered.path(env)}"))
        kinds = {doc["kind"]: doc for doc in docs}
        assert {"ServiceMonitor", "PrometheusRule"} <= set(kinds)
        groups = kinds["PrometheusRule"]["spec"]["groups"]
        namespaces = {
            found for group in groups for rule in group["rules"]
            for found in re.findall(r'\bnamespace="([^"]*)"', rule["expr"])
        }  # fmt: skip
        assert namespaces == {env.namespace}
    assert running(repo, PROD).model_version == "v0.2.0"
    earlier = git(repo, "rev-list", "--first-parent", "origin/production").split()[1]
    before = git(repo, "show", f"{earlier}:{rendered.path(PROD)}")
    outputs = tool(repo, "rollback", "prod")
    assert outputs["version"] == "v0.1.0"
    assert run_tool("rollback", "prod", "--verify", outputs["commit"], cwd=repo).returncode == 0
    merge(repo, outputs, PROD)
    assert git(repo, "show", f"origin/production:{rendered.path(PROD)}") == before
    assert "kind: PrometheusRule" in before
    assert stage_holder(repo, PROD) == f"{NAME}@v0.1.0"
