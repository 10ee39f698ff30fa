"""gitops.monitoring: turning an environment's monitoring component on in its overlay, the change
docs/monitoring.md describes, in a copy of this checkout's kustomize/ and rendered/."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gitops import environments, monitoring, rendered
from tests.workflows.workflow_helpers import REPO, run_tool

DEV, STAGING, PROD = environments.load()


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    for part in ("kustomize", "rendered"):
        shutil.copytree(REPO / part, tmp_path / part)
    return tmp_path


def kinds(text: str) -> list[str]:
    return sorted(doc["kind"] for doc in rendered.documents(text))


def test_on_lists_each_component_in_its_overlay_and_re_renders_what_is_rendered_here(
    checkout: Path,
) -> None:
    before = {env.name: (checkout / env.overlay / "kustomization.yaml").read_text()
              for env in environments.load()}  # fmt: skip
    done = run_tool("monitoring", "on", cwd=checkout)
    turned = [f"monitoring turned on in {env.overlay} (../../monitoring/{env.name})"
              for env in environments.load()]  # fmt: skip
    assert done.stdout.splitlines() == [*turned, f"rendered {rendered.path(DEV)}"]
    for env in environments.load():
        after = (checkout / env.overlay / "kustomization.yaml").read_text()
        assert after.startswith(before[env.name])  # comments and layout kept: lines added
        assert after.endswith(f"components:\n- ../../monitoring/{env.name}\n")
    text = (checkout / rendered.path(DEV)).read_text()
    assert {"PrometheusRule", "ServiceMonitor"} <= set(kinds(text))
    assert text == rendered.render(checkout, DEV)
    assert run_tool("monitoring", "status", cwd=checkout).stdout == "dev=on\nstaging=on\nprod=on\n"


def test_on_again_changes_nothing(checkout: Path) -> None:
    run_tool("monitoring", "on", "staging", cwd=checkout)
    overlay = checkout / STAGING.overlay / "kustomization.yaml"
    before = overlay.read_text()
    done = run_tool("monitoring", "on", "staging", cwd=checkout)
    assert done.stdout == (
        f"monitoring already on in {STAGING.overlay} (../../monitoring/staging)\n"
    )
    assert overlay.read_text() == before
    status = run_tool("monitoring", "status", cwd=checkout).stdout
    assert status == "dev=off\nstaging=on\nprod=off\n"


def test_an_overlay_with_other_components_gets_the_entry_in_its_list(checkout: Path) -> None:
    overlay = checkout / PROD.overlay / "kustomization.yaml"
    overlay.write_text(overlay.read_text() + "components:\n- ../../extra\n")
    assert monitoring.turn_on(checkout, PROD)
    assert overlay.read_text().endswith("components:\n- ../../monitoring/prod\n- ../../extra\n")


def test_an_unknown_environment_or_action_is_a_usage_error_and_a_missing_component_an_error(
    checkout: Path,
) -> None:
    done = run_tool("monitoring", "on", "qa", cwd=checkout, check=False)
    assert done.returncode == 2
    assert done.stderr.startswith("error: unknown environment 'qa' (one of dev, staging, prod)")
    done = run_tool("monitoring", "off", cwd=checkout, check=False)
    assert (done.returncode, done.stderr.count("\n")) == (2, 1)
    shutil.rmtree(checkout / "kustomize" / "monitoring" / "prod")
    done = run_tool("monitoring", "on", "prod", cwd=checkout, check=False)
    missing = "error: no monitoring component kustomize/monitoring/prod: run make render\n"
    assert (done.returncode, done.stderr) == (1, missing)
