"""kustomize/base is the rendered chart, kustomize/monitoring/<env> its monitoring objects per
environment, and the chart README its generated docs: no drift."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

from .conftest import CHART, ENVIRONMENTS, ROOT, documents, run

BASE = ROOT / "kustomize" / "base"
MONITORING = ROOT / "kustomize" / "monitoring"
RENDER = ROOT / "scripts" / "render-base.py"
README = ROOT / "scripts" / "render-chart-readme.py"


def render_into(out: Path, helm: str, chart: Path = CHART) -> dict[str, str]:
    run(sys.executable, str(RENDER), "--helm", helm, "--chart", str(chart), "--out", str(out))
    return {p.name: p.read_text() for p in sorted(out.iterdir())}


def test_the_committed_base_equals_a_fresh_render_of_the_chart(helm: str, tmp_path: Path) -> None:
    fresh = render_into(tmp_path / "base", helm)
    committed = {p.name: p.read_text() for p in sorted(BASE.iterdir())}
    assert sorted(committed) == sorted(fresh), "files differ: run make render"
    for name, text in fresh.items():
        assert committed[name] == text, f"kustomize/base/{name} is stale: run make render"


def test_the_drift_check_names_the_files_a_chart_change_makes_stale(
    helm: str, repo_copy: Path, tmp_path: Path
) -> None:
    chart = repo_copy / "charts" / "model"
    out = tmp_path / "base"
    render_into(out, helm, chart)
    check = [sys.executable, str(RENDER), "--helm", helm, "--chart", str(chart), "--out", str(out)]
    assert run(*check, "--check", check=False).returncode == 0
    values = chart / "values.yaml"
    values.write_text(values.read_text().replace("maxUnavailable: 1", "maxUnavailable: 2"))
    result = run(*check, "--check", check=False)
    assert result.returncode == 1
    assert "stale (pdb.yaml): run make render" in result.stderr


def test_the_committed_monitoring_components_equal_a_fresh_render(
    helm: str, tmp_path: Path
) -> None:
    render_into(tmp_path / "base", helm)
    for env in ENVIRONMENTS:
        fresh = {p.name: p.read_text() for p in sorted((tmp_path / "monitoring" / env).iterdir())}
        committed = {p.name: p.read_text() for p in sorted((MONITORING / env).iterdir())}
        assert committed == fresh, f"kustomize/monitoring/{env} is stale: run make render"
    # one generated Component per environment, and the relay's, written by hand, they include
    assert sorted(p.name for p in MONITORING.iterdir() if p.is_dir()) == sorted(
        [*ENVIRONMENTS, "relay"]
    )


def test_each_environments_component_watches_only_its_namespace_with_the_values_labels(
    helm: str, tmp_path: Path
) -> None:
    import gitops.environments

    render_into(tmp_path / "base", helm)
    labels = yaml.safe_load((MONITORING / "values.yaml").read_text())["monitoring"]
    for env in gitops.environments.load():
        directory = tmp_path / "monitoring" / env.name
        component = yaml.safe_load((directory / "kustomization.yaml").read_text())
        assert component["kind"] == "Component"
        docs = [
            d for name in component["resources"] for d in documents((directory / name).read_text())
        ]
        assert sorted(d["kind"] for d in docs) == ["PrometheusRule", "ServiceMonitor"]
        for doc, key in zip(
            sorted(docs, key=lambda d: d["kind"]), ("prometheusRule", "serviceMonitor"), strict=True
        ):
            for name, value in labels[key]["labels"].items():
                assert doc["metadata"]["labels"][name] == value
        rule = next(d for d in docs if d["kind"] == "PrometheusRule")
        exprs = [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
        selectors = {m for e in exprs for m in re.findall(r"\{([^{}]*)\}", e) if "job=" in m}
        assert selectors, "the rules select series"
        for selector in selectors:
            assert f'namespace="{env.namespace}"' in selector, (env.name, selector)


def test_the_drift_check_names_a_monitoring_component_a_values_change_makes_stale(
    helm: str, repo_copy: Path, tmp_path: Path
) -> None:
    chart = repo_copy / "charts" / "model"
    values = repo_copy / "kustomize" / "monitoring" / "values.yaml"
    out = tmp_path / "base"
    check = [
        *(sys.executable, str(RENDER), "--helm", helm, "--chart", str(chart)),
        *("--out", str(out), "--monitoring-values", str(values)),
    ]
    run(*check)
    assert run(*check, "--check", check=False).returncode == 0
    values.write_text(values.read_text().replace("release: kube-prometheus-stack", "release: x", 1))
    result = run(*check, "--check", check=False)
    assert result.returncode == 1
    stale = ", ".join(f"monitoring/{env}/servicemonitor.yaml" for env in ENVIRONMENTS)
    assert f"stale ({stale}): run make render" in result.stderr


def test_the_base_lists_every_rendered_file_and_no_test_pod(helm: str, tmp_path: Path) -> None:
    fresh = render_into(tmp_path / "base", helm)
    listed = [
        line.removeprefix("- ")
        for line in fresh["kustomization.yaml"].splitlines()
        if line.startswith("- ")
    ]
    assert sorted(listed) == sorted(set(fresh) - {"kustomization.yaml"})
    assert "kind: Pod\n" not in "".join(fresh.values())
    assert all(text.startswith("# Generated by `make render`") for text in fresh.values())


def test_the_chart_readme_is_generated_from_the_values_comments() -> None:
    result = run(sys.executable, str(README), "--check", check=False)
    assert result.returncode == 0, result.stderr
    readme = (CHART / "README.md").read_text()
    assert "| `autoscaling.enabled` | bool | `true` |" in readme


def test_the_readme_check_fails_when_a_values_comment_changes(repo_copy: Path) -> None:
    chart = repo_copy / "charts" / "model"
    values = chart / "values.yaml"
    values.write_text(
        values.read_text().replace("# -- Create a PodDisruptionBudget.", "# -- Changed.")
    )
    result = run(sys.executable, str(README), "--chart", str(chart), "--check", check=False)
    assert result.returncode == 1
    assert "stale" in result.stderr


def test_the_readme_generator_names_an_undocumented_values_key(repo_copy: Path) -> None:
    chart = repo_copy / "charts" / "model"
    values = chart / "values.yaml"
    values.write_text(values.read_text() + "undocumented: true\n")
    result = run(sys.executable, str(README), "--chart", str(chart), check=False)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert "'undocumented' has no '# -- ' description" in result.stderr
