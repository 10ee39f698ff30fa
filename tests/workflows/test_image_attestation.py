"""Only images CI built from main (issue 21, point 4): gitops.attestation and the `image` gate,
against the session's real loopback registry (conftest.loopback_registry) and a real git
repository with a bare origin.

"CI" here is what promote.yml's signing step runs: ``python -m gitops.attestation sign`` with the
key as the environment variable IMAGE_SIGNING_KEY, after the image was pushed (a tiny OCI image
made by tests/registry_kit.py, pushed with skopeo as promote.yml's push would). The
contributor with push rights to the registry (a repository secret any branch's workflow reads)
pushes images, tags and attestations of their own, but holds no copy of CI's key.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from workflow_helpers import git, run_tool, tool_env

from gitops import attestation, environments, gates, rendered
from tests.registry_kit import push_image, skopeo

pytestmark = pytest.mark.e2e  # docker-registry and skopeo are Debian packages (root installs)

DEV, STAGING, _ = environments.load()


def sign(
    repo: Path, key: str, name: str, digest: str, commit: str
) -> subprocess.CompletedProcess[str]:
    """promote.yml's signing step: gitops.attestation sign with KEY as IMAGE_SIGNING_KEY."""
    return subprocess.run(
        ["python", "-m", "gitops.attestation", "sign", "--image", name, "--digest", digest,
         "--commit", commit, "--run", "https://github.com/acme/modelops/actions/runs/1"],
        cwd=repo, env=tool_env(**{attestation.KEY_VARIABLE: key}), capture_output=True, text=True,
    )  # fmt: skip


def verify(repo: Path, image: str) -> subprocess.CompletedProcess[str]:
    return run_tool("attestation", "verify", image, "--ref", "origin/main",
                    "--main", "origin/main", cwd=repo, check=False)  # fmt: skip


@pytest.fixture
def setup(
    loopback_registry: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """A repository whose main (in a bare origin) names CI's public key in evidence.toml, and one
    image CI built from main's commit and signed: NAME:COMMIT@DIGEST."""
    monkeypatch.setenv("MODELOPS_REGISTRY_TLS_VERIFY", "false")
    secret, public = attestation.keygen()
    repo = tmp_path / "work"
    repo.mkdir()
    git(tmp_path, "init", "-q", "--bare", "-b", "main", "origin.git")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.name", "test")
    git(repo, "config", "user.email", "test@example.org")
    (repo / attestation.FILE).write_text(f'[app]\nid = 1\n\n[images]\npublic_key = "{public}"\n')
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "CI's image signing key")
    git(repo, "remote", "add", "origin", str(tmp_path / "origin.git"))
    git(repo, "push", "-q", "origin", "main", "main:staging")
    git(repo, "fetch", "-q", "origin")
    commit = git(repo, "rev-parse", "HEAD").strip()
    name = f"{loopback_registry}/acme-{tmp_path.name.lower()}/modelops/model-server"
    images = tmp_path / "images"
    images.mkdir()
    digest = push_image(name, images, commit, {attestation.REVISION_LABEL: commit})
    signed = sign(repo, secret, name, digest, commit)
    assert signed.returncode == 0, signed.stderr
    yield {"repo": str(repo), "name": name, "commit": commit, "digest": digest,
           "secret": secret, "images": str(images)}  # fmt: skip


def test_an_image_ci_built_from_main_and_signed_passes(setup: dict[str, str]) -> None:
    repo, image = Path(setup["repo"]), f"{setup['name']}:{setup['commit']}@{setup['digest']}"
    done = verify(repo, image)
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        f"ok: {image}: {setup['digest'][:19]} built by CI from {setup['commit'][:12]} "
        "(origin/main)\n"
    )
    # stored next to the image, under the tag derived from its digest, as an ordinary image
    stored = skopeo("inspect", "--raw", "--tls-verify=false",
                    f"docker://{setup['name']}:sha256-{setup['digest'][7:]}.att")  # fmt: skip
    statement = json.loads(json.loads(stored.stdout)["annotations"][attestation.STATEMENT])
    assert (statement["digest"], statement["git_commit"]) == (setup["digest"], setup["commit"])


def test_a_hand_pushed_image_with_a_valid_looking_tag_and_forged_labels_is_refused(
    setup: dict[str, str],
) -> None:
    """The contributor pushes their own image under the tag of main's commit, with the labels
    CI's image has: the tag and the labels say "CI built this from main", the registry holds no
    attestation of it."""
    repo, name, commit = Path(setup["repo"]), setup["name"], setup["commit"]
    forged = push_image(name, Path(setup["images"]), commit, {attestation.REVISION_LABEL: commit})
    labels = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{name}@{forged}").stdout)
    assert labels["Labels"][attestation.REVISION_LABEL] == commit  # what a label check passes
    done = verify(repo, f"{name}:{commit}@{forged}")
    assert done.returncode == 1
    assert done.stderr == (
        f"error: image {name}@{forged} has no build attestation ({name}:sha256-{forged[7:]}.att):"
        " only images CI built and signed from main may be deployed\n"
    )


def test_an_attestation_signed_by_another_key_is_refused(setup: dict[str, str]) -> None:
    """The contributor signs their image's attestation with a key of their own."""
    repo, name, commit = Path(setup["repo"]), setup["name"], setup["commit"]
    forged = push_image(name, Path(setup["images"]), commit, {attestation.REVISION_LABEL: commit})
    theirs, _ = attestation.keygen()
    assert sign(repo, theirs, name, forged, commit).returncode == 0
    done = verify(repo, f"{name}:{commit}@{forged}")
    assert done.returncode == 1
    assert done.stderr == (
        f"error: image {name}@{forged}: its attestation is not signed by CI's key "
        "(evidence.toml images.public_key)\n"
    )
    # the same image signed with CI's key passes: only the key made the difference
    assert sign(repo, setup["secret"], name, forged, commit).returncode == 0
    assert verify(repo, f"{name}:{commit}@{forged}").returncode == 0


def test_an_attestation_for_another_digest_is_refused(setup: dict[str, str]) -> None:
    """The contributor copies CI's genuine attestation of another image to their image's tag."""
    repo, name, commit = Path(setup["repo"]), setup["name"], setup["commit"]
    forged = push_image(name, Path(setup["images"]), commit, {attestation.REVISION_LABEL: commit})
    skopeo("copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false",
           f"docker://{name}:sha256-{setup['digest'][7:]}.att",
           f"docker://{name}:sha256-{forged[7:]}.att")  # fmt: skip
    done = verify(repo, f"{name}:{commit}@{forged}")
    assert done.returncode == 1
    assert done.stderr == (
        f"error: image {name}@{forged}: its attestation is for {setup['digest']!r}, "
        "another digest\n"
    )


def test_an_image_built_from_a_commit_not_in_main_is_refused(setup: dict[str, str]) -> None:
    """Signed with CI's key, but from a commit main does not hold (a branch's)."""
    repo, name = Path(setup["repo"]), setup["name"]
    git(repo, "switch", "-qc", "experiment/x")
    git(repo, "commit", "-q", "--allow-empty", "-m", "not reviewed")
    branch = git(repo, "rev-parse", "HEAD").strip()
    digest = push_image(name, Path(setup["images"]), branch, {attestation.REVISION_LABEL: branch})
    assert sign(repo, setup["secret"], name, digest, branch).returncode == 0
    done = verify(repo, f"{name}:{branch}@{digest}")
    assert done.returncode == 1
    assert done.stderr == (
        f"error: image {name}@{digest}: built from {branch[:12]}, which is not in origin/main\n"
    )
    # once merged into main, the same attestation holds
    git(repo, "push", "-q", "origin", "experiment/x:main")
    git(repo, "fetch", "-q", "origin")
    assert verify(repo, f"{name}:{branch}@{digest}").returncode == 0


def test_an_image_tagged_as_another_commit_than_ci_built_it_from_is_refused(
    setup: dict[str, str],
) -> None:
    repo, name, digest = Path(setup["repo"]), setup["name"], setup["digest"]
    done = verify(repo, f"{name}:{'f' * 40}@{digest}")
    assert done.returncode == 1
    assert done.stderr == (
        f"error: image {name}@{digest}: tagged {'f' * 40}, but CI built it from {setup['commit']}\n"
    )


def candidate(repo: Path, image: str) -> gates.Candidate:
    """A promotion dev -> staging of IMAGE, as gitops.promote builds it (the gate reads only the
    image, the target branch and main)."""
    release = rendered.Release(image, DEV.namespace, "m", "v0.1.0", DEV.stage, "0" * 64, "", "")
    return gates.Candidate(DEV, STAGING, "refs/remotes/origin/main",
                           "refs/remotes/origin/staging", release, "", "", None)  # fmt: skip


def test_the_image_gate_of_a_promotion_refuses_a_hand_pushed_image_and_passes_cis(
    setup: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, name, commit = Path(setup["repo"]), setup["name"], setup["commit"]
    monkeypatch.chdir(repo)
    ours = f"{name}:{commit}@{setup['digest']}"
    assert gates.image(candidate(repo, ours)).startswith(f"{setup['digest'][:19]} built by CI")
    forged = push_image(name, Path(setup["images"]), commit, {attestation.REVISION_LABEL: commit})
    with pytest.raises(gates.GateError, match=r"^gate image: image .* has no build attestation"):
        gates.image(candidate(repo, f"{name}:{commit}@{forged}"))
    assert gates.GATES[0] == ("image", gates.image)  # asked by every promotion, first
    # a target branch whose evidence.toml has no [images] table is not set up: it refuses every
    # image, CI's too (an unchecked image would be any image)
    (repo / attestation.FILE).write_text("[app]\nid = 1\n")
    git(repo, "commit", "-qam", "no image key")
    git(repo, "push", "-q", "origin", "HEAD:staging")
    git(repo, "fetch", "-q", "origin")
    for image in (ours, f"{name}:{commit}@{forged}"):
        with pytest.raises(gates.GateError) as refused:
            gates.image(candidate(repo, image))
        assert str(refused.value) == (
            f"gate image: image {image} cannot be checked: evidence.toml on "
            "refs/remotes/origin/staging names no image signing key ([images] public_key; "
            "python -m gitops.attestation keygen, docs/workflow.md)"
        )
