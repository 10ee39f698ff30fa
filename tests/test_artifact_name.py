"""The artifact's name has one source, training/params.yaml (artifact.name): the code, make, the
workflows and the tests read it (training.params.load_artifact, ``python -m training.params
artifact.name``), and only generated files (make render) and docs may spell it out, so a fork that
renames its model and runs make render passes the suite without editing a test. The promtool rule
tests write it as ``${MODEL}`` (tests/deploy/test_monitoring_rules.py substitutes it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from training.params import load_artifact

ROOT = Path(__file__).resolve().parents[1]
#: Where the name may be written: its source, what generators write from it and prose. Docs may
#: keep the default name as an example; they say where it comes from. Tests are no exemption: they
#: read the name from params.yaml (load_artifact), so a fork that renames its model passes them
#: unchanged.
MAY_NAME = (
    "training/params.yaml",
    "training/dvc.lock",  # dvc repro records the export stage's params
    # scripts/render-artifact.py, then scripts/render-base.py, render-chart-readme.py and
    # gitops.rendered (make render)
    "charts/model/values.yaml",
    "charts/model/ci/provenance-values.yaml",
    "argocd/appproject.yaml",
    "charts/model/README.md",
    "kustomize/base/",
    "kustomize/monitoring/dev/",
    "kustomize/monitoring/staging/",
    "kustomize/monitoring/prod/",
    "rendered/",
    "README.md",
    "docs/",
)
#: Another model's name, the one example the tests spell on purpose, and the tests that do: a fork
#: that happens to call its model so is not reported for them (any other name there still is).
EXAMPLE_NAME = "churn-model"
SPELL_THE_EXAMPLE = (
    "tests/test_artifact_name.py",  # the scan's examples below, the command line's rename
    "tests/deploy/test_artifact_render.py",  # NEW_NAME: what its rename test renames the model to
    "tests/training/test_training_units.py",  # a params file of its own, with its own artifact
)


def hand_written(files: dict[str, str], name: str) -> list[str]:
    """The files (path: text) outside MAY_NAME that spell NAME out (SPELL_THE_EXAMPLE's files
    only when NAME is not EXAMPLE_NAME)."""
    spared = SPELL_THE_EXAMPLE if name == EXAMPLE_NAME else ()
    return sorted(
        p
        for p, text in files.items()
        if name in text and not p.startswith(MAY_NAME) and p not in spared
    )


def tracked_files() -> dict[str, str]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    files = {}
    for path in filter(None, listed.split("\0")):
        try:
            files[path] = (ROOT / path).read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue  # binary data, a deleted or a submodule path
    return files


def test_no_code_config_or_workflow_spells_out_the_artifacts_name() -> None:
    assert hand_written(tracked_files(), load_artifact().name) == []


def test_the_scan_finds_a_name_written_by_hand_and_spares_its_source_and_generated_files() -> None:
    files = {
        "bench/models.py": 'MODEL_NAME = "churn-model"\n',  # the defect: a second source
        "mk/image.mk": "MODEL_REF ?= churn-model\\#dev\n",
        "training/params.yaml": "artifact:\n  name: churn-model\n",
        "kustomize/base/deployment.yaml": "value: churn-model\n",
        "docs/image.md": "MODEL_REF=churn-model#staging\n",
        "gitops/demo.py": "NAME = load_artifact().name\n",
        # a test is no exemption: one spelling the name fails a fork that renames its model
        "tests/serving/serving_testkit.py": 'MODEL_NAME = "churn-model"\n',
        "tests/deploy/monitoring/drift.test.yml": "model: churn-model\n",
        "tests/deploy/test_artifact_render.py": 'NEW_NAME = "churn-model"\n',
    }
    assert hand_written(files, "churn-model") == [
        "bench/models.py",
        "mk/image.mk",
        "tests/deploy/monitoring/drift.test.yml",
        "tests/serving/serving_testkit.py",
    ]
    # the tests that spell the example are scanned for every other name (one no file spells)
    other = f"not-{EXAMPLE_NAME}"
    files = {p: text.replace(EXAMPLE_NAME, other) for p, text in files.items()}
    assert hand_written(files, other) == [
        "bench/models.py",
        "mk/image.mk",
        "tests/deploy/monitoring/drift.test.yml",
        "tests/deploy/test_artifact_render.py",
        "tests/serving/serving_testkit.py",
    ]


def params_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "training.params", *args],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_make_and_the_workflows_read_the_name_and_description_in_one_line(tmp_path: Path) -> None:
    artifact = load_artifact()
    assert params_cli("artifact.name").stdout == f"{artifact.name}\n"
    assert params_cli("artifact.description").stdout == f"{artifact.description}\n"
    renamed = tmp_path / "params.yaml"
    text = (ROOT / "training" / "params.yaml").read_text()
    renamed.write_text(text.replace(f"  name: {artifact.name}\n", "  name: churn-model\n"))
    assert params_cli("artifact.name", "--params", str(renamed)).stdout == "churn-model\n"


def test_the_image_builds_the_dev_stage_of_the_artifact_params_yaml_names() -> None:
    done = subprocess.run(
        ["make", "--no-print-directory", "--eval", "print-ref: ; @echo '$(MODEL_REF)'",
         "print-ref"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert done.stdout == f"{load_artifact().name}#dev\n"


def test_an_unknown_key_or_a_bad_name_is_one_error_line(tmp_path: Path) -> None:
    done = params_cli("artifact.version")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith("error: argument key: invalid choice: 'artifact.version'")
    assert done.stderr.count("\n") == 1
    bad = tmp_path / "params.yaml"
    text = (ROOT / "training" / "params.yaml").read_text()
    bad.write_text(text.replace(f"  name: {load_artifact().name}\n", "  name: Churn_Model\n"))
    done = params_cli("artifact.name", "--params", str(bad))
    assert (done.returncode, done.stdout, done.stderr.count("\n")) == (1, "", 1)
    assert done.stderr.startswith(f"error: {bad}: artifact.name must be lowercase letters")
