"""The act harness (tests/workflows/act_harness.py) and its stand-ins, without running act."""

import itertools
import json
import re
import subprocess
import sys
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
    checked_out,
    local_repositories,
    make_sandbox,
    pull_request_payload,
    pull_request_refs,
    workflow_commit,
)
from workflow_helpers import REPO, git, workflow_files

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
    with pytest.raises(LookupError, match=r"actions/github-script@abc: no stand-in"):
        local_repositories(["actions/checkout@abc", "actions/github-script@abc"])


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
    # not bin, nor the __pycache__ an import of github_api.py leaves (tests/retraining/)
    # where PYTHONDONTWRITEBYTECODE is unset, as in a default environment
    folders = {
        path.name
        for path in STANDINS.iterdir()
        if path.is_dir() and path.name not in {"bin", "__pycache__"}
    }
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
    assert env["MODELOPS_ACT_ARTIFACTS"] == str(tmp_path / "artifacts")


# --- pull request events: what GitHub serves and which workflow files it runs ------------------


@pytest.fixture
def small_sandbox(tmp_path: Path) -> Sandbox:
    """A sandbox of a one-file repository, main and staging in its origin, a test identity."""
    source = tmp_path / "source"
    source.mkdir()
    git(source, "init", "-q", "-b", "main")
    (source / "guard.yml").write_text("the base's guard\n")
    git(source, "add", "guard.yml")
    git(source, "-c", "user.name=t", "-c", "user.email=t@x", "commit", "-qm", "base")
    sandbox = make_sandbox(tmp_path / "sandbox", source=source)
    git(sandbox.work, "config", "user.name", "t")
    git(sandbox.work, "config", "user.email", "t@x")
    git(sandbox.work, "push", "-q", "origin", "HEAD:refs/heads/staging")
    return sandbox


def open_pr(sandbox: Sandbox, path: str, text: str, number: int = 5) -> dict[str, object]:
    """A pull request into staging whose head commit writes TEXT to PATH; the payload."""
    base = git(sandbox.work, "rev-parse", "origin/staging").strip()
    git(sandbox.work, "switch", "-q", "-c", f"experiment/{number}", base)
    (sandbox.work / path).write_text(text)
    git(sandbox.work, "add", path)
    git(sandbox.work, "commit", "-qm", "the pull request")
    head = git(sandbox.work, "rev-parse", "HEAD").strip()
    git(sandbox.work, "switch", "-q", "main")
    return pull_request_payload(
        number=number, head_ref=f"experiment/{number}", base_ref="staging", head_sha=head,
        base_sha=base,
    )  # fmt: skip


def test_the_sandbox_has_no_local_branch_but_its_own(tmp_path: Path) -> None:
    """The checkout the sandbox is cloned from may be on any branch (a worktree's): act would name
    a push after it."""
    source = tmp_path / "source"
    source.mkdir()
    git(source, "init", "-q", "-b", "wt/x")
    git(source, "-c", "user.name=t", "-c", "user.email=t@x", "commit", "-q", "--allow-empty",
        "-m", "x")  # fmt: skip
    sandbox = make_sandbox(tmp_path / "sandbox", branch="staging", source=source)
    refs = git(sandbox.work, "for-each-ref", "--format=%(refname)", "refs/heads").split()
    assert refs == ["refs/heads/staging"]


def test_a_pull_request_gets_the_head_and_merge_refs_github_serves(small_sandbox: Sandbox) -> None:
    sandbox = small_sandbox
    payload = open_pr(sandbox, "guard.yml", "the pull request's guard: true\n")
    # the base moves on after the pull request was opened: GitHub merges into its tip
    git(sandbox.work, "switch", "-q", "-c", "later", "origin/staging")
    (sandbox.work / "notes.md").write_text("later\n")
    git(sandbox.work, "add", "notes.md")
    git(sandbox.work, "commit", "-qm", "later on staging")
    git(sandbox.work, "push", "-q", "origin", "HEAD:refs/heads/staging")
    git(sandbox.work, "switch", "-q", "main")
    tip = git(sandbox.origin, "rev-parse", "staging").strip()
    refs = pull_request_refs(sandbox, payload)
    head = payload["pull_request"]["head"]["sha"]  # type: ignore[index]
    assert (refs.number, refs.head, refs.base) == (5, head, tip)
    for repo in (sandbox.work, sandbox.origin):
        assert git(repo, "rev-parse", "refs/pull/5/head", "refs/pull/5/merge").split() == [
            head, refs.merge
        ]  # fmt: skip
    assert git(sandbox.work, "rev-parse", f"{refs.merge}^1", f"{refs.merge}^2").split() == [
        tip,
        head,
    ]
    merged = git(sandbox.work, "ls-tree", "--name-only", refs.merge).split()
    assert merged == ["guard.yml", "notes.md"]
    assert (
        git(sandbox.work, "show", f"{refs.merge}:guard.yml") == "the pull request's guard: true\n"
    )
    assert workflow_commit("pull_request", refs) == refs.merge
    assert workflow_commit("pull_request_target", refs) == tip
    with pytest.raises(ValueError, match="push is no pull request event"):
        workflow_commit("push", refs)


def test_a_pull_request_that_does_not_merge_cleanly_has_no_merge_ref(
    small_sandbox: Sandbox,
) -> None:
    payload = open_pr(small_sandbox, "guard.yml", "ours\n")
    git(small_sandbox.work, "switch", "-q", "--detach", "origin/staging")
    (small_sandbox.work / "guard.yml").write_text("theirs\n")
    git(small_sandbox.work, "commit", "-qam", "staging changes the guard too")
    git(small_sandbox.work, "push", "-q", "origin", "HEAD:refs/heads/staging")
    git(small_sandbox.work, "switch", "-q", "main")
    with pytest.raises(
        ValueError, match=r"does not merge into staging cleanly.*no refs/pull/5/merge"
    ):
        pull_request_refs(small_sandbox, payload)


def test_act_runs_in_the_checkout_of_the_events_commit_and_the_clone_goes_back(
    small_sandbox: Sandbox,
) -> None:
    work = small_sandbox.work
    refs = pull_request_refs(small_sandbox, open_pr(small_sandbox, "guard.yml", "x\n"))
    with checked_out(work, workflow_commit("pull_request", refs)):
        assert (work / "guard.yml").read_text() == "x\n"
    with checked_out(work, workflow_commit("pull_request_target", refs)):
        assert (work / "guard.yml").read_text() == "the base's guard\n"
    assert git(work, "symbolic-ref", "--short", "HEAD").strip() == "main"


def run_gh(
    tmp_path: Path, *args: str, event: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "MODELOPS_GH_CALLS": str(tmp_path / "calls.jsonl"),
        "MODELOPS_GH_PR_FILES": str(tmp_path / "files"),
        "GH_TOKEN": "t0ken",
        "GITHUB_REPOSITORY": "acme/modelops",
        **({"GITHUB_EVENT_PATH": str(event)} if event else {}),
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
    assert calls[0]["event"] is None  # no run's event file


def test_the_gh_stand_in_records_the_event_file_of_the_run_as_it_reads(tmp_path: Path) -> None:
    event = tmp_path / "event.json"
    event.write_text('{"action": "model-drift",  "client_payload": {}}\n')
    assert run_gh(tmp_path, "auth", "setup-git", event=event).returncode == 0
    [call] = [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]
    assert call["event"] == event.read_text()


def test_the_gh_stand_in_posts_a_commit_status_of_this_repository_only(tmp_path: Path) -> None:
    sha = "ab" * 20
    post = ["api", "--method", "POST", f"repos/acme/modelops/statuses/{sha}"]
    posted = run_gh(tmp_path, *post, "-f", "context=order", "-f", "state=failure")
    assert posted.returncode == 0, posted.stderr
    assert json.loads(posted.stdout) == {"context": "order", "state": "failure", "sha": sha}
    for bad in (
        [*post, "-f", "context=order", "-f", "state=refused"],  # no state of GitHub's
        [*post, "-f", "state=success"],  # no context
        ["api", "--method", "POST", f"repos/mallory/modelops/statuses/{sha}",
         "-f", "context=order", "-f", "state=success"],  # another repository
    ):  # fmt: skip
        assert run_gh(tmp_path, *bad).returncode == 1, bad


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


# --- the upload-artifact stand-in (upload-artifact/upload.py, run as its action.yml runs it) ---


def upload(workspace: Path, path: str, **inputs: str) -> subprocess.CompletedProcess[str]:
    """Run the stand-in in WORKSPACE with the input PATH and other INPUTS (name, overwrite, ...),
    the sandbox being WORKSPACE's parent; GITHUB_OUTPUT goes to WORKSPACE/../output."""
    env = {
        "PATH": "/usr/bin:/bin",
        "GITHUB_WORKSPACE": str(workspace),
        "GITHUB_OUTPUT": str(workspace.parent / "output"),
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_REPOSITORY": "acme/modelops",
        "GITHUB_RUN_ID": "42",
        "MODELOPS_ACT_ARTIFACTS": str(workspace.parent / "artifacts"),
        "MODELOPS_ACT_UPLOADS": str(workspace.parent / "uploads.jsonl"),
        "INPUT_NAME": "training-report",
        "INPUT_PATH": path,
        **{f"INPUT_{name.upper()}": value for name, value in inputs.items()},
    }
    return subprocess.run(
        [sys.executable, str(STANDINS / "upload-artifact" / "upload.py")],
        cwd=workspace, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A workspace with a report folder as make report writes it, plus a subfolder and a hidden
    file."""
    report = tmp_path / "workspace" / "out" / "report"
    (report / "extra").mkdir(parents=True)
    for name in ("report.md", "roc.png", "extra/notes.txt", ".hidden"):
        (report / name).write_text(name)
    return tmp_path / "workspace"


def artifact_files(workspace: Path, name: str = "training-report") -> list[str]:
    root = workspace.parent / "artifacts" / name
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_the_upload_stand_in_copies_a_folder_under_the_artifact_name_and_records_it(
    workspace: Path,
) -> None:
    result = upload(workspace, "out/report/", if_no_files_found="error")
    assert result.returncode == 0, result.stdout
    assert artifact_files(workspace) == ["extra/notes.txt", "report.md", "roc.png"]
    records = (workspace.parent / "uploads.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in records] == [
        {"name": "training-report", "files": ["extra/notes.txt", "report.md", "roc.png"]}
    ]
    assert (workspace.parent / "output").read_text().splitlines() == [
        "artifact-id=1",
        "artifact-url=https://github.com/acme/modelops/actions/runs/42/artifacts/1",
    ]


def test_the_upload_stand_in_lays_files_out_from_the_common_folder_of_the_paths(
    workspace: Path,
) -> None:
    assert upload(workspace, "out/report/report.md", name="one").returncode == 0
    assert upload(workspace, "out/report/*.png\nout/report/extra/", name="two").returncode == 0
    assert upload(workspace, "out/**/*.md", name="glob").returncode == 0
    assert artifact_files(workspace, "one") == ["report.md"]
    assert artifact_files(workspace, "two") == ["extra/notes.txt", "roc.png"]
    assert artifact_files(workspace, "glob") == ["report/report.md"]


def test_the_upload_stand_in_refuses_a_second_artifact_of_one_name_unless_overwrite(
    workspace: Path,
) -> None:
    assert upload(workspace, "out/report/report.md").returncode == 0
    again = upload(workspace, "out/report/roc.png")
    replaced = upload(workspace, "out/report/roc.png", overwrite="true")
    assert again.returncode == 1
    assert again.stdout == (
        "::error::an artifact named training-report exists already in this run (overwrite: true)\n"
    )
    assert replaced.returncode == 0
    assert artifact_files(workspace) == ["roc.png"]


@pytest.mark.parametrize(
    ("if_no_files_found", "returncode", "prefix"),
    [("error", 1, "::error::"), ("warn", 0, "::warning::"), ("ignore", 0, "")],
)
def test_the_upload_stand_in_does_what_if_no_files_found_says_when_nothing_matches(
    workspace: Path, if_no_files_found: str, returncode: int, prefix: str
) -> None:
    result = upload(workspace, "out/nothing/", if_no_files_found=if_no_files_found)
    assert result.returncode == returncode
    assert result.stdout.startswith(prefix) and len(result.stdout.splitlines()) <= 1
    assert not (workspace.parent / "artifacts").exists()


def test_the_upload_stand_in_refuses_exclusion_patterns_by_name(workspace: Path) -> None:
    result = upload(workspace, "out/report/\n!out/report/extra/")
    assert result.returncode == 1
    assert result.stdout == (
        "::error::the upload-artifact stand-in does not know exclusions: !out/report/extra/\n"
    )
