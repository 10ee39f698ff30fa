"""gitops.demo's --experiment edits one key of training/params.yaml, nested keys included."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from gitops.demo import EXPERIMENT, set_param

ROOT = Path(__file__).resolve().parents[2]


def test_the_default_experiment_sets_one_nested_key_and_keeps_the_comments() -> None:
    text = (ROOT / "training/params.yaml").read_text()
    key, _, value = EXPERIMENT.partition("=")
    changed = set_param(text, key, value)
    assert changed is not None
    document = yaml.safe_load(changed)
    assert document["train"]["logistic_regression"]["C"] == 0.5
    assert yaml.safe_load(text) | {"train": document["train"]} == document
    assert changed.count("#") == text.count("#")


def test_a_key_the_file_does_not_hold_or_a_section_is_refused() -> None:
    text = (ROOT / "training/params.yaml").read_text()
    assert set_param(text, "train.C", "0.5") is None  # C lives under train.logistic_regression
    assert set_param(text, "train.random_forest", "1") is None  # a mapping, not a value
    assert set_param(text, "prepare.seed", "7") is not None


def test_a_monitoring_value_other_than_on_or_off_is_one_usage_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gitops.demo", "--monitoring", "yes"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (2, "")
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: argument --monitoring: invalid choice: 'yes' (choose from ")
