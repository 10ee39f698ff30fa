"""Argo CD: the ApplicationSet's git directories generator emulated on this repository.

The generator lists the directories of the repository matching `kustomize/overlays/*` and renders
the template once per directory with Go templates and missingkey=error. Here the same is done on
the files git tracks, with a renderer for the fields the template may use (an unknown field is an
error, as with missingkey=error); the Applications that come out are checked against the
AppProject and the overlays.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import PurePosixPath
from typing import Any

import pytest

from .conftest import ENVIRONMENTS, OVERLAYS, ROOT, Docs, documents, find, run

FIELD = re.compile(r"\{\{-?\s*\.path\.(\w+)\s*-?\}\}")


@pytest.fixture(scope="module")
def argocd(kubectl: str) -> Docs:
    return documents(run(kubectl, "kustomize", str(ROOT / "argocd")).stdout)


def tracked_directories(pattern: str) -> list[str]:
    """Directories matching PATTERN one level deep, as git (not the working tree) has them."""
    files = run("git", "ls-files", "--", pattern.rsplit("/", 1)[0], cwd=ROOT).stdout.split()
    depth = pattern.count("/") + 1
    dirs = {
        "/".join(PurePosixPath(f).parts[:depth])
        for f in files
        if len(PurePosixPath(f).parts) > depth
    }
    return sorted(d for d in dirs if fnmatch.fnmatch(d, pattern))


def render(node: Any, path: str) -> Any:
    """The template with `{{ .path.* }}` filled in; KeyError for a field Argo CD does not set."""
    params = {
        "path": path,
        "basename": PurePosixPath(path).name,
        "basenameNormalized": re.sub(r"[^a-z0-9-]", "-", PurePosixPath(path).name.lower()),
        "filename": "",
    }
    if isinstance(node, dict):
        return {key: render(value, path) for key, value in node.items()}
    if isinstance(node, list):
        return [render(value, path) for value in node]
    if isinstance(node, str):
        return FIELD.sub(lambda m: params[m.group(1)], node)
    return node


def applications(appset: dict[str, Any]) -> list[dict[str, Any]]:
    (generator,) = appset["spec"]["generators"]
    apps = []
    for entry in generator["git"]["directories"]:
        for directory in tracked_directories(entry["path"]):
            apps.append(render(appset["spec"]["template"], directory))
    return apps


def test_each_overlay_becomes_an_application_with_the_right_name_path_and_namespace(
    argocd: Docs, overlay_docs: dict[str, Docs]
) -> None:
    apps = {app["metadata"]["name"]: app for app in applications(find(argocd, "ApplicationSet"))}
    assert sorted(apps) == sorted(f"model-{env}" for env in ENVIRONMENTS)
    for env in ENVIRONMENTS:
        spec = apps[f"model-{env}"]["spec"]
        assert spec["source"]["path"] == f"kustomize/overlays/{env}"
        assert (ROOT / spec["source"]["path"] / "kustomization.yaml").is_file()
        namespaces = {doc["metadata"]["namespace"] for doc in overlay_docs[env]}
        assert namespaces == {spec["destination"]["namespace"]}
        assert spec["project"] == "modelops"


def test_the_template_uses_only_fields_the_generator_sets(argocd: Docs) -> None:
    appset = find(argocd, "ApplicationSet")
    assert appset["spec"]["goTemplate"] is True
    assert appset["spec"]["goTemplateOptions"] == ["missingkey=error"]
    broken = dict(appset["spec"]["template"], metadata={"name": "model-{{ .path.basenme }}"})
    with pytest.raises(KeyError):
        render(broken, "kustomize/overlays/dev")


def test_the_applications_stay_inside_the_project(
    argocd: Docs, overlay_docs: dict[str, Docs]
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
    used = {
        (doc["apiVersion"].rpartition("/")[0], doc["kind"])
        for docs in overlay_docs.values()
        for doc in docs
    }
    assert used == allowed, "the allow-list must be exactly the kinds the overlays render"
    assert project["spec"]["clusterResourceWhitelist"] == [{"group": "", "kind": "Namespace"}]


def test_the_repository_url_is_written_in_one_place(argocd: Docs) -> None:
    sources = "".join(p.read_text() for p in (ROOT / "argocd").glob("*.yaml"))
    url = find(argocd, "AppProject")["spec"]["sourceRepos"][0]
    assert sources.count(url) == 1
    appset = find(argocd, "ApplicationSet")["spec"]
    assert appset["generators"][0]["git"]["repoURL"] == url
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


def test_overlay_directories_exist_in_the_working_tree_as_git_has_them() -> None:
    assert tracked_directories("kustomize/overlays/*") == [
        f"kustomize/overlays/{p.name}" for p in sorted(OVERLAYS.iterdir()) if p.is_dir()
    ]
