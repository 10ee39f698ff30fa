"""promote.yml run by act to the end: the image built once (podman, images/build-model-server.sh),
pushed to a real registry on loopback and read back by digest, the deploy pull request pinned to
that digest; then, after the merge, the provenance of the release is the same everywhere.

The sandbox is set up as docs/workflow.md tells a fork to: the dev overlay pulls from the
registry (IMAGE_REGISTRY), DVC_CONFIG names a DVC remote holding the pipeline's outputs. What a
self-hosted runner's machine would provide comes through the environment: the registry speaks
plain HTTP (MODELOPS_REGISTRY_TLS_VERIFY=false) and the DVC remote is a local directory, which
podman bind-mounts into the build (MODELOPS_DVC_REMOTE_DIR). Root: podman builds and plays pods.
"""

import json
import subprocess

import pytest
from act_harness import Sandbox, run_act, step_outputs

# github: test_act_walks' API stand-in (autouse), which pr-guard's status job mints the evidence
# App's token from, here too
from test_act_walks import (  # noqa: F401
    github,
    image_lines,
    open_pull_request,
    run_pull_request,
    statuses,
)
from workflow_helpers import git, run_tool, set_up_as_a_fork, tool_env

from gitops import attestation, environments, rendered
from images import pod as pods
from serving.provenance import HEADER as PROVENANCE_HEADER
from serving.provenance import provenance_id
from tests.registry_kit import Signer, push_image
from tests.workflows.act.github_api import EVIDENCE_APP
from training.params import load_artifact

pytestmark = pytest.mark.e2e  # podman builds the image; docker-registry, skopeo (Debian)

NAME = load_artifact().name  # the sandbox is a clone of HEAD
DEV = environments.load()[0]


def skopeo_inspect(reference: str, *options: str) -> dict:
    done = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", *options, f"docker://{reference}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def built(
    image_sandbox: tuple[Sandbox, str], loopback_registry: str
) -> tuple[Sandbox, str, dict[str, str]]:
    """promote.yml's run on a push to main: the sandbox, the registry prefix, its step outputs."""
    pods.base_images()  # the base images exist (make test-prereqs), else this fails here
    sandbox, dvc_config = image_sandbox
    registry = f"{loopback_registry}/acme"
    # CI's image signing key, as a fork makes it: its public half in evidence.toml on main (with
    # the evidence App of the API stand-in, which posts pr-guard's status), the private one the
    # secret IMAGE_SIGNING_KEY of the environment image-signing.
    signer = Signer()
    secret = signer.secret
    name = set_up_as_a_fork(sandbox.work, registry, signer.evidence_toml(EVIDENCE_APP["id"]))
    git(sandbox.work, "push", "-q", "origin", "main")
    # Someone with the registry's credentials pushed an image under the tag of this commit before
    # CI built it, labelled as CI labels it: promote.yml must not take (and sign) it.
    sha = git(sandbox.work, "rev-parse", "HEAD").strip()
    forged = {attestation.REVISION_LABEL: sha, "io.modelops.model.sha256": "ab" * 32}
    hand = push_image(name, sandbox.root / "hand-pushed", sha, forged)
    run = run_act(
        sandbox,
        "push",
        workflow="promote.yml",
        variables={"IMAGE_REGISTRY": registry},
        secrets={"DVC_CONFIG": dvc_config, attestation.KEY_VARIABLE: secret},
        env={
            "MODELOPS_REGISTRY_TLS_VERIFY": "false",
            "MODELOPS_DVC_REMOTE_DIR": str(sandbox.root / "dvc-remote"),
        },
    )
    assert run.returncode == 0, run.output[-6000:]
    assert (
        f"{registry}/modelops/model-server:{sha} is in the registry but CI did not sign it: rebuilt"
        in run.output
    )
    outputs = {**step_outputs(run), attestation.KEY_VARIABLE: secret}
    return sandbox, registry, {**outputs, "hand_pushed": hand}


def test_the_image_is_pushed_once_and_the_deploy_pull_request_pins_its_digest(
    built: tuple[Sandbox, str, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox, registry, outputs = built
    sha = git(sandbox.work, "rev-parse", "HEAD").strip()
    digest = outputs["image_digest"]
    by_tag = skopeo_inspect(f"{registry}/modelops/model-server:{sha}")
    assert by_tag["Digest"] == digest != outputs["hand_pushed"]  # rebuilt, the tag overwritten
    labels = skopeo_inspect(f"{registry}/modelops/model-server@{digest}")["Labels"]
    assert labels["io.modelops.model.sha256"] == outputs["model_sha256"]
    assert labels["io.modelops.model.version"] == outputs["version"] == "v0.1.0"
    branch = f"deploy/dev/{sha}"
    assert f"refs/heads/{branch}" in sandbox.origin_refs("refs/heads/deploy/")
    release = rendered.release(git(sandbox.origin, "show", f"{branch}:{rendered.path(DEV)}"))
    assert release.image == f"{registry}/modelops/model-server:{sha}@{digest}"
    assert (release.model_version, release.model_sha256) == ("v0.1.0", outputs["model_sha256"])
    (call,) = [c for c in sandbox.calls() if c["argv"][:2] == ["pr", "create"]]
    body = call["argv"][call["argv"].index("--body") + 1]
    title = call["argv"][call["argv"].index("--title") + 1]
    assert title == f"deploy(dev): {NAME} v0.1.0, image {sha}"  # the name from params.yaml
    assert f"+++ b/{rendered.path(DEV)}" in body and digest in body
    # CI signed it: the attestation, read back from the registry by digest, verifies with the key
    # evidence.toml names on main, and pr-guard's image check passes the deploy pull request.
    monkeypatch.setenv("MODELOPS_REGISTRY_TLS_VERIFY", "false")
    git(sandbox.work, "fetch", "-q", "origin")
    on_main = ("--ref", "origin/main", "--main", "origin/main")
    checked = run_tool(
        "attestation", "verify-overlay", DEV.name, "--at", f"origin/{branch}", *on_main,
        cwd=sandbox.work,
    )  # fmt: skip
    assert checked.stdout.startswith(
        f"ok: {release.image}: {digest[:19]} built by CI from {sha[:12]}"
    )


def test_pr_guard_refuses_a_deploy_pull_request_pinning_a_hand_pushed_image_and_passes_cis(
    built: tuple[Sandbox, str, dict[str, str]],
) -> None:
    """A branch named deploy/dev/<sha> by hand whose overlay and rendered file pin the image the
    contributor pushed under the commit's tag (labels as CI's): pr-guard's job image reads its
    attestation from the registry by digest and fails the check order. promote.yml's own deploy
    pull request, the same files with CI's digest, passes."""
    sandbox, registry, outputs = built
    sha = git(sandbox.work, "rev-parse", "origin/main").strip()
    git(sandbox.work, "fetch", "-q", "origin")
    paths = (f"{DEV.overlay}/kustomization.yaml", rendered.path(DEV))
    ours = {p: git(sandbox.origin, "show", f"deploy/dev/{sha}:{p}") for p in paths}
    theirs = {
        p: t.replace(outputs["image_digest"], outputs["hand_pushed"]) for p, t in ours.items()
    }
    assert theirs != ours
    options = {
        "workflow": "pr-guard.yml",
        "variables": {"IMAGE_REGISTRY": registry},
        "env": {"MODELOPS_REGISTRY_TLS_VERIFY": "false"},
    }
    for changes, state in ((theirs, "failure"), (ours, "success")):
        payload = open_pull_request(sandbox, f"deploy/dev/{sha}", "main", changes)
        run = run_pull_request(sandbox, payload, "pull_request_target", **options)
        head = payload["pull_request"]["head"]["sha"]  # type: ignore[index]
        expected = [(head, "order", state, EVIDENCE_APP["slug"])]
        assert statuses(sandbox) == expected, run.output[-4000:]
        [line] = image_lines(run)
        if state == "failure":
            name = f"{registry}/modelops/model-server"
            assert line == (
                f"error: image {name}@{outputs['hand_pushed']} has no build attestation "
                f"({name}:sha256-{outputs['hand_pushed'][7:]}.att): only images CI built and "
                "signed from main may be deployed"
            )
        else:
            by_ci = f"{outputs['image_digest'][:19]} built by CI from {sha[:12]} ({sha})"
            assert line.endswith(by_ci), line


def test_a_second_run_of_the_same_push_rebuilds_pushes_and_proposes_nothing(
    built: tuple[Sandbox, str, dict[str, str]], image_sandbox: tuple[Sandbox, str]
) -> None:
    sandbox, registry, outputs = built
    sha = git(sandbox.work, "rev-parse", "HEAD").strip()
    # GitHub's checkout (fetch-depth: 0) holds the tag the first run pushed; act copies the
    # sandbox's work tree, which lacks it until fetched (else GTO registers v0.1.0 again).
    git(sandbox.work, "fetch", "-q", "--tags", "origin")
    refs_before = git(sandbox.origin, "for-each-ref")
    run = run_act(
        sandbox,
        "push",
        workflow="promote.yml",
        variables={"IMAGE_REGISTRY": registry},
        secrets={
            "DVC_CONFIG": image_sandbox[1],
            attestation.KEY_VARIABLE: outputs[attestation.KEY_VARIABLE],
        },
        env={"MODELOPS_REGISTRY_TLS_VERIFY": "false"},
    )
    assert run.returncode == 0, run.output[-6000:]
    assert f"{registry}/modelops/model-server:{sha} is in the registry already" in run.output
    assert f"deploy/dev/{sha} is proposed already" in run.output
    assert step_outputs(run)["image_digest"] == outputs["image_digest"]
    assert git(sandbox.origin, "for-each-ref") == refs_before  # no tag, no branch
    assert [c for c in sandbox.calls() if c["argv"][:2] == ["pr", "create"]] == []
    assert (
        skopeo_inspect(f"{registry}/modelops/model-server:{sha}")["Digest"]
        == (outputs["image_digest"])
    )


def test_one_release_has_one_provenance_in_the_pod_the_registry_the_manifests_and_gto(
    built: tuple[Sandbox, str, dict[str, str]],
) -> None:
    sandbox, registry, outputs = built
    sha = git(sandbox.work, "rev-parse", "HEAD").strip()
    # the deploy pull request merged, then environments.yml's stage job on that push
    deploy = git(sandbox.origin, "rev-parse", f"deploy/dev/{sha}").strip()
    git(sandbox.origin, "update-ref", "refs/heads/main", deploy, sha)
    git(sandbox.work, "fetch", "-q", "origin")
    git(sandbox.work, "switch", "-q", "--detach", "origin/main")
    git(sandbox.work, "branch", "-f", "main", "origin/main")
    git(sandbox.work, "switch", "-q", "main")
    run = run_act(sandbox, "push", workflow="environments.yml")
    assert run.returncode == 0, run.output[-4000:]
    git(sandbox.work, "fetch", "-q", "--tags", "origin")

    text = git(sandbox.work, "show", f"origin/main:{rendered.path(DEV)}")
    manifests = rendered.release(text)
    registry_image = skopeo_inspect(f"{registry}/modelops/model-server@{manifests.digest}")
    labels = registry_image["Labels"]
    gto = subprocess.run(
        ["gto", "show", f"{NAME}#{DEV.stage}", "--ref"], cwd=sandbox.work, env=tool_env(),
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    tagged = git(sandbox.work, "rev-list", "-n", "1", gto).strip()
    with pods.running_rendered(text, tls_verify=False) as pod:  # pulled by digest
        status, metadata, _ = pods.call(f"{pod.base}/v2/models/{NAME}")
        status_predict, _, headers = pods.call(
            f"{pod.base}/predict", {"instances": [pods.sample_row()]}
        )
    assert (status, status_predict) == (200, 200)
    served = metadata["parameters"]
    # The answer's provenance is the metadata's: its id is the one those values give.
    assert headers[PROVENANCE_HEADER] == served["provenance_id"] == provenance_id(served)
    rows = {
        "version": (served["version"], labels["io.modelops.model.version"],
                    manifests.model_version, gto.split("@")[1]),
        "model sha256": (served["model_sha256"], labels["io.modelops.model.sha256"],
                         manifests.model_sha256, outputs["model_sha256"]),
        "image digest": (served["image_digest"], registry_image["Digest"], manifests.digest,
                         outputs["image_digest"]),
        "git commit": (served["git_commit"], labels["org.opencontainers.image.revision"],
                       manifests.git_commit, tagged),
    }  # fmt: skip
    for field, values in rows.items():
        assert len(set(values)) == 1, f"{field}: {values}"
    assert served["stage"] == manifests.model_stage == DEV.stage
    assert rows["git commit"][0] == sha
