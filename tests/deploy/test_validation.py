"""`make validate` passes on the repository, and each of its checks catches a broken input.

The Argo CD checks need the pinned schemas; the `argocd_schemas` fixture obtains them the way
`make validate` does ($MODELOPS_ARGOCD_SCHEMAS, else the cache or the pinned URL), so the
scripts run below find them the same way.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import (
    CRD_SCHEMAS,
    ROOT,
    TOOLS,
    UNPINNED,
    closed_port,
    run,
    script_module,
    write_lock,
)

pytestmark = pytest.mark.integration  # checkov and the pinned Argo CD schemas

MANIFESTS = ROOT / "scripts" / "validate-manifests.py"
POLICIES = ROOT / "scripts" / "validate-policies.py"
CHECKOV = ROOT / ".tools" / "checkov-venv" / "bin" / "checkov"


def tool_env(path: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = path if path is not None else f"{TOOLS}:{env['PATH']}"
    return env


def validate(*args: str, path: str | None = None) -> tuple[int, str]:
    result = run_env(sys.executable, str(MANIFESTS), *args, env=tool_env(path))
    return result.returncode, result.stderr


def run_env(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, env=env, check=False)


@pytest.fixture(scope="module")
def checkov() -> Path:
    if not CHECKOV.exists():
        pytest.skip(f"{CHECKOV} missing: run make checkov")
    return CHECKOV


@pytest.fixture(scope="module")
def argocd_schemas() -> None:
    """The pinned Argo CD schemas are at hand (in the cache, or in $MODELOPS_ARGOCD_SCHEMAS).

    A skip naming the variable when they cannot be had, which fails the run in CI."""
    try:
        CRD_SCHEMAS.verified_schemas()
    except CRD_SCHEMAS.SchemaError as error:
        pytest.skip(f"the pinned Argo CD schemas are needed: {error}")


def test_make_validate_passes_on_the_repository(
    helm: str, checkov: Path, argocd_schemas: None
) -> None:
    result = run("make", "-s", "validate", cwd=ROOT, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert (
        "valid: 3 overlay(s), 3 with monitoring on against Kubernetes 1.35.0, 1.36.0, 1.37.0; "
        "Argo CD: argocd"
    ) in result.stdout
    checkov = [line for line in result.stdout.splitlines() if line.startswith("checkov ")]
    assert [line.split(" (")[0] for line in checkov] == ["checkov chart", "checkov manifests"]
    assert all(", 0 failed, " in line for line in checkov), checkov
    # the chart's render scenarios, and what Argo CD applies
    assert "ci/provenance-values.yaml" in checkov[0]
    assert "rendered/dev/manifests.yaml" in checkov[1]
    # and every overlay with its monitoring Component on: the retraining relay's manifests
    assert "monitoring on dev, staging, prod" in checkov[1]


def test_an_unknown_field_in_a_rendered_manifest_fails_for_every_kubernetes_version(
    kubectl: str, tmp_path: Path
) -> None:
    rendered = run(kubectl, "kustomize", str(ROOT / "kustomize" / "overlays" / "prod")).stdout
    broken = tmp_path / "prod.yaml"
    broken.write_text(rendered.replace("  maxReplicas:", "  bogusField: 1\n  maxReplicas:", 1))
    code, errors = validate("--files", str(broken))
    assert code == 1
    for version in ("1.35.0", "1.36.0", "1.37.0"):
        assert f"HorizontalPodAutoscaler/model invalid for Kubernetes {version}" in errors
    assert "'bogusField' was unexpected" in errors


def test_a_broken_overlay_patch_fails_validation(repo_copy: Path) -> None:
    patch = repo_copy / "kustomize" / "overlays" / "staging" / "scaling.yaml"
    patch.write_text(patch.read_text().replace("minReplicas:", "minReplica:"))
    code, errors = validate("--overlays", str(repo_copy / "kustomize" / "overlays" / "staging"))
    assert code == 1
    assert "'minReplica' was unexpected" in errors


def monitored(repo_copy: Path, tmp_path: Path) -> list[str]:
    """The overlays of REPO_COPY with monitoring on (gitops.monitoring.monitored_copy), as the
    default run of both scripts checks the repository's."""
    from gitops import monitoring

    return [str(p) for p in monitoring.monitored_copy(repo_copy, tmp_path / "monitored")]


def test_a_broken_relay_manifest_fails_validation_with_monitoring_on(
    repo_copy: Path, tmp_path: Path
) -> None:
    relay = repo_copy / "kustomize" / "monitoring" / "relay" / "deployment.yaml"
    relay.write_text(relay.read_text().replace("        ports:\n", "        port:\n", 1))
    code, errors = validate("--monitored", *monitored(repo_copy, tmp_path))
    assert code == 1
    for env in ("dev", "staging", "prod"):
        assert f"{env} (monitoring on): Deployment/retrain-relay invalid for Kubernetes" in errors
    assert "'port' was unexpected" in errors


def test_a_duplicate_yaml_key_in_an_argocd_file_fails_validation(
    repo_copy: Path, argocd_schemas: None
) -> None:
    project = repo_copy / "argocd" / "appproject.yaml"
    project.write_text(project.read_text() + "  description: twice\n")
    code, errors = validate("--argocd", str(repo_copy / "argocd"))
    assert code == 1
    assert "duplicate key 'description'" in errors


def test_a_misspelt_applicationset_field_fails_the_argocd_schema(
    repo_copy: Path, argocd_schemas: None
) -> None:
    appset = repo_copy / "argocd" / "applicationset.yaml"
    appset.write_text(appset.read_text().replace("goTemplate: true", "goTemplat: true"))
    code, errors = validate("--argocd", str(repo_copy / "argocd"))
    assert code == 1
    assert (
        "ApplicationSet/model: spec: Additional properties are not allowed ('goTemplat'" in errors
    )


@pytest.mark.parametrize(
    ("file", "field", "misspelt", "message"),
    [
        (
            "appproject.yaml",
            "  orphanedResources:",
            "  orphanedResource:",
            "AppProject/modelops: spec: Additional properties are not allowed ('orphanedResource'",
        ),
        (
            "applicationset.yaml",
            "selfHeal: true",
            "selfHeel: true",
            "ApplicationSet/model: spec.template.spec.syncPolicy.automated: Additional properties "
            "are not allowed ('selfHeel'",
        ),
        (
            "application.yaml",
            "    targetRevision: production",
            "    targetRevison: production",
            "Application/modelops-argocd: spec.source: Additional properties are not allowed "
            "('targetRevison'",
        ),
        (
            # The notifications ConfigMap, a core kind: strictly against Kubernetes' schemas.
            "notifications.yaml",
            "\ndata:\n",
            "\ndate:\n",
            "ConfigMap/argocd-notifications-cm invalid for Kubernetes 1.35.0: : Additional "
            "properties are not allowed ('date'",
        ),
    ],
    ids=["appproject", "application-template", "app-of-apps", "notifications"],
)
def test_a_misspelt_field_fails_the_schema_of_every_argocd_resource(
    repo_copy: Path, argocd_schemas: None, file: str, field: str, misspelt: str, message: str
) -> None:
    path = repo_copy / "argocd" / file
    assert field in path.read_text()
    path.write_text(path.read_text().replace(field, misspelt, 1))
    code, errors = validate("--argocd", str(repo_copy / "argocd"))
    assert code == 1
    assert message in errors


def test_a_misspelt_field_in_an_application_fails_the_argocd_schema(
    repo_copy: Path, argocd_schemas: None
) -> None:
    argocd = repo_copy / "argocd"
    (argocd / "application-prod.yaml").write_text(APPLICATION_PROD.replace("project:", "projekt:"))
    kustomization = argocd / "kustomization.yaml"
    kustomization.write_text(
        kustomization.read_text().replace(
            "- applicationset.yaml\n", "- applicationset.yaml\n- application-prod.yaml\n", 1
        )
    )
    code, errors = validate("--argocd", str(argocd))
    assert code == 1
    assert "Application/model-prod: spec: Additional properties are not allowed ('projekt'" in (
        errors
    )
    assert "'project' is a required property" in errors


APPLICATION_PROD = """\
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: model-prod
  namespace: argocd
spec:
  project: modelops
  source:
    repoURL: https://github.com/example-org/modelops.git
    targetRevision: main
    path: kustomize/overlays/prod
  destination:
    server: https://kubernetes.default.svc
    namespace: modelops-prod
  syncPolicy:
    syncOptions: [CreateNamespace=true, ServerSideApply=true]
"""


def test_an_unusable_schema_directory_is_an_error_not_a_pass(repo_copy: Path) -> None:
    env = tool_env()
    env["MODELOPS_ARGOCD_SCHEMAS"] = str(repo_copy / "no-such-dir")
    result = run_env(sys.executable, str(MANIFESTS), "--argocd", str(repo_copy / "argocd"), env=env)
    assert result.returncode == 1
    assert f"MODELOPS_ARGOCD_SCHEMAS={repo_copy / 'no-such-dir'}: no such directory" in (
        result.stderr
    )


def test_without_the_variable_or_network_validation_fails_in_one_line_saying_how_to_set_it(
    repo_copy: Path, tmp_path: Path
) -> None:
    pins = CRD_SCHEMAS.load_pins()
    unreachable = f"http://127.0.0.1:{closed_port()}/{{commit}}/{{file}}"
    lock = write_lock(tmp_path / "argocd-schemas.lock", unreachable, pins.files)
    env = tool_env()
    env.pop("MODELOPS_ARGOCD_SCHEMAS", None)
    env["no_proxy"] = "127.0.0.1"
    result = run_env(
        sys.executable,
        str(MANIFESTS),
        "--argocd",
        str(repo_copy / "argocd"),
        "--argocd-lock",
        str(lock),
        env=env,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [error] = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    first = unreachable.format(commit=UNPINNED, file=pins.files[0].file)
    assert error.startswith(f"error: cannot fetch the Argo CD schema {first} (")
    assert "set MODELOPS_ARGOCD_SCHEMAS to a directory holding copies of " in error


def test_checkov_refuses_to_run_without_helm(checkov: Path) -> None:
    result = run_env(sys.executable, str(POLICIES), env=tool_env(path="/usr/bin:/bin"))
    assert result.returncode == 1
    assert "helm is not on PATH" in result.stderr


def test_checkov_fails_a_container_that_may_escalate_privileges(
    checkov: Path, repo_copy: Path, tmp_path: Path
) -> None:
    """In the chart, in an overlay, and in the retraining relay an overlay deploys with its
    monitoring Component on (kustomize/monitoring/relay)."""
    for template in [repo_copy / "charts" / "model" / "templates" / "_helpers.tpl"]:
        template.write_text(
            template.read_text().replace(
                "allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true"
            )
        )
    for deployment in ("base/deployment.yaml", "monitoring/relay/deployment.yaml"):
        path = repo_copy / "kustomize" / deployment
        path.write_text(
            path.read_text().replace(
                "allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true"
            )
        )
    result = run_env(
        sys.executable,
        str(POLICIES),
        "--chart",
        str(repo_copy / "charts" / "model"),
        "--overlays",
        str(repo_copy / "kustomize" / "overlays" / "dev"),
        "--monitored",
        monitored(repo_copy, tmp_path)[0],
        env=tool_env(),
    )
    assert result.returncode == 1
    assert "chart: CKV_K8S_20" in result.stderr
    assert "manifests: CKV_K8S_20" in result.stderr
    relay = "Deployment.modelops-dev.retrain-relay (monitored-dev.yaml)"
    assert (
        f"manifests: CKV_K8S_20 Containers should not run with allowPrivilegeEscalation: {relay}"
        in (result.stderr)
    )


def test_no_check_of_image_digests_or_pull_policy_is_skipped_anywhere() -> None:
    policies = script_module("validate-policies")
    skip_lists = [value for name, value in vars(policies).items() if name.startswith("SKIPPED")]
    assert len(skip_lists) == 2
    skipped = {check for listed in skip_lists for check in listed}
    assert skipped == {"CKV_K8S_21"}
    # nor the probes (CKV_K8S_8/9): each container has its own liveness and readiness probes
    assert not skipped & {"CKV_K8S_43", "CKV_K8S_15", "CKV_K8S_8", "CKV_K8S_9"}
    # nor by a checkov.io/skip annotation in the chart
    for template in (ROOT / "charts" / "model" / "templates").rglob("*"):
        if template.is_file():
            text = template.read_text()
            assert "CKV_K8S_43" not in text and "CKV_K8S_15" not in text, template.name


def rendered_dev(kubectl: str, tmp_path: Path) -> Path:
    """The dev overlay rendered as `python -m gitops.rendered` writes it, in TMP_PATH."""
    path = tmp_path / "rendered" / "dev" / "manifests.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(run(kubectl, "kustomize", str(ROOT / "kustomize" / "overlays" / "dev")).stdout)
    return path


NGINX_IMAGE = re.compile(r"(image: nginxinc/nginx-unprivileged:\S+)@sha256:[0-9a-f]{64}\n")
NGINX_PULL_POLICY = re.compile(
    r"(image: nginxinc/nginx-unprivileged:\S+\n +imagePullPolicy: )Always"
)


def nginx_by_tag(text: str) -> str:
    """The Nginx container's image without its digest (still pulled Always)."""
    changed, count = NGINX_IMAGE.subn(r"\1\n", text)
    assert count == 1
    return changed


def nginx_by_tag_if_not_present(text: str) -> str:
    """The Nginx container's image without its digest, pulled IfNotPresent."""
    changed, count = NGINX_PULL_POLICY.subn(r"\1IfNotPresent", nginx_by_tag(text))
    assert count == 1
    return changed


# checkov's CKV_K8S_15 accepts any pull policy on an image pinned by digest (the digest already
# names the bytes), so it fails only an image pinned by tag and not pulled Always; that every
# deployed container is pulled Always is tested in test_overlays.py.
@pytest.mark.parametrize(
    ("breaks", "checks"),
    [
        (nginx_by_tag, ["CKV_K8S_43"]),
        (nginx_by_tag_if_not_present, ["CKV_K8S_15", "CKV_K8S_43"]),
    ],
    ids=["image-without-digest", "pull-policy-if-not-present"],
)
def test_checkov_fails_a_rendered_file_that_does_not_pin_or_pull_its_images(
    checkov: Path, kubectl: str, tmp_path: Path, breaks: Callable[[str], str], checks: list[str]
) -> None:
    rendered = rendered_dev(kubectl, tmp_path)
    rendered.write_text(breaks(rendered.read_text()))
    result = run_env(
        sys.executable, str(POLICIES), "--overlays", "--rendered", str(rendered), env=tool_env()
    )
    assert result.returncode == 1
    errors = sorted(line for line in result.stderr.splitlines() if line.startswith("error: "))
    assert [error.split()[2] for error in errors] == checks, result.stderr
    for error in errors:
        assert error.startswith("error: manifests: ")
        assert error.endswith("Deployment.modelops-dev.model (rendered-dev.yaml)")


def test_checkov_fails_a_chart_scenario_that_does_not_pin_the_model_server_by_digest(
    checkov: Path, repo_copy: Path
) -> None:
    values = repo_copy / "charts" / "model" / "ci" / "minimal-values.yaml"
    text = values.read_text()
    assert "\nimage:\n  digest: sha256:" in text
    values.write_text(re.sub(r"\nimage:\n  digest: \S+\n", "\n", text))
    result = run_env(
        sys.executable,
        str(POLICIES),
        "--chart",
        str(repo_copy / "charts" / "model"),
        "--overlays",
        str(repo_copy / "kustomize" / "overlays" / "dev"),
        "--rendered",
        env=tool_env(),
    )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    # the Deployment and the helm test pod, of that scenario only
    assert sorted(errors) == [
        "error: chart: CKV_K8S_43 Image should use digest: Deployment.default.model "
        "(chart-minimal-values.yaml)",
        "error: chart: CKV_K8S_43 Image should use digest: Pod.default.model-test-connection "
        "(chart-minimal-values.yaml)",
    ]


def break_service_monitor(chart: Path) -> None:
    """CHART's ServiceMonitor template with scrapeTimeout misspelt (unknown to its CRD)."""
    template = chart / "templates" / "servicemonitor.yaml"
    template.write_text(template.read_text().replace("scrapeTimeout:", "scrapeTimout:"))


def test_make_validate_fails_on_a_chart_scenario_whose_render_breaks_a_crd_schema(
    helm: str, repo_copy: Path
) -> None:
    """The real loop of `make validate` (its validate-scenarios step: helm template piped into
    validate-manifests.py --files /dev/stdin) on a chart whose ServiceMonitor has a misspelt field:
    only the monitoring scenario renders it, and the Prometheus Operator schema refuses it."""
    chart = repo_copy / "charts" / "model"
    break_service_monitor(chart)
    result = run("make", "-s", "validate-scenarios", f"CHART={chart}", cwd=ROOT, check=False)
    assert result.returncode != 0, result.stdout[-2000:]
    assert "error: /dev/stdin: ServiceMonitor/model: spec.endpoints.0: Additional properties " in (
        result.stderr
    )
    assert "'scrapeTimout' was unexpected" in result.stderr
    assert f"scenario {chart}/ci/monitoring-values.yaml" in result.stdout.splitlines()[-1]


def test_a_validator_that_reads_the_piped_render_twice_fails_on_the_empty_second_read(
    helm: str, repo_copy: Path, tmp_path: Path
) -> None:
    """The defect `make validate` had: the render piped in was read once to parse and again to
    check, and the second read of a pipe is empty, so nothing was checked and it passed. A wrapper
    that consumes the pipe first (as that first read did) now makes the check fail, not pass."""
    chart = repo_copy / "charts" / "model"
    break_service_monitor(chart)
    seen = tmp_path / "first-read.yaml"
    wrapper = tmp_path / "read-twice.py"
    wrapper.write_text(
        "import pathlib, runpy, sys\n"
        f"pathlib.Path({str(seen)!r}).write_text(pathlib.Path('/dev/stdin').read_text())\n"
        f"sys.argv = [{str(MANIFESTS)!r}, '--files', '/dev/stdin']\n"
        f"sys.path.insert(0, {str(MANIFESTS.parent)!r})\n"
        f"runpy.run_path({str(MANIFESTS)!r}, run_name='__main__')\n"
    )
    values = chart / "ci" / "monitoring-values.yaml"
    command = (
        f"{TOOLS}/helm template model {chart} -f {values} 2>/dev/null | {sys.executable} {wrapper}"
    )
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True, check=False
    )
    assert "scrapeTimout:" in seen.read_text()  # the error was in the render
    assert result.returncode == 1, result.stdout + result.stderr
    assert "error: /dev/stdin: holds no resource" in result.stderr
