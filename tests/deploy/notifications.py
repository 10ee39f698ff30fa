"""Argo CD's notifications as argocd/notifications.yaml configures them, played for tests.

Role: the one place the suite reads the notifications ConfigMap (its ``service.webhook.*``,
``template.*`` and ``trigger.*`` keys, each a YAML document) and renders a template's webhook
request for an Application the way Argo CD's notifications controller does: Go templates, of
which this renders the three actions the template uses (``{{.a.b}}``, ``{{index .a.b "key"}}``,
``{{call .repo.FullNameByRepoURL .a.b}}``; any other action is an error, so a template that
starts using more fails here until this knows it). Callers: tests/deploy/test_argocd.py (the
subscriptions and the request for every environment) and tests/workflows/test_act_environments.py
(the repository_dispatch GitHub delivers for that request, run by act).
"""

from __future__ import annotations

import re
import urllib.parse
from pathlib import Path
from typing import Any

import yaml

FILE = Path(__file__).resolve().parents[2] / "argocd" / "notifications.yaml"
#: The annotation prefix of a subscription: ``<prefix><trigger>.<service>``.
SUBSCRIBE = "notifications.argoproj.io/subscribe."
ACTION = re.compile(r"\{\{(.*?)\}\}", re.S)
FIELD = r"\.([A-Za-z_][\w.]*)"


def configmap(text: str | None = None) -> dict[str, Any]:
    """The ConfigMap of argocd/notifications.yaml (or of TEXT)."""
    document: dict[str, Any] = yaml.safe_load(FILE.read_text() if text is None else text)
    return document


def entries(cm: dict[str, Any], prefix: str) -> dict[str, Any]:
    """The parsed values of CM's keys ``PREFIX<name>``, by name (e.g. prefix ``template.``)."""
    return {
        key.removeprefix(prefix): yaml.safe_load(value)
        for key, value in cm["data"].items()
        if key.startswith(prefix)
    }


def subscriptions(app: dict[str, Any]) -> list[tuple[str, str]]:
    """(trigger, service) of each subscription annotation of APP."""
    annotations = app["metadata"].get("annotations") or {}
    return [
        tuple(key.removeprefix(SUBSCRIBE).split(".", 1))  # type: ignore[misc]
        for key in annotations
        if key.startswith(SUBSCRIBE)
    ]


def subscription_problems(apps: list[dict[str, Any]], cm: dict[str, Any]) -> list[str]:
    """Each name an Application's subscription, a trigger or a template uses that the ConfigMap
    CM does not define: a subscription to a trigger and a webhook service, each trigger sending
    templates, each template addressing webhook services."""
    services = entries(cm, "service.webhook.")
    templates = entries(cm, "template.")
    triggers = entries(cm, "trigger.")
    problems = []
    for app in apps:
        name = app["metadata"]["name"]
        if not subscriptions(app):
            problems.append(f"{name}: subscribes to no notification")
        for trigger, service in subscriptions(app):
            if trigger not in triggers:
                problems.append(f"{name}: no trigger.{trigger}")
            if service not in services:
                problems.append(f"{name}: no service.webhook.{service}")
    for trigger, conditions in triggers.items():
        for template in [t for condition in conditions for t in condition["send"]]:
            if template not in templates:
                problems.append(f"trigger.{trigger}: sends no template.{template}")
    for template, fields in templates.items():
        for service in fields.get("webhook") or {}:
            if service not in services:
                problems.append(f"template.{template}: no service.webhook.{service}")
    return problems


def full_name_by_repo_url(url: str) -> str:
    """Argo CD's repo.FullNameByRepoURL: OWNER/NAME of a repository URL (``.git`` dropped)."""
    path = urllib.parse.urlparse(url).path.removesuffix(".git")
    parts = [part for part in path.split("/") if part]
    return "/".join(parts[:2]) if len(parts) >= 2 else path


def lookup(data: dict[str, Any], dotted: str) -> Any:
    value: Any = data
    for key in dotted.split("."):
        value = value[key]
    return value


def render(template: str, data: dict[str, Any]) -> str:
    """TEMPLATE with its actions filled from DATA (``{"app": <Application>}``); KeyError for a
    field the Application lacks, ValueError for an action this does not play."""

    def action(match: re.Match[str]) -> str:
        text = match.group(1).strip()
        if found := re.fullmatch(FIELD, text):
            return str(lookup(data, found[1]))
        if found := re.fullmatch(rf'index {FIELD} "([^"]+)"', text):
            return str(lookup(data, found[1])[found[2]])
        if found := re.fullmatch(rf"call \.repo\.FullNameByRepoURL {FIELD}", text):
            return full_name_by_repo_url(str(lookup(data, found[1])))
        raise ValueError(f"unsupported template action: {{{{{text}}}}}")

    return ACTION.sub(action, template)


def synced(app: dict[str, Any], revision: str) -> dict[str, Any]:
    """APP (an Application as argocd/ makes it) after a sync of REVISION that succeeded, healthy."""
    status = {
        "sync": {"status": "Synced", "revision": revision},
        "health": {"status": "Healthy"},
        "operationState": {"phase": "Succeeded", "syncResult": {"revision": revision}},
    }
    return {**app, "status": status}


def requests(app: dict[str, Any], cm: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The webhook requests Argo CD sends for APP (with its status) on each of its subscriptions:
    service, method, path and the body's bytes (``raw``), as the GitHub stand-in records them."""
    cm = cm or configmap()
    services, templates = entries(cm, "service.webhook."), entries(cm, "template.")
    triggers = entries(cm, "trigger.")
    sent = []
    for trigger, service in subscriptions(app):
        for template in [t for condition in triggers[trigger] for t in condition["send"]]:
            webhook = templates[template]["webhook"][service]
            sent.append({
                "service": service,
                "url": services[service]["url"],
                "method": webhook["method"],
                "path": render(webhook["path"], {"app": app}),
                "raw": render(webhook["body"], {"app": app}).strip().encode(),
            })  # fmt: skip
    return sent
