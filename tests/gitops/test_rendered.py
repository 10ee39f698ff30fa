"""gitops.rendered: the rendered manifests Argo CD applies, the release they carry, and what may
differ between two environments' renderings of one release."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from gitops import environments, monitoring, rendered
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


@pytest.fixture(scope="module")
def monitored(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Every environment's rendering with its monitoring component on (gitops.monitoring)."""
    root = tmp_path_factory.mktemp("monitored")
    shutil.copytree(REPO / "kustomize", root / "kustomize")
    for env in environments.load():
        assert monitoring.turn_on(root, env)
    return {env.name: rendered.render(root, env) for env in environments.load()}


def rule_exprs(text: str) -> str:
    rule = next(d for d in rendered.documents(text) if d["kind"] == "PrometheusRule")
    return "\n".join(r["expr"] for group in rule["spec"]["groups"] for r in group["rules"])


def test_with_monitoring_on_the_namespace_in_the_rules_promql_is_an_environment_field(
    monitored: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for env in environments.load():
        assert f'namespace="{env.namespace}"' in rule_exprs(monitored[env.name])
    assert rendered.differences(monitored["dev"], monitored["staging"]) == []
    assert rendered.differences(monitored["staging"], monitored["prod"]) == []
    # Without its entry in the table, every rule's expression differs: the gate refused them all.
    without = [f for f in rendered.ENVIRONMENT_FIELDS if f[0] != "PrometheusRule"]
    monkeypatch.setattr(rendered, "ENVIRONMENT_FIELDS", tuple(without))
    found = rendered.differences(monitored["staging"], monitored["prod"])
    assert found and all(f.startswith("PrometheusRule/model spec.groups[") for f in found)
    assert {f.rpartition(".")[2] for f in found} == {"expr"}


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        (">= 0.2\n", ">= 0.3\n", "spec.groups[0].rules[5].expr"),  # ModelInputDrift's PSI
        ("for: 15m", "for: 1h", "spec.groups[0].rules[5].for"),
        ("[1h]", "[6h]", "spec.groups[0].rules[0].expr"),  # the drift window
        # a matcher on another environment's namespace, or on a label that only ends in it
        ('namespace="modelops-prod"', 'namespace="modelops-staging"',
         "spec.groups[0].rules[0].expr"),
        ('namespace="modelops-prod"', 'exported_namespace="modelops-prod"',
         "spec.groups[0].rules[0].expr"),
        ('namespace="modelops-prod"', 'namespace=~"modelops-prod"',
         "spec.groups[0].rules[0].expr"),
    ],
)  # fmt: skip
def test_any_other_difference_in_the_rules_is_still_named(
    monitored: dict[str, str], old: str, new: str, where: str
) -> None:
    assert old in monitored["prod"]
    changed = monitored["prod"].replace(old, new, 1)
    assert rendered.differences(monitored["staging"], changed) == [f"PrometheusRule/model {where}"]


def test_monitoring_on_in_only_one_environment_is_named() -> None:
    """The reason to turn it on everywhere at once (docs/monitoring.md)."""
    plain = rendered.render(REPO, PROD)
    rule = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
            "metadata": {"name": "model", "namespace": STAGING.namespace}, "spec": {}}  # fmt: skip
    with_rules = [*rendered.documents(plain), rule]
    assert rendered.differences(yaml.safe_dump_all(with_rules), plain) == [
        "PrometheusRule/model (only in one)"
    ]
