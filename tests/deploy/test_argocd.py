"""Argo CD: the ApplicationSet's list generator emulated on this repository, and the app of apps.

The generator renders the template once per element with Go templates and missingkey=error. Here
the same is done with a renderer for the fields the elements set (an unknown field is an error, as
with missingkey=error); the Applications that come out are checked against environments.toml, the
AppProject, the overlays and the rendered manifests. The app of apps (argocd/application.yaml)
must read argocd/ from the last environment's branch, in a project that allows exactly what
argocd/ holds and nothing to the model's environments.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from gitops import environments, rendered
from tests.workflows.act import github_api

from . import notifications
from .conftest import ROOT, Docs, documents, find, run

ENVIRONMENTS = environments.load()
#: The model environments' project, and the app of apps with its project.
PROJECT = "modelops"
APP_OF_APPS = "modelops-argocd"

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
    project = find(argocd, "AppProject", PROJECT)
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
    url = find(argocd, "AppProject", PROJECT)["spec"]["sourceRepos"][0]
    assert sources.count(url) == 1
    appset = find(argocd, "ApplicationSet")["spec"]
    assert appset["template"]["spec"]["source"]["repoURL"] == url
    assert find(argocd, "Application", APP_OF_APPS)["spec"]["source"]["repoURL"] == url
    assert find(argocd, "AppProject", APP_OF_APPS)["spec"]["sourceRepos"] == [url]


def test_the_applications_sync_automatically_and_safely(argocd: Docs) -> None:
    appset = find(argocd, "ApplicationSet")["spec"]
    assert appset["syncPolicy"]["preserveResourcesOnDeletion"] is True
    policy = appset["template"]["spec"]["syncPolicy"]
    assert policy["automated"] == {"prune": True, "selfHeal": True}
    assert {"CreateNamespace=true", "ServerSideApply=true"} <= set(policy["syncOptions"])
    assert policy["retry"]["limit"] > 0 and policy["retry"]["backoff"]["factor"] > 1


@pytest.mark.parametrize("file", ["appproject.yaml", "appproject-argocd.yaml"])
def test_every_field_of_the_project_is_commented(file: str) -> None:
    lines = (ROOT / "argocd" / file).read_text().splitlines()
    fields = [(n, line) for n, line in enumerate(lines) if re.match(r"^  [a-zA-Z]+:", line)]
    assert len(fields) >= 8
    for number, line in fields:
        assert lines[number - 1].lstrip().startswith("#"), f"no comment above: {line.strip()}"


def test_the_app_of_apps_applies_argocd_from_the_last_environments_branch(argocd: Docs) -> None:
    """argocd/ reaches the cluster from production only: after experiment -> main -> staging ->
    production, like every change (tests/gitops/test_untried.py walks one there)."""
    app = find(argocd, "Application", APP_OF_APPS)
    spec = app["spec"]
    assert app["metadata"]["namespace"] == "argocd"
    assert spec["source"]["targetRevision"] == ENVIRONMENTS[-1].branch
    assert spec["source"]["path"] == "argocd"
    assert spec["project"] == APP_OF_APPS
    assert spec["destination"] == {
        "server": "https://kubernetes.default.svc",
        "namespace": "argocd",
    }
    assert spec["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}


def outside(project: dict[str, Any], docs: Docs) -> list[str]:
    """The objects of DOCS that PROJECT's allow-lists would refuse at sync."""
    spec = project["spec"]
    namespaces = {d["namespace"] for d in spec["destinations"]}
    allowed = {(k["group"], k["kind"]) for k in spec["namespaceResourceWhitelist"]}
    problems = []
    for doc in docs:
        kind = (doc["apiVersion"].rpartition("/")[0], doc["kind"])
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        if kind not in allowed:
            problems.append(f"{where}: kind not allowed")
        if doc["metadata"].get("namespace") not in namespaces:
            problems.append(f"{where}: namespace not allowed")
    return problems


def test_the_app_of_apps_project_allows_what_argocd_holds_and_the_models_project_none_of_it(
    argocd: Docs,
) -> None:
    project = find(argocd, "AppProject", APP_OF_APPS)
    assert outside(project, argocd) == []
    assert project["spec"]["clusterResourceWhitelist"] == []
    assert {(k["group"], k["kind"]) for k in project["spec"]["namespaceResourceWhitelist"]} == {
        (doc["apiVersion"].rpartition("/")[0], doc["kind"]) for doc in argocd
    }, "the allow-list must be exactly the kinds argocd/ holds"
    # An object argocd/ does not hold is refused: a Secret (the notifications' token is created
    # out of band, never applied from Git), or anything elsewhere.
    extra = [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x", "namespace": "argocd"}}
    ]
    assert outside(project, extra) == ["Secret/x: kind not allowed"]
    # The model's environments cannot create Argo CD objects nor deploy into its namespace.
    assert outside(find(argocd, "AppProject", PROJECT), argocd) == [
        problem for doc in argocd for problem in (
            *([f"{doc['kind']}/{doc['metadata']['name']}: kind not allowed"]
              if doc["apiVersion"].startswith("argoproj.io/") else []),
            f"{doc['kind']}/{doc['metadata']['name']}: namespace not allowed",
        )
    ]  # fmt: skip
    # The projects are synced before the Applications that name them.
    for name in (PROJECT, APP_OF_APPS):
        wave = find(argocd, "AppProject", name)["metadata"]["annotations"]
        assert int(wave["argocd.argoproj.io/sync-wave"]) < 0


# --- Argo CD tells GitHub when an environment synced (argocd/notifications.yaml) ----------------
REVISION = "5a" * 20
WORKFLOW = ROOT / ".github" / "workflows" / "environments.yml"


def test_argocd_holds_the_notifications_configmap_argo_cd_reads(argocd: Docs) -> None:
    cm = find(argocd, "ConfigMap", "argocd-notifications-cm")
    assert cm["metadata"]["namespace"] == "argocd"
    assert cm == notifications.configmap()
    # The token is a reference into argocd-notifications-secret, never a value in Git.
    (service,) = notifications.entries(cm, "service.webhook.").values()
    headers = {h["name"]: h["value"] for h in service["headers"]}
    assert headers["Authorization"] == "Bearer $github-dispatch-token"
    assert service["url"] == "https://api.github.com"


def test_every_generated_application_subscribes_to_a_trigger_and_service_the_configmap_defines(
    argocd: Docs,
) -> None:
    cm = find(argocd, "ConfigMap", "argocd-notifications-cm")
    apps = applications(find(argocd, "ApplicationSet"))
    assert [notifications.subscriptions(app) for app in apps] == [
        [("on-synced-healthy", "github-dispatch")] for _ in ENVIRONMENTS
    ]
    assert notifications.subscription_problems(apps, cm) == []
    # A rename on one side only is caught: the trigger, the service, a template; and an
    # Application that subscribes to nothing.
    data = cm["data"]
    renamed = {**cm, "data": {
        ("trigger.on-synced" if k == "trigger.on-synced-healthy" else
         "service.webhook.github" if k == "service.webhook.github-dispatch" else k): v
        for k, v in data.items()
    }}  # fmt: skip
    renamed["data"]["trigger.on-synced"] = data["trigger.on-synced-healthy"].replace(
        "[environment-synced]", "[synced]"
    )
    bare = [{**apps[0], "metadata": {**apps[0]["metadata"], "annotations": {}}}]
    assert notifications.subscription_problems([apps[0], *bare], renamed) == [
        "model-dev: no trigger.on-synced-healthy",
        "model-dev: no service.webhook.github-dispatch",
        "model-dev: subscribes to no notification",
        "trigger.on-synced: sends no template.synced",
        "template.environment-synced: no service.webhook.github-dispatch",
    ]


def test_the_trigger_fires_once_per_synced_revision_on_a_successful_sync_that_is_healthy(
    argocd: Docs,
) -> None:
    cm = find(argocd, "ConfigMap", "argocd-notifications-cm")
    (condition,) = notifications.entries(cm, "trigger.")["on-synced-healthy"]
    assert "app.status.operationState.phase in ['Succeeded']" in condition["when"]
    assert "app.status.health.status == 'Healthy'" in condition["when"]
    assert condition["oncePer"] == "app.status.operationState?.syncResult?.revision"


def workflow_dispatch_types() -> list[str]:
    on = yaml.safe_load(WORKFLOW.read_text())[True]  # `on:` loads as True
    types: list[str] = on["repository_dispatch"]["types"]
    return types


def test_each_environment_sends_github_a_dispatch_the_environments_workflow_takes(
    argocd: Docs,
) -> None:
    """The request Argo CD's template renders for every Application after a sync: POST to the
    dispatches of the repository the AppProject names, a body GitHub accepts, of the event type
    environments.yml runs on, naming the environment and the synced revision."""
    cm = find(argocd, "ConfigMap", "argocd-notifications-cm")
    url = find(argocd, "AppProject", PROJECT)["spec"]["sourceRepos"][0]
    owner_name = url.removeprefix("https://github.com/").removesuffix(".git")
    for env, app in zip(ENVIRONMENTS, applications(find(argocd, "ApplicationSet")), strict=True):
        (request,) = notifications.requests(notifications.synced(app, REVISION), cm)
        assert request["method"] == "POST"
        assert request["path"] == f"/repos/{owner_name}/dispatches"
        body = json.loads(request["raw"])
        assert github_api.dispatch_problem(body) is None
        assert body == {
            "event_type": "environment-synced",
            "client_payload": {"environment": env.name, "revision": REVISION},
        }
        assert body["event_type"] in workflow_dispatch_types()
    # An Application without the label (a template reading another field) fails to render.
    app = applications(find(argocd, "ApplicationSet"))[0]
    unlabelled = {**app, "metadata": {**app["metadata"], "labels": {}}}
    with pytest.raises(KeyError):
        notifications.requests(notifications.synced(unlabelled, REVISION), cm)
