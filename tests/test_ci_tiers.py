"""scripts/ci_tiers.py: the CI workflow's path filters pick the heavy tiers a change needs."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "ci_tiers.py"
_spec = importlib.util.spec_from_file_location("ci_tiers", SCRIPT)
assert _spec is not None and _spec.loader is not None
ci_tiers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ci_tiers)


@pytest.mark.parametrize(
    ("paths", "integration", "e2e"),
    [
        (["docs/serving.md", "README.md"], False, False),
        ([".github/CODEOWNERS"], False, False),
        ([".github/workflows/pr-guard.yml"], True, False),
        # the retrain walk runs on the drift alert loop's dispatch: e2e too
        ([".github/workflows/retrain.yml"], True, True),
        (["gitops/relay.py"], True, True),
        (["gitops/promote.py"], True, False),
        (["tests/alert_loop/fixtures.py"], False, True),
        (["tests/workflows/test_act_retrain_refusals.py"], True, False),
        (["tests/test_environments.py"], False, False),
        (["training/train.py"], True, True),
        (["tests/training/test_training_units.py"], True, False),
        (["tests/training/test_training_second_dataset.py"], True, True),
        (["serving/app.py"], False, True),
        (["charts/model/values.yaml"], True, True),
        (["docs/training.md", "bench/run.py"], False, True),
        (["requirements/dev.txt"], True, True),
        (["Makefile"], True, True),
        (["a-new-directory/thing.py"], True, True),
    ],
)
def test_a_change_runs_the_tiers_its_paths_need(
    paths: list[str], integration: bool, e2e: bool
) -> None:
    assert ci_tiers.tiers_for(paths) == {"integration": integration, "e2e": e2e}


def test_every_top_level_entry_of_the_repository_has_a_rule() -> None:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    prefixes = (*ci_tiers.EVERY_TIER, *ci_tiers.UNIT_ONLY, *sum(ci_tiers.TIERS.values(), ()))
    unruled = sorted({path for path in tracked if not path.startswith(prefixes)})
    assert unruled == [], "give these a rule in scripts/ci_tiers.py (they run every tier)"


def test_it_prints_the_lines_for_github_output_from_stdin() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT)],
        input="serving/app.py\n\ndocs/x.md\n",
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.splitlines() == ["integration=false", "e2e=true"]


def test_all_runs_every_tier() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--all"], capture_output=True, text=True, check=True
    )
    assert result.stdout.splitlines() == ["integration=true", "e2e=true"]
