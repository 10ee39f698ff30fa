"""The overlays: thin, each one builds, and they differ only where environments should."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitops.set_image import set_image

from .conftest import ENVIRONMENTS, OVERLAYS, ROOT, Docs, containers, documents, find, run

SHA = re.compile(r"[0-9a-f]{40}")
STALE = "sha256:" + "5a" * 32  # a digest no overlay pins
# The provenance annotations modelops.io/<key>, each copied into the app's MODELOPS_<KEY>.
PROVENANCE_KEYS = (
    "model-name",
    "model-version",
    "model-stage",
    "git-commit",
    "image-digest",
    "model-sha256",
)
# JSON-ish paths that may differ between environments; anything else differing is a copy error.
INTENDED = [
    r"^\w+/[\w-]+\.metadata\.namespace$",
    r"^Deployment/model\.spec\.template\.metadata\.annotations\.modelops\.io/"
    r"(model-stage|model-version|model-sha256|git-commit|image-digest)$",
    r"^Deployment/model\.spec\.template\.spec\.containers\.(app|nginx)\.resources\.",
    r"^Deployment/model\.spec\.template\.spec\.containers\.app\.env\.UWSGI_PROCESSES$",
    r"^Deployment/model\.spec\.template\.spec\.containers\.app\.env\.MODELOPS_"
    r"(MODEL_STAGE|MODEL_VERSION|MODEL_SHA256|GIT_COMMIT|IMAGE_DIGEST)$",
    r"^Deployment/model\.spec\.template\.spec\.containers\.app\.image$",
    r"^Deployment/model\.spec\.template\.spec\.topologySpreadConstraints\.0\.whenUnsatisfiable$",
    r"^HorizontalPodAutoscaler/model\.spec\.(min|max)Replicas$",
]


def kustomization(env: str) -> dict[str, Any]:
    return dict(yaml.safe_load((OVERLAYS / env / "kustomization.yaml").read_text()))


def flatten(node: Any, prefix: str, out: dict[str, Any]) -> None:
    """Leaves by path; list items keyed by their `name` when they have one."""
    if isinstance(node, dict):
        for key, value in node.items():
            flatten(value, f"{prefix}.{key}", out)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            key = value.get("name", index) if isinstance(value, dict) else index
            if isinstance(value, dict) and "name" in value and "value" in value:
                out[f"{prefix}.{key}"] = value["value"]
            else:
                flatten(value, f"{prefix}.{key}", out)
    else:
        out[prefix] = node


def leaves(docs: Docs) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for doc in docs:
        flatten(doc, f"{doc['kind']}/{doc['metadata']['name']}", out)
    return out


def assert_env_matches_annotations(docs: Docs) -> None:
    """The server reports (MODELOPS_*) exactly what the pod annotations say."""
    annotations = find(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    env = {e["name"]: e.get("value") for e in containers(docs)["app"]["env"]}
    for key in PROVENANCE_KEYS:
        variable = "MODELOPS_" + key.upper().replace("-", "_")
        assert env[variable] == annotations[f"modelops.io/{key}"], variable


def test_every_environment_has_an_overlay_and_nothing_else_does() -> None:
    assert sorted(p.name for p in OVERLAYS.iterdir() if p.is_dir()) == sorted(ENVIRONMENTS)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_overlay_is_thin_and_builds_on_the_rendered_base(
    env: str, overlay_docs: dict[str, Docs]
) -> None:
    spec = kustomization(env)
    assert spec["resources"] == ["../../base"]
    assert spec["namespace"] == f"modelops-{env}"
    assert all(doc["metadata"]["namespace"] == f"modelops-{env}" for doc in overlay_docs[env])
    for patch in spec["patches"]:
        assert len((OVERLAYS / env / patch["path"]).read_text().splitlines()) < 40


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_image_is_pinned_by_its_git_sha_and_its_digest_set_through_images(
    env: str, overlay_docs: dict[str, Docs]
) -> None:
    (entry,) = kustomization(env)["images"]
    assert entry["name"] == "modelops/model-server"
    assert SHA.fullmatch(entry["newTag"])
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", entry["digest"])
    image = containers(overlay_docs[env])["app"]["image"]
    assert image == f"{entry['newName']}:{entry['newTag']}@{entry['digest']}"
    annotations = find(overlay_docs[env], "Deployment")["spec"]["template"]["metadata"][
        "annotations"
    ]
    assert annotations["modelops.io/git-commit"] == entry["newTag"]
    assert annotations["modelops.io/image-digest"] == entry["digest"]
    assert annotations["modelops.io/model-stage"] == env
    assert_env_matches_annotations(overlay_docs[env])


def rendered_files() -> dict[str, Docs]:
    """What Argo CD applies: each rendered/<env>/manifests.yaml present on this branch."""
    return {
        path.parent.name: documents(path.read_text())
        for path in sorted((ROOT / "rendered").glob("*/manifests.yaml"))
    }


def test_every_container_deployed_is_pinned_by_digest_and_pulled_always(
    overlay_docs: dict[str, Docs],
) -> None:
    upstream = re.search(
        r"^FROM (\S+) AS nginx$", (ROOT / "images" / "upstream" / "Dockerfile").read_text(), re.M
    )
    assert upstream
    deployed = {
        **{f"overlay {env}": docs for env, docs in overlay_docs.items()},
        **{f"rendered {env}": docs for env, docs in rendered_files().items()},
    }
    assert any(source.startswith("rendered ") for source in deployed), (
        "no rendered/*/manifests.yaml"
    )
    for source, docs in deployed.items():
        spec = find(docs, "Deployment")["spec"]["template"]["spec"]
        for container in spec.get("initContainers", []) + spec["containers"]:
            assert re.fullmatch(r"\S+:\S+@sha256:[0-9a-f]{64}", container["image"]), (
                source,
                container["name"],
            )
            assert container["imagePullPolicy"] == "Always", (source, container["name"])
        # Nginx by the tag and digest images/upstream/Dockerfile pins, through the chart's values.
        assert containers(docs)["nginx"]["image"] == upstream.group(1), source


def app_provenance(docs: Docs) -> tuple[str, dict[str, str], dict[str, Any]]:
    """The app container's image, the pod's annotations and the app's env (name -> value)."""
    annotations = find(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    app = containers(docs)["app"]
    return app["image"], annotations, {e["name"]: e.get("value") for e in app["env"]}


def copy_overlay(tmp_path: Path, env: str, *, digest: bool = True, base_digest: str = "") -> Path:
    """A copy of kustomize/ with ENV's overlay; without its image digest unless ``digest``; with
    ``base_digest`` in the base's image-digest annotation when given."""
    copy = tmp_path / "kustomize"
    shutil.copytree(ROOT / "kustomize", copy)
    overlay = copy / "overlays" / env
    if not digest:
        spec = kustomization(env)
        for entry in spec["images"]:
            entry.pop("digest", None)
        (overlay / "kustomization.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    if base_digest:
        base = copy / "base" / "deployment.yaml"
        line = '        modelops.io/image-digest: ""\n'
        assert base.read_text().count(line) == 1
        base.write_text(
            base.read_text().replace(line, f"        modelops.io/image-digest: {base_digest}\n")
        )
    return overlay


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_an_image_without_a_digest_still_builds_and_reports_an_empty_image_digest(
    env: str, kubectl: str, tmp_path: Path
) -> None:
    """What images/pod.py runs locally: kustomize fails a whole build on a source delimiter index
    the value lacks, so the transformer must not split an image without '@' for its digest."""
    overlay = copy_overlay(tmp_path, env, digest=False)
    docs = documents(run(kubectl, "kustomize", str(overlay)).stdout)
    image, annotations, app_env = app_provenance(docs)
    (entry,) = kustomization(env)["images"]
    assert image == f"{entry['newName']}:{entry['newTag']}"
    assert annotations["modelops.io/image-digest"] == ""
    assert app_env["MODELOPS_IMAGE_DIGEST"] == ""
    assert annotations["modelops.io/git-commit"] == entry["newTag"]
    assert_env_matches_annotations(docs)


@pytest.mark.parametrize("digest", [True, False], ids=["pinned", "unpinned"])
def test_the_image_digest_comes_from_the_image_not_from_the_base(
    digest: bool, kubectl: str, tmp_path: Path
) -> None:
    """A base carrying another digest (the chart's image.digest, which `images:` with only a newTag
    drops from the image) never reaches the pod: the annotation is the image's digest or empty."""
    overlay = copy_overlay(tmp_path, "dev", digest=digest, base_digest=STALE)
    image, annotations, app_env = app_provenance(
        documents(run(kubectl, "kustomize", str(overlay)).stdout)
    )
    expected = kustomization("dev")["images"][0]["digest"] if digest else ""
    assert image.partition("@")[2] == expected
    assert annotations["modelops.io/image-digest"] == expected != STALE
    assert app_env["MODELOPS_IMAGE_DIGEST"] == expected


@pytest.mark.parametrize("digest", [True, False], ids=["pinned", "unpinned"])
def test_the_git_commit_is_the_image_tag_even_behind_a_registry_with_a_port(
    digest: bool, kubectl: str, tmp_path: Path
) -> None:
    """A registry on 127.0.0.1:5000 puts a ':' before the tag's: the commit is still the tag."""
    overlay = copy_overlay(tmp_path, "dev", digest=digest)
    path = overlay / "kustomization.yaml"
    spec = yaml.safe_load(path.read_text())
    (entry,) = spec["images"]
    entry["newName"] = "127.0.0.1:5000/acme/modelops/model-server"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    docs = documents(run(kubectl, "kustomize", str(overlay)).stdout)
    image, annotations, app_env = app_provenance(docs)
    assert image.startswith(f"127.0.0.1:5000/acme/modelops/model-server:{entry['newTag']}")
    assert annotations["modelops.io/git-commit"] == entry["newTag"]
    assert app_env["MODELOPS_GIT_COMMIT"] == entry["newTag"]
    assert annotations["modelops.io/image-digest"] == entry.get("digest", "")


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_hpa_owns_the_replica_count(env: str, overlay_docs: dict[str, Docs]) -> None:
    assert "replicas" not in find(overlay_docs[env], "Deployment")["spec"]
    hpa = find(overlay_docs[env], "HorizontalPodAutoscaler")["spec"]
    assert 1 <= hpa["minReplicas"] <= hpa["maxReplicas"]


def test_the_environments_differ_only_where_intended(overlay_docs: dict[str, Docs]) -> None:
    dev = leaves(overlay_docs["dev"])
    for env in ("staging", "prod"):
        other = leaves(overlay_docs[env])
        assert dev.keys() <= other.keys()
        differing = sorted(
            k for k in other.keys() | dev.keys() if dev.get(k, None) != other.get(k, None)
        )
        unexpected = [k for k in differing if not any(re.search(p, k) for p in INTENDED)]
        assert not unexpected, f"{env} differs from dev outside the intended fields: {unexpected}"
        assert differing, f"{env} is a copy of dev"


def test_prod_is_the_strictest_environment(overlay_docs: dict[str, Docs]) -> None:
    def hpa(env: str) -> dict[str, int]:
        return dict(find(overlay_docs[env], "HorizontalPodAutoscaler")["spec"])

    assert hpa("dev")["minReplicas"] < hpa("staging")["minReplicas"] < hpa("prod")["minReplicas"]
    prod = find(overlay_docs["prod"], "Deployment")["spec"]["template"]["spec"]
    assert prod["topologySpreadConstraints"][0]["whenUnsatisfiable"] == "DoNotSchedule"
    for name, container in containers(overlay_docs["prod"]).items():
        resources = container["resources"]
        assert resources["requests"] == resources["limits"], f"{name}: not Guaranteed QoS"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_deploying_an_image_changes_its_tag_and_digest_lines_and_moves_the_provenance(
    env: str, kubectl: str, tmp_path: Path
) -> None:
    copy = tmp_path / "kustomize"
    shutil.copytree(ROOT / "kustomize", copy)
    file = copy / "overlays" / env / "kustomization.yaml"
    before = file.read_text()
    new_sha = "0123456789abcdef" * 2 + "01234567"
    digest = "sha256:" + "ab" * 32
    # what promote.yml runs
    assert set_image(file.parent, "modelops/model-server", new_sha, digest=digest)
    after = file.read_text()
    removed = [line for line in before.splitlines() if line not in after.splitlines()]
    added = [line for line in after.splitlines() if line not in before.splitlines()]
    assert len(before.splitlines()) == len(after.splitlines())
    assert len(removed) == 2
    assert [line.strip() for line in added] == [f"newTag: {new_sha}", f"digest: {digest}"]
    docs = documents(run(kubectl, "kustomize", str(file.parent)).stdout)
    assert containers(docs)["app"]["image"].endswith(f":{new_sha}@{digest}")
    annotations = find(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["modelops.io/git-commit"] == new_sha
    assert annotations["modelops.io/image-digest"] == digest
    assert_env_matches_annotations(docs)


def test_one_line_in_an_overlay_turns_its_environments_monitoring_on(
    kubectl: str, repo_copy: Path
) -> None:
    overlay = repo_copy / "kustomize" / "overlays" / "staging"
    kustomization_file = overlay / "kustomization.yaml"
    kustomization_file.write_text(
        kustomization_file.read_text() + "components:\n- ../../monitoring/staging\n"
    )
    docs = documents(run(kubectl, "kustomize", str(overlay)).stdout)
    monitoring = [d for d in docs if d["apiVersion"] == "monitoring.coreos.com/v1"]
    assert sorted(d["kind"] for d in monitoring) == ["PrometheusRule", "ServiceMonitor"]
    for doc in monitoring:
        assert doc["metadata"]["namespace"] == "modelops-staging"
    service_monitor = find(docs, "ServiceMonitor")
    service = find(docs, "Service", "model")
    selected = service_monitor["spec"]["selector"]["matchLabels"]
    assert selected.items() <= service["metadata"]["labels"].items()
    rules = find(docs, "PrometheusRule")["spec"]["groups"]
    exprs = "\n".join(r["expr"] for g in rules for r in g["rules"])
    assert 'namespace="modelops-staging"' in exprs
    assert "modelops-prod" not in exprs and "modelops-dev" not in exprs
    untouched = {
        d["kind"] for d in documents(run(kubectl, "kustomize", str(OVERLAYS / "staging")).stdout)
    }
    assert "ServiceMonitor" not in untouched, "off unless an overlay lists the component"
