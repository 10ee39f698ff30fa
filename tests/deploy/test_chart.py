"""The Helm chart (charts/model), one behaviour per test, each named as a sentence."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from training.params import load_artifact

from .conftest import CHART, ROOT, Docs, containers, documents, find, run

SERVING_CONFIG = ROOT / "serving" / "config"
CONFIG_FILES = {
    "model-uwsgi": ["uwsgi.ini", "uwsgi-prestop.sh"],
    "model-nginx": ["nginx.conf.template", "nginx-start.sh"],
}


def scenario_args() -> list[list[str]]:
    return [[], *(["-f", str(p)] for p in sorted((CHART / "ci").glob("*-values.yaml")))]


@pytest.mark.parametrize(
    "args", scenario_args(), ids=lambda a: Path(a[-1]).name if a else "defaults"
)
def test_it_renders_byte_identical_output_under_helm_4_and_helm_3(
    template: Callable[..., str], helm3: str, args: list[str]
) -> None:
    assert template(*args) == template(*args, binary=helm3)


def test_it_has_ci_scenarios_for_the_optional_parts() -> None:
    assert {p.name for p in (CHART / "ci").glob("*-values.yaml")} >= {
        "autoscaling-off-values.yaml",
        "minimal-values.yaml",
        "provenance-values.yaml",
    }


def test_it_passes_helm_lint_strict_for_every_scenario(helm: str) -> None:
    for args in scenario_args():
        result = run(helm, "lint", "--strict", str(CHART), *args, check=False)
        assert result.returncode == 0, result.stdout + result.stderr


def test_it_omits_replicas_when_autoscaling_is_enabled(default_docs: Docs) -> None:
    assert "replicas" not in find(default_docs, "Deployment")["spec"]
    hpa = find(default_docs, "HorizontalPodAutoscaler")
    assert (
        hpa["spec"]["scaleTargetRef"]["name"]
        == find(default_docs, "Deployment")["metadata"]["name"]
    )


def test_it_sets_replicas_and_drops_the_hpa_when_autoscaling_is_disabled(
    template: Callable[..., str],
) -> None:
    docs = documents(template("-f", str(CHART / "ci" / "autoscaling-off-values.yaml")))
    assert find(docs, "Deployment")["spec"]["replicas"] == 3
    assert not [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]


def test_it_links_the_config_files_to_serving_instead_of_copying_them() -> None:
    for name in ["uwsgi.ini", "uwsgi-prestop.sh", "nginx.conf.template", "nginx-start.sh"]:
        link = CHART / "files" / name
        assert link.is_symlink(), f"{link} must be a symlink to serving/config/{name}"
        assert link.resolve() == (SERVING_CONFIG / name).resolve()


def test_it_builds_the_configmaps_byte_for_byte_from_the_serving_config_files(
    default_docs: Docs,
) -> None:
    for configmap, files in CONFIG_FILES.items():
        data = find(default_docs, "ConfigMap", configmap)["data"]
        assert sorted(data) == sorted(files)
        for name in files:
            assert data[name].encode() == (SERVING_CONFIG / name).read_bytes(), name


def test_it_follows_the_symlinks_under_helm_3_too(template: Callable[..., str], helm3: str) -> None:
    docs = documents(template(binary=helm3))
    data = find(docs, "ConfigMap", "model-uwsgi")["data"]
    assert data["uwsgi.ini"].encode() == (SERVING_CONFIG / "uwsgi.ini").read_bytes()


def test_it_rolls_the_pods_when_a_config_file_changes(
    template: Callable[..., str], repo_copy: Path
) -> None:
    def checksum() -> str:
        docs = documents(template(chart=repo_copy / "charts" / "model"))
        return str(
            find(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"][
                "checksum/config"
            ]
        )

    before = checksum()
    with (repo_copy / "serving" / "config" / "uwsgi.ini").open("a") as ini:
        ini.write("; changed\n")
    assert re.fullmatch(r"[0-9a-f]{64}", before)
    assert checksum() != before


def test_it_takes_every_image_from_values() -> None:
    for template_file in (CHART / "templates").rglob("*.yaml"):
        for line in template_file.read_text().splitlines():
            if re.match(r"\s*image:", line):
                assert "include" in line, f"literal image in {template_file.name}: {line.strip()}"


def test_it_defaults_the_image_tag_to_the_app_version(default_docs: Docs) -> None:
    app_version = re.search(
        r'^appVersion: "?([^"\n]+)"?$', (CHART / "Chart.yaml").read_text(), re.M
    )
    assert app_version
    assert (
        containers(default_docs)["app"]["image"] == f"modelops/model-server:{app_version.group(1)}"
    )


def test_it_prefixes_both_images_with_the_configured_registry(template: Callable[..., str]) -> None:
    docs = documents(template("-f", str(CHART / "ci" / "provenance-values.yaml")))
    images = {name: c["image"] for name, c in containers(docs).items()}
    assert (
        images["app"]
        == "registry.invalid/team/modelops/model-server:"
        + "0123456789abcdef" * 2
        + "01234567@sha256:"
        + "c0ffee00" * 8
    )
    assert images["nginx"].startswith("registry.invalid/team/nginxinc/nginx-unprivileged:")


def upstream_nginx() -> str:
    """The Nginx image images/upstream/Dockerfile pins (Dependabot's source): NAME:TAG@DIGEST."""
    upstream = re.search(
        r"^FROM (\S+) AS nginx$", (ROOT / "images" / "upstream" / "Dockerfile").read_text(), re.M
    )
    assert upstream
    return upstream.group(1)


def test_it_pins_the_nginx_image_named_in_images_upstream_by_tag_and_digest(
    default_docs: Docs,
) -> None:
    image = containers(default_docs)["nginx"]["image"]
    assert upstream_nginx() == image or upstream_nginx().endswith("/" + image)
    # One digest, written in images/upstream/Dockerfile and in the chart's values: both must pin it.
    assert re.fullmatch(r"[a-z0-9./-]+:[0-9][0-9a-z.-]*@sha256:[0-9a-f]{64}", image), image


def test_it_keeps_the_nginx_digest_when_a_registry_prefix_redirects_the_image(
    template: Callable[..., str],
) -> None:
    docs = documents(template("-f", str(CHART / "ci" / "provenance-values.yaml")))
    assert containers(docs)["nginx"]["image"] == "registry.invalid/team/" + upstream_nginx()


def test_it_pulls_both_images_always_by_default(template: Callable[..., str]) -> None:
    docs = documents(template())  # the helm test pod too
    pods = [find(docs, "Deployment")["spec"]["template"]["spec"], find(docs, "Pod")["spec"]]
    policies = [c["imagePullPolicy"] for pod in pods for c in pod["containers"]]
    assert policies == ["Always", "Always", "Always"]


def test_it_pins_the_model_server_by_digest_in_every_ci_scenario(
    template: Callable[..., str],
) -> None:
    # The scenarios are what scripts/validate-policies.py checks with checkov (image digests
    # included): each is a release, as a deployment is.
    for args in scenario_args()[1:]:
        docs = documents(template(*args))
        for name, container in containers(docs).items():
            assert re.search(r"@sha256:[0-9a-f]{64}$", container["image"]), (args[-1], name)


def test_it_runs_every_container_under_the_restricted_pod_security_standard(
    template: Callable[..., str],
) -> None:
    docs = documents(template())  # tests included: their pod is held to the same standard
    pods = [find(docs, "Deployment")["spec"]["template"]["spec"], find(docs, "Pod")["spec"]]
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            ctx = container["securityContext"]
            assert ctx["runAsNonRoot"] is True, container["name"]
            assert ctx["runAsUser"] >= 10000 and ctx["runAsGroup"] >= 10000
            assert ctx["allowPrivilegeEscalation"] is False
            assert ctx["capabilities"] == {"drop": ["ALL"]}
            assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
            assert ctx["readOnlyRootFilesystem"] is True


def test_it_writes_only_to_tmp_and_the_socket_dir(default_docs: Docs) -> None:
    pod = find(default_docs, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    for container in pod["containers"]:
        writable = {
            m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly", False)
        }
        assert writable == {"/tmp", "/run/modelops"}, container["name"]
        for mount in container["volumeMounts"]:
            if not mount.get("readOnly", False):
                assert "emptyDir" in volumes[mount["name"]]
                assert volumes[mount["name"]]["emptyDir"]["sizeLimit"]
    socket_users = [
        c["name"] for c in pod["containers"] for m in c["volumeMounts"] if m["name"] == "socket"
    ]
    assert socket_users == ["app", "nginx"]


def test_it_mounts_the_config_where_the_container_contract_says(default_docs: Docs) -> None:
    mounts = {
        name: {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        for name, c in containers(default_docs).items()
    }
    assert mounts["app"]["/etc/modelops/uwsgi"] == "uwsgi-config"
    assert mounts["nginx"]["/etc/modelops/nginx"] == "nginx-config"
    assert containers(default_docs)["app"]["command"] == [
        "uwsgi",
        "--ini",
        "/etc/modelops/uwsgi/uwsgi.ini",
    ]
    assert containers(default_docs)["nginx"]["command"] == [
        "sh",
        "/etc/modelops/nginx/nginx-start.sh",
    ]


def test_each_container_has_its_own_liveness_and_readiness_probes(default_docs: Docs) -> None:
    """The app's probes go to the app (serving.probe over the uWSGI socket, exec), Nginx's to
    Nginx alone (paths it answers itself): a hung app restarts the app container, not Nginx."""
    app, nginx = containers(default_docs)["app"], containers(default_docs)["nginx"]

    def probe_command(path: str) -> list[str]:
        return ["python", "-m", "serving.probe", "--timeout", "4", path]

    assert app["readinessProbe"]["exec"]["command"] == probe_command("/v2/health/ready")
    assert app["livenessProbe"]["exec"]["command"] == probe_command("/v2/health/live")
    assert app["startupProbe"]["exec"]["command"] == probe_command("/v2/health/live")
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert app[probe]["timeoutSeconds"] == 5, probe
    assert nginx["readinessProbe"]["httpGet"] == {"path": "/nginx/health/ready", "port": "http"}
    assert nginx["livenessProbe"]["httpGet"] == {"path": "/nginx/health/live", "port": "http"}
    assert "startupProbe" not in nginx
    template = (SERVING_CONFIG / "nginx.conf.template").read_text()
    assert "location = /nginx/health/ready {" in template
    assert "location = /nginx/health/live {" in template
    assert nginx["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]


def test_it_stops_nginx_first_and_uwsgi_once_nginx_has_stopped(default_docs: Docs) -> None:
    """The stop tests/serving/test_serving_lifecycle.py plays (devstack's Stack.drain): Nginx
    drains for its delay then stops gracefully; the app's hook waits for that, at most long
    enough for the delay plus a request harakiri ends; the grace period covers it."""
    pod = find(default_docs, "Deployment")["spec"]["template"]["spec"]
    app, nginx = containers(default_docs)["app"], containers(default_docs)["nginx"]
    assert nginx["lifecycle"]["preStop"]["exec"]["command"] == [
        "sh", "/etc/modelops/nginx/nginx-start.sh", "stop"
    ]  # fmt: skip
    assert app["lifecycle"]["preStop"]["exec"]["command"] == [
        "sh", "/etc/modelops/uwsgi/uwsgi-prestop.sh"
    ]  # fmt: skip
    nginx_env = {e["name"]: e["value"] for e in nginx["env"]}
    app_env = {e["name"]: e["value"] for e in app["env"]}
    delay, wait = int(nginx_env["NGINX_STOP_DELAY"]), int(app_env["MODELOPS_PRESTOP_WAIT"])
    assert app_env["MODELOPS_SOCKET"] == nginx_env["MODELOPS_SOCKET"]
    found = re.search(r"^harakiri = (\d+)", (SERVING_CONFIG / "uwsgi.ini").read_text(), re.M)
    assert found, "uwsgi.ini sets no harakiri"
    harakiri = int(found.group(1))
    assert delay > 0 and delay + harakiri <= wait < pod["terminationGracePeriodSeconds"]


def test_it_gives_both_containers_requests_and_limits_with_ephemeral_storage(
    default_docs: Docs,
) -> None:
    for name, container in containers(default_docs).items():
        for kind in ("requests", "limits"):
            assert set(container["resources"][kind]) == {"cpu", "memory", "ephemeral-storage"}, name


def test_it_puts_the_model_provenance_in_pod_annotations_and_modelops_env(
    template: Callable[..., str],
) -> None:
    docs = documents(template("-f", str(CHART / "ci" / "provenance-values.yaml")))
    annotations = find(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["modelops.io/model-name"] == load_artifact().name  # make render's
    assert annotations["modelops.io/model-version"] == "v1.2.0"
    assert annotations["modelops.io/model-stage"] == "prod"
    assert annotations["modelops.io/git-commit"] == "0123456789abcdef" * 2 + "01234567"
    assert annotations["modelops.io/image-digest"] == "sha256:" + "c0ffee00" * 8
    assert annotations["modelops.io/model-sha256"].startswith("9f86d0")
    env = {e["name"]: e["value"] for e in containers(docs)["app"]["env"]}
    for variable, key in [
        ("MODELOPS_MODEL_NAME", "model-name"),
        ("MODELOPS_MODEL_VERSION", "model-version"),
        ("MODELOPS_MODEL_STAGE", "model-stage"),
        ("MODELOPS_GIT_COMMIT", "git-commit"),
        ("MODELOPS_IMAGE_DIGEST", "image-digest"),
        ("MODELOPS_MODEL_SHA256", "model-sha256"),
    ]:
        assert env[variable] == annotations[f"modelops.io/{key}"], variable


def test_it_reports_the_image_tag_as_git_commit_when_none_is_given(
    template: Callable[..., str],
) -> None:
    docs = documents(template("--set", "image.tag=" + "a" * 40))
    annotations = find(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["modelops.io/git-commit"] == "a" * 40


def test_it_pins_the_image_by_the_digest_it_reports(template: Callable[..., str]) -> None:
    digest = "sha256:" + "ab" * 32
    docs = documents(template("--set", "image.tag=" + "a" * 40, "--set", "image.digest=" + digest))
    image = containers(docs)["app"]["image"]
    assert image == f"modelops/model-server:{'a' * 40}@{digest}"
    annotations = find(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["modelops.io/image-digest"] == digest
    assert annotations["modelops.io/git-commit"] == "a" * 40
    assert find(docs, "Pod")["spec"]["containers"][0]["image"] == image


def test_it_reports_an_empty_image_digest_and_pins_none_by_default(default_docs: Docs) -> None:
    annotations = find(default_docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["modelops.io/image-digest"] == ""
    env = {e["name"]: e["value"] for e in containers(default_docs)["app"]["env"]}
    assert env["MODELOPS_IMAGE_DIGEST"] == ""
    assert "@" not in containers(default_docs)["app"]["image"]


def test_it_exposes_the_model_only_inside_the_cluster(default_docs: Docs) -> None:
    service = find(default_docs, "Service")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    account = find(default_docs, "ServiceAccount")
    assert account["automountServiceAccountToken"] is False


def test_it_admits_only_the_backend_and_the_scraper_and_lets_out_only_dns(
    default_docs: Docs,
) -> None:
    policy = find(default_docs, "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    peers = policy["ingress"][0]["from"]
    names = [
        p.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name") for p in peers
    ]
    assert names[:2] == ["backend", "prometheus"]
    assert peers[2]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "test"
    assert len(policy["ingress"]) == 1 and len(policy["egress"]) == 1
    assert {(p["port"], p["protocol"]) for p in policy["egress"][0]["ports"]} == {
        (53, "UDP"),
        (53, "TCP"),
    }


def test_it_spreads_pods_across_nodes_and_limits_disruptions(default_docs: Docs) -> None:
    pod = find(default_docs, "Deployment")["spec"]["template"]["spec"]
    (spread,) = pod["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert find(default_docs, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1


def test_it_keeps_the_test_pod_out_of_the_service_and_the_budget(
    template: Callable[..., str],
) -> None:
    docs = documents(template())
    test_pod = find(docs, "Pod")
    selector = find(docs, "Service")["spec"]["selector"]
    assert not selector.items() <= test_pod["metadata"]["labels"].items()
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert test_pod["spec"]["containers"][0]["image"] == containers(docs)["app"]["image"]


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("bogus=1", "bogus"),
        ("model.stage=qa", "/model/stage"),
        ("securityContext.runAsUser=1000", "/securityContext/runAsUser"),
        ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
        ("model.gitCommit=abc", "/model/gitCommit"),
        ("image.digest=abc", "/image/digest"),
        ("image.digest=sha256:" + "A" * 64, "/image/digest"),
        ("nginx.image.digest=1.28.0", "/nginx/image/digest"),
    ],
)
def test_it_refuses_values_the_schema_forbids(helm: str, setting: str, complaint: str) -> None:
    result = run(helm, "template", "model", str(CHART), "--set", setting, check=False)
    assert result.returncode != 0
    assert complaint in result.stderr


def test_it_references_its_schema_on_the_first_line_of_values() -> None:
    first = (CHART / "values.yaml").read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=values.schema.json"
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["additionalProperties"] is False and schema["required"]
