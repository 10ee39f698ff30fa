"""gitops.rendered: the rendered manifests Argo CD applies, the release they carry, and what may
differ between two environments' renderings of one release."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from gitops import environments, rendered
from tests.workflows.workflow_helpers import REPO, run_tool

DEV, STAGING, PROD = environments.load()


def test_the_committed_rendered_manifests_are_what_the_overlays_render() -> None:
    done = run_tool("rendered", "--check", cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr


def test_the_check_names_a_stale_file_and_changes_nothing(tmp_path: Path) -> None:
    for part in ("kustomize", "rendered"):
        shutil.copytree(REPO / part, tmp_path / part)
    scaling = tmp_path / DEV.overlay / "scaling.yaml"
    scaling.write_text(scaling.read_text().replace("maxReplicas: 2", "maxReplicas: 3"))
    before = (tmp_path / rendered.path(DEV)).read_text()
    done = run_tool("rendered", "--check", cwd=tmp_path, check=False)
    assert (done.returncode, done.stderr) == (
        1,
        "error: rendered/dev/manifests.yaml is not what kustomize/overlays/dev renders: "
        "run make render and commit it\n",
    )
    assert (tmp_path / rendered.path(DEV)).read_text() == before
    assert run_tool("rendered", cwd=tmp_path).stdout == "rendered rendered/dev/manifests.yaml\n"
    assert "maxReplicas: 3" in (tmp_path / rendered.path(DEV)).read_text()


def test_an_unknown_environment_is_a_usage_error() -> None:
    done = run_tool("rendered", "qa", cwd=REPO, check=False)
    assert done.returncode == 2
    assert done.stderr.startswith("error: unknown environment 'qa' (one of dev, staging, prod)")


@pytest.fixture(scope="module")
def renderings() -> dict[str, str]:
    return {env.name: rendered.render(REPO, env) for env in environments.load()}


def test_the_release_is_read_from_the_model_server_deployment(renderings: dict[str, str]) -> None:
    release = rendered.release(renderings["prod"])
    kustomization = yaml.safe_load((REPO / PROD.overlay / "kustomization.yaml").read_text())
    (entry,) = [e for e in kustomization["images"] if e["name"] == "modelops/model-server"]
    assert release.image == f"{entry['newName']}:{entry['newTag']}@{entry['digest']}"
    assert (release.digest, release.git_commit) == (entry["digest"], entry["newTag"])
    assert (release.namespace, release.model_stage) == (PROD.namespace, PROD.stage)


def test_the_environments_differ_only_in_the_environment_fields(
    renderings: dict[str, str],
) -> None:
    assert renderings["dev"] != renderings["prod"]
    assert rendered.differences(renderings["dev"], renderings["prod"]) == []
    assert rendered.differences(renderings["staging"], renderings["prod"]) == []


@pytest.mark.parametrize(
    ("edit", "where"),
    [
        (lambda d: d["spec"]["template"]["spec"]["containers"][0].update(image="other:1"),
         "Deployment/model spec.template.spec.containers[0].image"),
        (lambda d: d["spec"]["template"]["metadata"]["annotations"].update(
            {"modelops.io/model-version": "v9.9.9"}),
         "Deployment/model spec.template.metadata.annotations.modelops.io/model-version"),
        (lambda d: d["spec"]["template"]["spec"].update(serviceAccountName="root"),
         "Deployment/model spec.template.spec.serviceAccountName"),
    ],
)  # fmt: skip
def test_any_other_difference_is_named(renderings: dict[str, str], edit, where: str) -> None:
    docs = rendered.documents(renderings["prod"])
    edit(rendered.deployment(docs))
    changed = yaml.safe_dump_all(docs)
    assert rendered.differences(renderings["staging"], changed) == [where]


def test_a_rendering_without_the_model_server_is_refused_in_one_line() -> None:
    with pytest.raises(rendered.ToolError, match="rendered manifests hold 0 Deployments, not one"):
        rendered.release("apiVersion: v1\nkind: Service\nmetadata:\n  name: model\n")
