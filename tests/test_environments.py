"""environments.toml is the one list of environments: it parses strictly, and the overlays, the
Argo CD AppProject and ApplicationSet, and the promote workflow agree with it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gitops import environments
from gitops.environments import EnvironmentsError, parse

ROOT = Path(__file__).resolve().parents[1]
ENVIRONMENTS = environments.load()
GOOD = '[[environment]]\nname = "dev"\nbranch = "main"\nstage = "dev"\nnamespace = "ns-dev"\n'


def yaml_file(path: str) -> dict[str, object]:
    document: dict[str, object] = yaml.safe_load((ROOT / path).read_text())
    return document


def test_the_environments_are_dev_staging_prod_in_promotion_order() -> None:
    assert [(e.name, e.branch, e.stage) for e in ENVIRONMENTS] == [
        ("dev", "main", "dev"),
        ("staging", "staging", "staging"),
        ("prod", "production", "prod"),
    ]
    assert environments.order_text() == "experiment/* -> main -> staging -> production"
    assert environments.previous(ENVIRONMENTS[2]) == ENVIRONMENTS[1]
    assert environments.previous(ENVIRONMENTS[0]) is None


def test_there_is_one_overlay_per_environment_and_it_deploys_to_its_namespace() -> None:
    overlays = ROOT / "kustomize" / "overlays"
    assert sorted(p.name for p in overlays.iterdir() if p.is_dir()) == sorted(
        e.name for e in ENVIRONMENTS
    )
    for env in ENVIRONMENTS:
        kustomization = yaml_file(f"{env.overlay}/kustomization.yaml")
        assert kustomization["namespace"] == env.namespace, env.name


def test_the_appproject_allows_exactly_the_environments_namespaces() -> None:
    project = yaml_file("argocd/appproject.yaml")
    spec = project["spec"]
    assert isinstance(spec, dict)
    assert [d["namespace"] for d in spec["destinations"]] == [e.namespace for e in ENVIRONMENTS]


def test_the_applicationset_lists_each_environment_as_the_environments_file_does() -> None:
    appset = yaml_file("argocd/applicationset.yaml")
    (generator,) = appset["spec"]["generators"]  # type: ignore[index]
    assert generator["list"]["elements"] == [
        {"env": e.name, "branch": e.branch, "namespace": e.namespace} for e in ENVIRONMENTS
    ]


def test_the_environments_workflow_runs_on_exactly_the_environment_branches() -> None:
    workflow = yaml_file(".github/workflows/environments.yml")
    on = workflow[True]  # type: ignore[index]  # YAML 1.1 reads the key `on` as True
    assert on["push"]["branches"] == [e.branch for e in ENVIRONMENTS]


def test_a_well_formed_file_parses() -> None:
    (env,) = parse(GOOD)
    assert (env.name, env.overlay) == ("dev", "kustomize/overlays/dev")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "must hold [[environment]] tables and nothing else"),
        (GOOD + "[other]\n", "must hold [[environment]] tables and nothing else"),
        (GOOD.replace('stage = "dev"\n', ""), "environment 1: stage must be a non-empty string"),
        (GOOD + 'color = "red"\n', "environment 1: unknown key color (known: name, branch"),
        (GOOD.replace('"ns-dev"', "3"), "namespace must be a non-empty string, got 3"),
        (GOOD.replace('name = "dev"', 'name = "Dev"'), "name must match"),
        (GOOD + GOOD.replace('"dev"', '"qa"'), "branch 'main' is used twice"),
        ("[[environment]\n", "not valid TOML"),
    ],
)
def test_a_malformed_file_is_refused_in_one_line_naming_the_key(text: str, message: str) -> None:
    with pytest.raises(EnvironmentsError) as raised:
        parse(text, "environments.toml")
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)
