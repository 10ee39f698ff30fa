"""scripts/ci_tiers.py: the CI workflow's path filters pick the heavy tiers a change needs."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
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
        ([".github/workflows/retrain.yml"], True, True),
        # what the e2e tests exercise (tests/workflows/test_act_image.py runs promote.yml under
        # act; test_serving_smoke_check.py and test_serving_prometheus.py run gitops modules)
        ([".github/workflows/promote.yml"], True, True),
        (["tests/workflows/test_act_image.py"], True, True),
        (["gitops/smoke.py"], True, True),
        (["retraining/relay.py"], True, True),
        # the retrain walk runs on the drift alert loop's dispatch (tests/alert_loop)
        (["tests/alert_loop/fixtures.py"], True, True),
        (["tests/workflows/test_act_retrain_refusals.py"], True, True),
        ([".github/workflows/pr-guard.yml"], True, True),
        (["gitops/promote.py"], True, True),
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


# --- the table is checked against what the heavy tiers' tests exercise ------------------------

#: The table before the e2e tier was checked: promote.yml, tests/workflows/*, gitops/smoke.py and
#: the relay (now retraining/relay.py) ran integration only, though e2e tests exercise them.
UNCHECKED_TIERS = {
    "integration": ci_tiers.TIERS["integration"],
    "e2e": (
        "bench/", "charts/", "devstack/", "images/", "kustomize/", "modelcard/", "rendered/",
        "scripts/", "serving/", "tests/deploy/", "tests/image/", "tests/serving/", "training/",
        "tests/training/test_training_second_dataset.py",
    ),
}  # fmt: skip


def tracked() -> list[str]:
    return ci_tiers.tracked(ROOT)


def test_every_path_a_heavy_tier_s_tests_exercise_runs_that_tier() -> None:
    gaps = ci_tiers.uncovered(ROOT, tracked())
    assert gaps == {"integration": {}, "e2e": {}}, "add these to TIERS in scripts/ci_tiers.py"


def test_the_check_finds_what_the_unchecked_table_left_out_of_e2e() -> None:
    gaps = ci_tiers.uncovered(ROOT, tracked(), UNCHECKED_TIERS)
    e2e = gaps["e2e"]
    assert "tests/workflows/test_act_image.py" in e2e[".github/workflows/promote.yml"]
    assert "tests/workflows/test_act_image.py" in e2e["tests/workflows/act_harness.py"]
    assert "tests/serving/test_serving_smoke_check.py" in e2e["gitops/smoke.py"]
    relay = e2e["retraining/relay.py"]  # named "retraining.relay"
    assert "tests/serving/test_serving_prometheus.py" in relay
    assert gaps["integration"] == {}


def test_any_workflow_gitops_retraining_devstack_or_serving_change_runs_the_e2e_tier() -> None:
    prefixes = (".github/workflows/", "gitops/", "retraining/", "devstack/", "serving/")
    paths = [path for path in tracked() if path.startswith(prefixes)]
    paths += [".github/workflows/new.yml", "gitops/new.py", "retraining/new.py", "devstack/new.py"]
    paths += ["serving/new.py"]
    assert [path for path in paths if not ci_tiers.tiers_for([path])["e2e"]] == []


def write(root: Path, files: dict[str, str]) -> list[str]:
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(textwrap.dedent(text))
    return list(files)


def test_a_new_heavy_test_module_and_the_paths_it_exercises_need_a_rule(tmp_path: Path) -> None:
    files = write(
        tmp_path,
        {
            "tests/conftest.py": "pytest_plugins = ['helpers.plugin']\n",
            "tests/helpers/__init__.py": "",
            "tests/helpers/plugin.py": "import argocd_tool\n",
            "argocd_tool.py": "",  # no rule: a change to it runs every tier
            "tests/gitops/test_new.py": """
                import pytest
                from gitops import newmod
                from pathlib import Path
                ROOT = Path.cwd()

                @pytest.mark.e2e
                def test_x():
                    (ROOT / ".dvc" / "new.yaml").read_text()
                    run(".github/workflows/new.yml", "-m", "devstack.tool")
                """,
            "gitops/newmod.py": "from . import helper\n",
            "gitops/helper.py": "OVERLAYS = 'kustomize/overlays'\n",
            ".dvc/new.yaml": "",
            ".github/workflows/new.yml": "jobs: {a: {steps: [{run: python -m training.thing}]}}\n",
            "devstack/tool.py": "",
            "training/thing.py": "",
            "kustomize/overlays/dev/kustomization.yaml": "",
            "docs/unrelated.md": "",
            "tests/gitops/test_old.py": "def test_y(): pass\n",
        },
    )
    exercised = ci_tiers.Exercised(tmp_path, files).of("tests/gitops/test_new.py")
    assert exercised == set(files) - {"docs/unrelated.md", "tests/gitops/test_old.py"}
    gaps = ci_tiers.uncovered(tmp_path, files)
    # tests/gitops/ and .dvc/ run integration only; the rest runs e2e (or, unruled, every tier)
    assert gaps == {
        "integration": {},
        "e2e": {
            ".dvc/new.yaml": ["tests/gitops/test_new.py"],
            "tests/gitops/test_new.py": ["tests/gitops/test_new.py"],
        },
    }
