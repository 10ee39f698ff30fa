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
from workflow_helpers import git, run_tool, tool_env

from gitops import environments, rendered
from images import pod as pods
from serving.provenance import HEADER as PROVENANCE_HEADER
from serving.provenance import provenance_id

pytestmark = pytest.mark.e2e  # podman builds the image; docker-registry, skopeo (Debian)

NAME = "diagnosis-classifier"
DEV = environments.load()[0]
OVERLAY_IMAGE = "newName: localhost/modelops/model-server"


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
    kustomization = sandbox.work / DEV.overlay / "kustomization.yaml"
    text = kustomization.read_text()
    assert OVERLAY_IMAGE in text
    kustomization.write_text(
        text.replace(OVERLAY_IMAGE, f"newName: {registry}/modelops/model-server")
    )
    run_tool("rendered", cwd=sandbox.work)
    git(sandbox.work, "commit", "-qam", "dev pulls from the registry")
    git(sandbox.work, "push", "-q", "origin", "main")
    run = run_act(
        sandbox,
        "push",
        workflow="promote.yml",
        variables={"IMAGE_REGISTRY": registry},
        secrets={"DVC_CONFIG": dvc_config},
        env={
            "MODELOPS_REGISTRY_TLS_VERIFY": "false",
            "MODELOPS_DVC_REMOTE_DIR": str(sandbox.root / "dvc-remote"),
        },
    )
    assert run.returncode == 0, run.output[-6000:]
    return sandbox, registry, step_outputs(run)


def test_the_image_is_pushed_once_and_the_deploy_pull_request_pins_its_digest(
    built: tuple[Sandbox, str, dict[str, str]],
) -> None:
    sandbox, registry, outputs = built
    sha = git(sandbox.work, "rev-parse", "HEAD").strip()
    digest = outputs["image_digest"]
    by_tag = skopeo_inspect(f"{registry}/modelops/model-server:{sha}")
    assert by_tag["Digest"] == digest
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
    assert f"+++ b/{rendered.path(DEV)}" in body and digest in body


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
        secrets={"DVC_CONFIG": image_sandbox[1]},
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
