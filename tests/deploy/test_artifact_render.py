"""The artifact's name and description reach the static YAML from training/params.yaml alone:
scripts/render-artifact.py writes them into the chart's values and the AppProject, and each
generator of `make render` after it (scripts/render-base.py, scripts/render-chart-readme.py,
gitops.rendered) fails its --check until it has run again after a rename."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import yaml

from training.params import load_artifact

from .conftest import CHART, ENVIRONMENTS, ROOT, run

ARTIFACT = ROOT / "scripts" / "render-artifact.py"
RENDER = ROOT / "scripts" / "render-base.py"
README = ROOT / "scripts" / "render-chart-readme.py"
PARAMS = "training/params.yaml"
#: What the rename in the tests calls the model.
NEW_NAME, NEW_DESCRIPTION = "churn-model", "Who leaves next month"


def rename(root: Path, name: str, description: str) -> None:
    """Rename the artifact in ROOT's params.yaml, as a fork does (its two lines, nothing else)."""
    path = root / PARAMS
    old = load_artifact(path)
    text = path.read_text()
    for before, after in ((old.name, name), (old.description, description)):
        key = "name" if before == old.name else "description"
        line = f"  {key}: {before}\n"
        assert text.count(line) == 1, line
        text = text.replace(line, f"  {key}: {after}\n")
    path.write_text(text)
    assert load_artifact(path) == type(old)(name, description)


def test_the_chart_values_and_the_appproject_carry_the_artifact_params_yaml_names() -> None:
    result = run(sys.executable, str(ARTIFACT), "--check", check=False)
    assert result.returncode == 0, result.stderr
    artifact = load_artifact()
    for values in (CHART / "values.yaml", CHART / "ci" / "provenance-values.yaml"):
        assert yaml.safe_load(values.read_text())["model"]["name"] == artifact.name, values
    project = yaml.safe_load((ROOT / "argocd" / "appproject.yaml").read_text())
    assert project["spec"]["description"] == (
        f"The {artifact.name} model server ({artifact.description}) in dev, staging and prod."
    )


def test_each_generators_check_fails_after_a_rename_in_params_yaml_until_make_render_ran(
    helm: str, repo_copy: Path
) -> None:
    for name in (PARAMS, "environments.toml"):
        (repo_copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, repo_copy / name)
    shutil.copytree(ROOT / "rendered", repo_copy / "rendered")
    old = load_artifact().name
    rename(repo_copy, NEW_NAME, NEW_DESCRIPTION)
    chart = repo_copy / "charts" / "model"
    kustomize = repo_copy / "kustomize"
    artifact = [sys.executable, str(ARTIFACT), "--root", str(repo_copy)]
    base = [
        *(sys.executable, str(RENDER), "--helm", helm, "--chart", str(chart)),
        *("--out", str(kustomize / "base")),
        *("--monitoring-values", str(kustomize / "monitoring" / "values.yaml")),
    ]
    readme = [sys.executable, str(README), "--chart", str(chart)]
    manifests = [sys.executable, "-m", "gitops.rendered"]

    # params.yaml renamed, nothing regenerated: the first generator names its three keys
    result = run(*artifact, "--check", check=False)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        "error: charts/model/values.yaml (model.name), charts/model/ci/provenance-values.yaml "
        "(model.name), argocd/appproject.yaml (spec.description) disagree with "
        "training/params.yaml's artifact: run make render\n"
    )
    run(*artifact)
    assert run(*artifact, "--check", check=False).returncode == 0
    # the chart now says the new name: what is rendered from it is stale, each check says so
    result = run(*base, "--check", check=False)
    assert result.returncode == 1
    stale = ["deployment.yaml"] + [f"monitoring/{e}/prometheusrule.yaml" for e in ENVIRONMENTS]
    assert f"stale ({', '.join(stale)}): run make render" in result.stderr
    result = run(*readme, "--check", check=False)
    assert (result.returncode, "stale" in result.stderr) == (1, True)
    run(*base)
    run(*readme)
    assert run(*base, "--check", check=False).returncode == 0
    assert run(*readme, "--check", check=False).returncode == 0
    result = run(*manifests, "--check", cwd=repo_copy, check=False)
    assert result.returncode == 1
    assert "rendered/dev/manifests.yaml is not what kustomize/overlays/dev renders" in result.stderr
    run(*manifests, cwd=repo_copy)
    assert run(*manifests, "--check", cwd=repo_copy, check=False).returncode == 0

    # after make render's four steps no file of the copy names the old model
    left = [
        str(path.relative_to(repo_copy))
        for path in sorted(repo_copy.rglob("*"))
        if path.is_file() and not path.is_symlink() and old in path.read_text()
    ]
    assert left == []
    dev = yaml.safe_load_all((repo_copy / "rendered" / "dev" / "manifests.yaml").read_text())
    (deployment,) = [d for d in dev if d and d["kind"] == "Deployment" and d["metadata"]["name"]
                     == "model"]  # fmt: skip
    template = deployment["spec"]["template"]
    assert template["metadata"]["annotations"]["modelops.io/model-name"] == NEW_NAME
    (app,) = [c for c in template["spec"]["containers"] if c["name"] == "app"]
    assert {"name": "MODELOPS_MODEL_NAME", "value": NEW_NAME} in app["env"]
    project = yaml.safe_load((repo_copy / "argocd" / "appproject.yaml").read_text())
    assert NEW_NAME in project["spec"]["description"]
    assert NEW_DESCRIPTION in project["spec"]["description"]


def test_a_file_that_no_longer_holds_the_key_is_one_error_line(repo_copy: Path) -> None:
    for name in (PARAMS, "environments.toml"):
        (repo_copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, repo_copy / name)
    values = repo_copy / "charts" / "model" / "ci" / "provenance-values.yaml"
    values.write_text(values.read_text().replace("  name: ", "  title: ", 1))
    result = run(sys.executable, str(ARTIFACT), "--root", str(repo_copy), check=False)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        "error: charts/model/ci/provenance-values.yaml: 0 lines hold model.name, not one\n"
    )


def test_a_name_params_yaml_refuses_is_refused_in_one_line_naming_the_key(
    repo_copy: Path,
) -> None:
    for name in (PARAMS, "environments.toml"):
        (repo_copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, repo_copy / name)
    rename(repo_copy, NEW_NAME, NEW_DESCRIPTION)
    params = repo_copy / PARAMS
    params.write_text(params.read_text().replace(f"name: {NEW_NAME}", "name: Churn Model"))
    before = (repo_copy / "charts" / "model" / "values.yaml").read_text()
    result = run(sys.executable, str(ARTIFACT), "--root", str(repo_copy), check=False)
    assert (result.returncode, result.stderr.count("\n")) == (1, 1)
    assert "artifact.name must be lowercase letters and digits" in result.stderr
    assert (repo_copy / "charts" / "model" / "values.yaml").read_text() == before
