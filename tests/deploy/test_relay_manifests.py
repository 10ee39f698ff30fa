"""The retraining relay's manifests (kustomize/monitoring/relay, included by every environment's
monitoring Component): what an overlay deploys once monitoring is on, the Pod Security Standards
"restricted" profile of its pod, its tokens referenced from a Secret that is never shipped, and
its kinds inside the Argo CD project."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from gitops.rendered import deployment as model_deployment
from retraining import relay as relay_module

from .conftest import ENVIRONMENTS, ROOT, Docs, documents, find, run

RELAY = "retrain-relay"


def relay_docs(docs: Docs) -> Docs:
    """The relay's objects among DOCS (named retrain-relay)."""
    return [d for d in docs if d["metadata"]["name"] == RELAY]


def pss_restricted_problems(pod: dict[str, Any]) -> list[str]:
    """What in the pod spec POD breaks the Pod Security Standards "restricted" profile (the
    fields it names: non-root, no privilege escalation, every capability dropped and none added
    but NET_BIND_SERVICE, seccomp RuntimeDefault or Localhost, no host namespaces or paths)."""
    problems = []
    pod_context = pod.get("securityContext") or {}
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            problems.append(f"pod {key}")
    if any("hostPath" in volume for volume in pod.get("volumes", [])):
        problems.append("a hostPath volume")
    for container in pod.get("containers", []) + pod.get("initContainers", []):
        name = container["name"]
        context = container.get("securityContext") or {}

        def setting(key: str, context: dict[str, Any] = context) -> Any:
            return context.get(key, pod_context.get(key))

        if setting("runAsNonRoot") is not True:
            problems.append(f"{name}: runAsNonRoot is not true")
        if setting("runAsUser") == 0:
            problems.append(f"{name}: runAsUser 0")
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation is not false")
        if context.get("privileged"):
            problems.append(f"{name}: privileged")
        capabilities = context.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            problems.append(f"{name}: capabilities do not drop ALL")
        if set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: capabilities added")
        seccomp = (setting("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: seccompProfile {seccomp!r}")
        # not in the profile, but asked of every pod of this project
        if context.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}: readOnlyRootFilesystem is not true")
    return problems


def test_turning_monitoring_on_deploys_one_relay_per_environment_on_the_model_servers_image(
    overlay_docs: dict[str, Docs], monitored_overlay_docs: dict[str, Docs]
) -> None:
    for env in ENVIRONMENTS:
        assert relay_docs(overlay_docs[env]) == [], "no relay while monitoring is off"
        docs = monitored_overlay_docs[env]
        relay = relay_docs(docs)
        assert sorted(d["kind"] for d in relay) == [
            "Deployment",
            "NetworkPolicy",
            "Service",
            "ServiceAccount",
        ]
        assert {d["metadata"]["namespace"] for d in relay} == {f"modelops-{env}"}
        found = find(docs, "Deployment", RELAY)
        assert found["spec"]["replicas"] == 1
        assert found["spec"]["strategy"] == {"type": "Recreate"}, "never two relays at once"
        [container] = found["spec"]["template"]["spec"]["containers"]
        model = model_deployment(docs)
        assert model["metadata"]["name"] == "model", "the model server's, not the relay's"
        [app] = [c for c in model["spec"]["template"]["spec"]["containers"] if c["name"] == "app"]
        assert container["image"] == app["image"], "the model server image, pinned alike"
        assert "@sha256:" in container["image"]
        # the image's PYTHONPATH is /app, where the repository's gitops/ lies
        assert container["command"] == ["uwsgi", "--ini", "/app/retraining/relay_uwsgi.ini"]
        assert (ROOT / "retraining" / "relay_uwsgi.ini").read_text() == (
            relay_module.UWSGI_INI.read_text()
        )
        service = find(docs, "Service", RELAY)
        pod_labels = found["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= pod_labels.items()
        assert service["spec"]["ports"] == [
            {"name": "http", "port": 9095, "targetPort": "http", "protocol": "TCP"}
        ]
        assert container["ports"][0]["containerPort"] == 9095
        listen = {e["name"]: e.get("value") for e in container["env"]}["RELAY_LISTEN"]
        assert listen == "0.0.0.0:9095"
        # the model server's pod is what it was: the relay's labels select only the relay
        assert not (
            found["spec"]["selector"]["matchLabels"].items()
            <= model["spec"]["template"]["metadata"]["labels"].items()
        )


def test_the_relays_pod_meets_the_restricted_pod_security_standard(
    monitored_overlay_docs: dict[str, Docs],
) -> None:
    for env in ENVIRONMENTS:
        pod = find(monitored_overlay_docs[env], "Deployment", RELAY)["spec"]["template"]["spec"]
        assert pss_restricted_problems(pod) == [], env
        assert pod["automountServiceAccountToken"] is False
        assert pod["serviceAccountName"] == RELAY


@pytest.mark.parametrize(
    ("where", "key", "value", "problem"),
    [
        ("container", "runAsNonRoot", False, "runAsNonRoot is not true"),
        ("container", "readOnlyRootFilesystem", False, "readOnlyRootFilesystem is not true"),
        ("container", "allowPrivilegeEscalation", True, "allowPrivilegeEscalation is not false"),
        ("container", "capabilities", {"drop": ["NET_RAW"]}, "capabilities do not drop ALL"),
        ("container", "capabilities", {"drop": ["ALL"], "add": ["SYS_ADMIN"]}, "added"),
        ("both", "seccompProfile", {"type": "Unconfined"}, "seccompProfile 'Unconfined'"),
        ("pod", "hostNetwork", True, "pod hostNetwork"),
    ],
)
def test_the_pod_security_check_refuses_a_relay_pod_that_breaks_the_profile(
    monitored_overlay_docs: dict[str, Docs], where: str, key: str, value: Any, problem: str
) -> None:
    pod = copy.deepcopy(
        find(monitored_overlay_docs["dev"], "Deployment", RELAY)["spec"]["template"]["spec"]
    )
    if where in ("container", "both"):
        pod["containers"][0]["securityContext"][key] = value
    if where == "both":
        pod["securityContext"][key] = value
    if where == "pod":
        pod[key] = value
    assert any(problem in found for found in pss_restricted_problems(pod)), problem


def test_the_relay_reads_its_tokens_from_a_secret_the_repository_does_not_ship(
    monitored_overlay_docs: dict[str, Docs],
) -> None:
    documented = set(re.findall(r"``([A-Z_]+)``", relay_module.__doc__ or ""))
    for env in ENVIRONMENTS:
        docs = monitored_overlay_docs[env]
        assert "Secret" not in {d["kind"] for d in docs}
        pod = find(docs, "Deployment", RELAY)["spec"]["template"]["spec"]
        [container] = pod["containers"]
        env_vars = {e["name"]: e for e in container["env"]}
        assert all("valueFrom" not in e for e in env_vars.values()), "files, not variables"
        # every variable is one the relay (its docstring) or its uWSGI file reads
        assert set(env_vars) - {"RELAY_LISTEN"} <= documented, set(env_vars) - documented
        [tokens] = [v for v in pod["volumes"] if v["name"] == "tokens"]
        assert tokens["secret"]["secretName"] == RELAY
        keys = {item["key"]: item["path"] for item in tokens["secret"]["items"]}
        assert keys == {"alertmanager-token": "alertmanager-token", "github-token": "github-token"}
        [mount] = [m for m in container["volumeMounts"] if m["name"] == "tokens"]
        assert mount["readOnly"] is True
        assert env_vars["RELAY_TOKEN_FILE"]["value"] == f"{mount['mountPath']}/alertmanager-token"
        assert env_vars["GITHUB_DISPATCH_TOKEN_FILE"]["value"] == (
            f"{mount['mountPath']}/github-token"
        )


def test_the_argocd_project_allows_every_kind_of_the_relay(
    kubectl: str, monitored_overlay_docs: dict[str, Docs]
) -> None:
    argocd = documents(run(kubectl, "kustomize", str(ROOT / "argocd")).stdout)
    project = find(argocd, "AppProject", "modelops")  # the models' project, not the app of apps'
    allowed = {(k["group"], k["kind"]) for k in project["spec"]["namespaceResourceWhitelist"]}
    kinds = {
        (d["apiVersion"].rpartition("/")[0], d["kind"])
        for env in ENVIRONMENTS
        for d in relay_docs(monitored_overlay_docs[env])
    }
    assert kinds == {
        ("apps", "Deployment"),
        ("", "Service"),
        ("", "ServiceAccount"),
        ("networking.k8s.io", "NetworkPolicy"),
    }
    assert kinds <= allowed
