"""Argo CD: the ApplicationSet's list generator emulated on this repository.

The generator renders the template once per element with Go templates and missingkey=error. Here
the same is done with a renderer for the fields the elements set (an unknown field is an error, as
with missingkey=error); the Applications that come out are checked against environments.toml, the
AppProject, the overlays and the rendered manifests.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from gitops import environments, rendered

from .conftest import ROOT, Docs, documents, find, run

ENVIRONMENTS = environments.load()

FIELD = re.compile(r"\{\{-?\s*\.(\w+)\s*-?\}\}")


@pytest.fixture(scope="module")
def argocd(kubectl: str) -> Docs:
    return documents(run(kubectl, "kustomize", str(ROOT / "argocd")).stdout)


def render(node: Any, params: dict[str, str]) -> Any:
    """The template with `{{ .field }}` filled in; KeyError for a field the element lacks."""
    if isinstance(node, dict):
        return {key: render(value, params) for key, value in node.items()}
    if isinstance(node, list):
        return [render(value, params) for value in node]
    if isinstance(node, str):
        return FIELD.sub(lambda m: params[m.group(1)], node)
    return node


def applications(appset: dict[str, Any]) -> list[dict[str, Any]]:
    (generator,) = appset["spec"]["generators"]
    return [
        render(appset["spec"]["template"], element) for element in generator["list"]["elements"]
    ]


def test_each_environment_becomes_an_application_tracking_its_own_branchs_rendered_manifests(
    argocd: Docs, overlay_docs: dict[str, Docs]
) -> None:
    apps = applications(find(argocd, "ApplicationSet"))
    assert [app["metadata"]["name"] for app in apps] == [f"model-{e.name}" for e in ENVIRONMENTS]
    for env, app in zip(ENVIRONMENTS, apps, strict=True):
        spec = app["spec"]
        assert spec["source"]["targetRevision"] == env.branch
        assert spec["source"]["path"] + "/manifests.yaml" == rendered.path(env)
        assert spec["source"]["directory"] == {"include": rendered.FILE}
        namespaces = {doc["metadata"]["namespace"] for doc in overlay_docs[env.name]}
        assert namespaces == {spec["destination"]["namespace"]} == {env.namespace}
        assert spec["project"] == "modelops"


def test_main_holds_the_rendered_manifests_of_dev_and_of_no_other_environment() -> None:
    tracked = run("git", "ls-files", "--", rendered.DIRECTORY, cwd=ROOT).stdout.split()
    assert tracked == [rendered.path(ENVIRONMENTS[0])]


def test_the_template_uses_only_fields_the_generator_sets(argocd: Docs) -> None:
    appset = find(argocd, "ApplicationSet")
    assert appset["spec"]["goTemplate"] is True
    assert appset["spec"]["goTemplateOptions"] == ["missingkey=error"]
    (element, *_) = appset["spec"]["generators"][0]["list"]["elements"]
    broken = dict(appset["spec"]["template"], metadata={"name": "model-{{ .envv }}"})
    with pytest.raises(KeyError):
        render(broken, element)


def kinds(overlays: dict[str, Docs]) -> set[tuple[str, str]]:
    """(API group, kind) of every object the overlays render."""
    return {
        (doc["apiVersion"].rpartition("/")[0], doc["kind"])
        for docs in overlays.values()
        for doc in docs
    }


def test_the_applications_stay_inside_the_project(
    argocd: Docs, overlay_docs: dict[str, Docs], monitored_overlay_docs: dict[str, Docs]
) -> None:
    project = find(argocd, "AppProject")
    assert project["metadata"]["name"] not in {"default", ""}
    destinations = {(d["server"], d["namespace"]) for d in project["spec"]["destinations"]}
    allowed = {(k["group"], k["kind"]) for k in project["spec"]["namespaceResourceWhitelist"]}
    for app in applications(find(argocd, "ApplicationSet")):
        spec = app["spec"]
        assert spec["project"] == project["metadata"]["name"]
        assert spec["source"]["repoURL"] in project["spec"]["sourceRepos"]
        assert (spec["destination"]["server"], spec["destination"]["namespace"]) in destinations
    # Turning monitoring on adds two kinds: a project listing only the overlays' kinds as they
    # are (monitoring off) would refuse them at sync.
    assert kinds(monitored_overlay_docs) - kinds(overlay_docs) == {
        ("monitoring.coreos.com", "PrometheusRule"),
        ("monitoring.coreos.com", "ServiceMonitor"),
    }
    assert kinds(monitored_overlay_docs) == allowed, (
        "the allow-list must be exactly the kinds the overlays render, monitoring on"
    )
    assert project["spec"]["clusterResourceWhitelist"] == [{"group": "", "kind": "Namespace"}]


def test_the_repository_url_is_written_in_one_place(argocd: Docs) -> None:
    sources = "".join(p.read_text() for p in (ROOT / "argocd").glob("*.yaml"))
    url = find(argocd, "AppProject")["spec"]["sourceRepos"][0]
    assert sources.count(url) == 1
    appset = find(argocd, "ApplicationSet")["spec"]
    assert appset["template"]["spec"]["source"]["repoURL"] == url


def test_the_applications_sync_automatically_and_safely(argocd: Docs) -> None:
    appset = find(argocd, "ApplicationSet")["spec"]
    assert appset["syncPolicy"]["preserveResourcesOnDeletion"] is True
    policy = appset["template"]["spec"]["syncPolicy"]
    assert policy["automated"] == {"prune": True, "selfHeal": True}
    assert {"CreateNamespace=true", "ServerSideApply=true"} <= set(policy["syncOptions"])
    assert policy["retry"]["limit"] > 0 and policy["retry"]["backoff"]["factor"] > 1


def test_every_field_of_the_project_is_commented() -> None:
    lines = (ROOT / "argocd" / "appproject.yaml").read_text().splitlines()
    fields = [(n, line) for n, line in enumerate(lines) if re.match(r"^  [a-zA-Z]+:", line)]
    assert len(fields) >= 8
    for number, line in fields:
        assert lines[number - 1].lstrip().startswith("#"), f"no comment above: {line.strip()}"
