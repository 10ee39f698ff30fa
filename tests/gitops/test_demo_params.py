"""gitops.demo's --experiment edits one key of training/params.yaml, nested keys included; its
fork set-up names the signing key in evidence.toml as a fork does; it prints a promotion's gates."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from gitops import attestation
from gitops.cli import ToolError
from gitops.demo import EXPERIMENT, gate_lines, set_param, with_signing_key

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


def test_the_shipped_evidence_toml_gets_its_commented_images_table_back_with_the_key() -> None:
    text = (ROOT / "evidence.toml").read_text()
    assert tomllib.loads(text).get("images") is None  # as shipped: every image refused
    _, public = attestation.keygen()
    changed = with_signing_key(text, public)
    assert tomllib.loads(changed)["images"] == {"public_key": public}
    assert tomllib.loads(changed)["app"] == tomllib.loads(text)["app"]
    # only the two lines of the table changed; every comment above them kept
    assert len(changed.splitlines()) == len(text.splitlines())
    assert [a for a, b in zip(text.splitlines(), changed.splitlines(), strict=True) if a != b] == [
        "# [images]",
        '# public_key = "<base64 of the 32-byte public key>"',
    ]
    # a rerun replaces the key of the table it set, and one without any table gets one
    _, other = attestation.keygen()
    assert tomllib.loads(with_signing_key(changed, other))["images"]["public_key"] == other
    bare = with_signing_key("[app]\nid = 7\n", public)
    assert tomllib.loads(bare) == {"app": {"id": 7}, "images": {"public_key": public}}


def test_an_images_table_whose_key_line_is_not_found_is_refused_not_left_as_it_was() -> None:
    _, public = attestation.keygen()
    indented = '[app]\nid = 7\n[images]\n  public_key = "old"\n'  # indented: not the one key line
    with pytest.raises(ToolError, match=r"cannot set \[images\] public_key"):
        with_signing_key(indented, public)
    twice = '[images]\npublic_key = "old"\n[other]\npublic_key = "x"\n'
    with pytest.raises(ToolError, match=r"cannot set \[images\] public_key"):
        with_signing_key(twice, public)


def test_the_gate_lines_are_the_rows_of_the_promotion_body_s_gates_table() -> None:
    body = (
        "Promotes to **staging** ...\n\n| gate | checked |\n|---|---|\n"
        "| image | sha256:0123456789ab built by CI from 0123456789ab (refs/remotes/origin/main) |\n"
        "| quality | accuracy 0.9649 >= 0.9 |\n\n### `rendered/staging/manifests.yaml`\n| x | y |\n"
    )
    assert gate_lines(body) == [
        "gate image: sha256:0123456789ab built by CI from 0123456789ab (refs/remotes/origin/main)",
        "gate quality: accuracy 0.9649 >= 0.9",
    ]
    assert gate_lines("no table") == []
