"""The act harness (tests/workflows/act_harness.py) and its stand-ins, without running act."""

import itertools
import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from act_harness import (
    PLATFORM,
    STANDIN_OF,
    STANDINS,
    Sandbox,
    act_command,
    act_env,
    local_repositories,
)
from workflow_helpers import REPO, workflow_files

README = (STANDINS / "README.md").read_text()


def test_every_action_a_workflow_pins_runs_its_stand_in_by_that_exact_pin(tmp_path: Path) -> None:
    text = "".join(path.read_text() for path in workflow_files())
    pins = set(re.findall(r"uses: (\S+@[0-9a-f]{40})", text))
    command = act_command("push", cache=tmp_path)
    wired = dict(
        option.split("=", 1)
        for flag, option in itertools.pairwise(command)
        if flag == "--local-repository"
    )
    assert set(wired) == pins
    for pin, folder in wired.items():
        assert Path(folder) == STANDINS / STANDIN_OF[pin.split("@")[0]]
        assert (Path(folder) / "action.yml").is_file()


def test_an_action_without_a_stand_in_is_refused_by_name() -> None:
    with pytest.raises(LookupError, match=r"actions/upload-artifact@abc: no stand-in"):
        local_repositories(["actions/checkout@abc", "actions/upload-artifact@abc"])


def test_act_runs_every_job_on_this_machine_with_the_given_event_workflow_vars_and_secrets(
    tmp_path: Path,
) -> None:
    command = act_command(
        "pull_request",
        workflow="pr-guard.yml",
        job="order",
        payload=tmp_path / "event.json",
        variables={"IMAGE_REGISTRY": "127.0.0.1:5000/acme"},
        secrets={"DVC_CONFIG": "x"},
        cache=tmp_path / "act",
    )
    text = " ".join(command)
    assert command[:2] == ["act", "pull_request"]
    assert f"-P {PLATFORM}" in text and PLATFORM == "ubuntu-24.04=-self-hosted"
    assert "-W .github/workflows/pr-guard.yml -j order" in text
    assert f"-e {tmp_path / 'event.json'}" in text
    assert "--var IMAGE_REGISTRY=127.0.0.1:5000/acme" in text
    assert "-s DVC_CONFIG=x" in text and "-s GITHUB_TOKEN=" in text
    assert f"--action-cache-path {tmp_path / 'act'}" in text


def test_every_runs_on_label_is_the_one_act_runs_on_this_machine() -> None:
    labels = {
        job["runs-on"]
        for path in workflow_files()
        for job in yaml.safe_load(path.read_text())["jobs"].values()
    }
    assert labels == {PLATFORM.split("=")[0]}


def test_the_readme_lists_every_stand_in_folder_and_the_gh_stand_in() -> None:
    folders = {path.name for path in STANDINS.iterdir() if path.is_dir() and path.name != "bin"}
    assert folders == set(STANDIN_OF.values())
    for name in [*STANDIN_OF, *STANDIN_OF.values()]:
        assert f"`{name}" in README, name
    assert "`bin/gh`" in README


def test_the_steps_see_the_gh_stand_in_first_and_none_of_the_callers_github_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "the caller's")
    monkeypatch.setenv("RUNNER_TEMP", "/the/callers")
    env = act_env(Sandbox(tmp_path))
    assert env["PATH"].split(":")[0] == str(STANDINS / "bin")
    assert not {"GITHUB_TOKEN", "RUNNER_TEMP"} & set(env)
    assert env["MODELOPS_ACT_TOOLCHAIN"] == str(REPO)


def run_gh(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "MODELOPS_GH_CALLS": str(tmp_path / "calls.jsonl"),
        "MODELOPS_GH_PR_FILES": str(tmp_path / "files"),
        "GH_TOKEN": "t0ken",
        "GITHUB_REPOSITORY": "acme/modelops",
    }
    return subprocess.run(
        [str(STANDINS / "bin" / "gh"), *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_gh_stand_in_answers_pr_diff_from_the_prepared_file_and_records_each_call(
    tmp_path: Path,
) -> None:
    (tmp_path / "files").write_text("serving/app.py\ndocs/serving.md\n")
    listed = run_gh(tmp_path, "pr", "diff", "7", "--repo", "acme/modelops", "--name-only")
    created = run_gh(tmp_path, "pr", "create", "--base", "main", "--title", "t")
    assert (listed.returncode, listed.stdout) == (0, "serving/app.py\ndocs/serving.md\n")
    assert (created.returncode, created.stdout) == (0, "")
    calls = [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]
    assert [call["argv"][:2] for call in calls] == [["pr", "diff"], ["pr", "create"]]
    assert calls[0]["env"] == {"GH_TOKEN": "t0ken", "GITHUB_REPOSITORY": "acme/modelops"}


def test_the_gh_stand_in_fails_a_call_it_has_no_answer_for(tmp_path: Path) -> None:
    result = run_gh(tmp_path, "release", "create", "v1")
    assert result.returncode == 1
    assert "no answer for gh release create v1" in result.stderr


def test_make_act_runs_the_harness_with_the_given_event_and_workflow() -> None:
    dry = subprocess.run(
        ["make", "-n", "act", "EVENT=pull_request", "WORKFLOW=pr-guard.yml", "ACT_VARS=A=1 B=2"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = dry.split("act_harness.py", 1)[1].replace("\\\n", " ")
    assert "--event 'pull_request'" in line and "--workflow 'pr-guard.yml'" in line
    assert "--var 'A=1' --var 'B=2'" in line
