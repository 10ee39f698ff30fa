"""The GitHub Actions workflows and their config: schema-valid, zizmor-, actionlint- and
yamllint-clean, every action pinned to a commit SHA with its version, least privilege, wired to
the gitops commands, scripts and make targets that exist, no telemetry from DVC, GTO or CML and no
CML upload to its asset host. All offline.
"""

import copy
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from workflow_helpers import (
    GITHUB_BASH,
    REPO,
    WORKFLOWS,
    run_step,
    run_tool,
    step_script,
    tool_env,
    workflow_files,
)

from gitops import doctor, environments
from requirements.lock import versions

USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>\S+)(?P<rest>.*)$")
PINNED = re.compile(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}")
VERSION_COMMENT = re.compile(r"\s+#\s+v\d+\.\d+\.\d+$")
EXPECTED = {
    "ci.yml", "pr-guard.yml", "training-report.yml", "training-comment.yml", "promote.yml",
    "environments.yml", "retrain.yml", "rendered-diff.yml",
}  # fmt: skip


def tool(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=tool_env(), capture_output=True, text=True)


def load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    return document


def pin_problems(text: str) -> list[str]:
    """Every `uses:` line that is not `owner/repo@<40 hex>  # vX.Y.Z`."""
    problems = []
    for number, line in enumerate(text.splitlines(), 1):
        match = USES.match(line)
        if match and not (
            PINNED.fullmatch(match["ref"]) and VERSION_COMMENT.fullmatch(match["rest"])
        ):
            problems.append(f"line {number}: {line.strip()}")
    return problems


def test_the_eight_workflows_are_there() -> None:
    assert {path.name for path in workflow_files()} == EXPECTED


def test_every_workflow_matches_the_github_workflow_schema() -> None:
    files = [str(path) for path in workflow_files()]
    result = tool("check-jsonschema", "--builtin-schema", "vendor.github-workflows", *files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dependabot_config_matches_its_schema() -> None:
    result = tool(
        "check-jsonschema", "--builtin-schema", "vendor.dependabot", ".github/dependabot.yml"
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_zizmor_finds_nothing() -> None:
    result = tool("zizmor", "--offline", "--no-progress", ".github")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings" in result.stdout + result.stderr


def test_zizmor_would_catch_an_unpinned_action(tmp_path: Path) -> None:
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text(
        "on: push\npermissions: {}\njobs:\n  a:\n    runs-on: ubuntu-24.04\n"
        "    steps:\n      - uses: actions/checkout@v4\n"
    )
    result = tool("zizmor", "--offline", "--no-progress", str(tmp_path / ".github"))
    assert result.returncode != 0
    assert "unpinned-uses" in result.stdout


def actionlint(root: Path) -> subprocess.CompletedProcess[str]:
    """actionlint over ROOT's .github/workflows, with the shellcheck `make lint` installs on
    the run: blocks, as `make lint` runs it."""
    return tool("actionlint", "-shellcheck", "shellcheck", "-no-color", cwd=root)


def test_actionlint_finds_nothing_in_the_workflows() -> None:
    result = actionlint(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_actionlint_would_catch_an_unquoted_variable_and_an_unknown_step_output(
    tmp_path: Path,
) -> None:
    """A copy of ci.yml with a run: line shellcheck flags (SC2086) and an expression naming a
    step that does not exist: the two kinds of finding zizmor does not make."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    copy = tmp_path / ".github" / "workflows" / "ci.yml"
    copy.parent.mkdir(parents=True)
    text = (WORKFLOWS / "ci.yml").read_text()
    step = "      - name: make lint test-unit\n"
    assert step in text
    copy.write_text(
        text.replace(
            step,
            "      - name: a new step\n"
            "        run: rm -rf $RUNNER_TEMP/x ${{ steps.nope.outputs.x }}\n" + step,
        )
    )
    result = actionlint(tmp_path)
    assert result.returncode == 1
    assert "SC2086" in result.stdout
    assert 'property "nope" is not defined' in result.stdout


def test_yamllint_is_clean_with_the_repository_config() -> None:
    result = tool(
        "yamllint", "--strict", "-c", ".yamllint.yaml",
        ".github", ".pre-commit-config.yaml", ".yamllint.yaml",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("path", workflow_files(), ids=lambda path: path.name)
def test_every_action_is_pinned_to_a_commit_sha_with_its_version(path: Path) -> None:
    assert pin_problems(path.read_text()) == []


def test_the_pin_check_rejects_tags_short_shas_and_missing_versions() -> None:
    text = "\n".join(
        [
            "      - uses: actions/checkout@v4",
            "      - uses: actions/checkout@08eba0b  # v4.3.0",
            "      - uses: actions/checkout@08eba0b27e820071cde6df949e0beb9ba4906955",
            "      - uses: actions/checkout@08eba0b27e820071cde6df949e0beb9ba4906955  # v4",
            "      - uses: actions/checkout@08eba0b27e820071cde6df949e0beb9ba4906955  # v4.3.0",
        ]
    )
    assert [problem.split(":")[0] for problem in pin_problems(text)] == [
        "line 1",
        "line 2",
        "line 3",
        "line 4",
    ]


def test_one_action_has_one_pin_and_one_version_everywhere() -> None:
    pins: dict[str, set[str]] = {}
    for path in workflow_files():
        for line in path.read_text().splitlines():
            match = USES.match(line)
            if match:
                action = match["ref"].split("@")[0]
                pins.setdefault(action, set()).add(match["ref"] + match["rest"].strip())
    assert pins
    assert {action: refs for action, refs in pins.items() if len(refs) > 1} == {}


@pytest.mark.parametrize("path", workflow_files(), ids=lambda path: path.name)
def test_every_workflow_grants_nothing_by_default_and_each_job_only_what_it_needs(
    path: Path,
) -> None:
    workflow = load(path)
    assert workflow["permissions"] == {}
    for name, job in workflow["jobs"].items():
        granted = job.get("permissions")
        assert isinstance(granted, dict), f"job {name} must declare its permissions"
        assert "write-all" not in str(granted)
        # the jobs that post a commit status read nothing: with the workflow token (STATUS_ONLY)
        # or as the evidence App (nothing of the workflow token; guard_problems); nor does the
        # one that comments a report (comment_job_problems)
        reads = granted.get("contents") in {"read", "write"}
        assert granted in (STATUS_ONLY, COMMENT_ONLY, {}) or reads
        assert granted != {} or holds_app_key(job)


def shell_problems(name: str, document: dict[str, Any]) -> list[str]:
    """A workflow whose run steps are not all `shell: bash` (GitHub's ``bash -eo pipefail``):
    left unset, GitHub runs ``bash -e``, and a step ``command | tee`` passes when command fails."""
    problems = []
    if (document.get("defaults") or {}).get("run", {}).get("shell") != "bash":
        problems.append(f"{name}: defaults.run.shell must be bash (bash -eo pipefail)")
    for job_id, job in document.get("jobs", {}).items():
        shells = [(job.get("defaults") or {}).get("run", {}).get("shell", "bash")]
        shells += [step.get("shell", "bash") for step in job.get("steps", [])]
        problems += [f"{name}: job {job_id} runs a step in {s}" for s in shells if s != "bash"]
    return problems


def test_every_run_step_fails_on_a_failure_anywhere_in_a_pipe() -> None:
    problems = [p for path in workflow_files() for p in shell_problems(path.name, load(path))]
    assert problems == []


def test_the_shell_check_catches_an_unset_default_and_a_step_in_sh(tmp_path: Path) -> None:
    """The defect it guards: promote.yml's register step pipes into tee; with GitHub's default
    `bash -e` a failing register passes, with `shell: bash` (pipefail) it fails the job."""
    document = load(WORKFLOWS / "promote.yml")
    unset = {key: value for key, value in document.items() if key != "defaults"}
    unset["jobs"]["promote"]["steps"][0]["shell"] = "sh"
    assert shell_problems("promote.yml", unset) == [
        "promote.yml: defaults.run.shell must be bash (bash -eo pipefail)",
        "promote.yml: job promote runs a step in sh",
    ]
    script = step_script("promote.yml", "GTO register (if the model changed); push the tag")
    assert "| tee" in script
    stubs = tmp_path / "bin"
    stubs.mkdir()
    (stubs / "python").write_text("#!/bin/sh\necho 'error: cannot push the tag' >&2\nexit 1\n")
    (stubs / "python").chmod(0o755)
    env = tool_env(GITHUB_OUTPUT=str(tmp_path / "out"))
    env["PATH"] = f"{stubs}:{env['PATH']}"
    for shell, status in ((["bash", "-e", "-c"], 0), (GITHUB_BASH, 1)):
        done = subprocess.run([*shell, script], env=env, capture_output=True, text=True)
        assert done.returncode == status, (shell, done.stderr)


def test_only_the_build_the_proposals_the_stage_and_the_retrain_jobs_may_write_contents() -> None:
    writers = {
        (path.name, name)
        for path in workflow_files()
        for name, job in load(path)["jobs"].items()
        if job["permissions"].get("contents") == "write"
    }
    assert writers == {
        ("promote.yml", "promote"),
        ("environments.yml", "propose"),
        ("environments.yml", "stage"),
        ("retrain.yml", "retrain"),
    }


def test_promote_builds_only_on_the_first_environment_branch() -> None:
    (branch,) = load(WORKFLOWS / "promote.yml")[True]["push"]["branches"]
    first = environments.load()[0]
    assert branch == first.branch
    assert run_tool("stage_for_branch", branch).stdout.strip() == first.stage


def test_the_environments_workflow_follows_every_environment_branch() -> None:
    on = load(WORKFLOWS / "environments.yml")[True]
    order = environments.load()
    assert on["push"]["branches"] == [env.branch for env in order]
    assert on["pull_request_target"]["branches"] == [env.branch for env in order[1:]]
    assert on["workflow_dispatch"]["inputs"]["environment"]["options"] == [
        env.name for env in order[1:]
    ]
    names = [
        run_tool("stage_for_branch", "--environment", env.branch).stdout.strip() for env in order
    ]
    assert names == [env.name for env in order]


# --- no pull request loosens the check it is under, and none of its code runs with a write token -
# For pull_request GitHub runs the workflow file of the pull request's merge commit (so a pull
# request can edit its own checks) with a read-only token for forks; for pull_request_target and
# workflow_run it runs the base branch's file with the repository's token and secrets, which must
# then run nothing of the pull request.

#: The events whose runs have the base branch's workflow file and a token that may write.
PRIVILEGED_EVENTS = {"pull_request_target", "workflow_run"}
#: The only ref a privileged run checks out: the base's commit (the default would be its tip).
BASE_SHA = "${{ github.event.pull_request.base.sha }}"
#: The GitHub environment whose secret is the evidence App's key: a job in it holds a token that
#: may write (the App's), so on a privileged event it runs that App's token action and nothing of
#: the repository or the pull request (GitHub attaches a pull_request_target run's own check to
#: the base branch's commit: the guards' results are posted as commit statuses by the App).
EVIDENCE = doctor.EVIDENCE_ENVIRONMENT
#: What a job that posts an informational status (rendered-diff.yml's, no required check) may
#: do with the workflow token: the commit status on the pull request's head, in a job that runs
#: no action and no checkout.
STATUS_ONLY = {"statuses": "write"}
APP_TOKEN = "actions/create-github-app-token@"  # noqa: S105 - an action, not a token
#: git commands that put a commit's files in the workspace (a fetch only adds objects).
TREE_COMMANDS = re.compile(
    r"\bgit\s+(checkout|switch|worktree|reset|restore|merge|rebase|cherry-pick|pull|stash|"
    r"read-tree|checkout-index|clone|apply|am)\b"
)
#: The guards whose file and code must be the base branch's: they decide what a pull request may
#: carry, so one that edits them could switch them off. The other guards are the test tiers of
#: ci.yml, which test the pull request's code and so run it, on pull_request.
BASE_GUARDS = {("pr-guard.yml", "order"), ("environments.yml", "verify")}
#: What a job that comments a pull request's report may do: read the other run's artifact, and
#: comment. It may run no action but the artifact's download, into the runner's temporary folder,
#: and no code of the repository (REPOSITORY_CODE).
COMMENT_ONLY = {"actions": "read", "pull-requests": "write"}
DOWNLOAD = "actions/download-artifact@"
CHECKOUT_PIN = "actions/checkout@08eba0b27e820071cde6df949e0beb9ba4906955"
#: A run: line that runs code of the repository's tree (a make target, a script, its venv).
REPOSITORY_CODE = re.compile(r"(?:^|[\s;&|(])(?:make|python3?|bash|sh|\.venv/|\./|scripts/)\S*")


def triggers(document: dict[str, Any]) -> set[str]:
    on = document[True]  # `on:` loads as True
    return {on} if isinstance(on, str) else set(on)


#: An if: that names the events it runs on: ``github.event_name == 'X'``, or a parenthesised
#: disjunction of such, first, then nothing or a conjunction (``&& ...``) without another ``||``.
EVENT_TEST = r"github\.event_name == '(\w+)'"
EVENTS_FIRST = re.compile(
    rf"^(?:{EVENT_TEST}|\(\s*{EVENT_TEST}(?:\s*\|\|\s*{EVENT_TEST})*\s*\))(?P<rest>(?:\s*&&.*)?)$",
    re.S,
)


def job_events(document: dict[str, Any], job: dict[str, Any]) -> set[str]:
    """The events of the workflow that can run JOB: all its triggers, unless its if: is a
    conjunction naming one (``github.event_name == 'X'``), or starts with the events it runs on
    (EVENTS_FIRST) and the rest only narrows them."""
    condition = str(job.get("if", "")).strip()
    named = set(re.findall(EVENT_TEST, condition))
    if "||" not in condition and len(named) == 1:
        return triggers(document) & named
    match = EVENTS_FIRST.match(condition)
    if match is None or "||" in match["rest"]:
        return triggers(document)
    head = condition[: len(condition) - len(match["rest"])]
    return triggers(document) & set(re.findall(EVENT_TEST, head))


def writes(job: dict[str, Any]) -> list[str]:
    return sorted(scope for scope, level in job["permissions"].items() if level == "write")


def checkouts(job: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/checkout@")]


def scripts(job: dict[str, Any]) -> str:
    return "\n".join(str(step.get("run", "")) for step in job["steps"])


def holds_app_key(job: dict[str, Any]) -> bool:
    """Whether JOB runs in the GitHub environment of the evidence App's key."""
    environment = job.get("environment")
    return (environment.get("name") if isinstance(environment, dict) else environment) == EVIDENCE


def privileged_run_problems(name: str, document: dict[str, Any]) -> list[str]:
    """Each job of workflow NAME a privileged event runs: no write permission; a job holding the
    evidence App's key runs no action but the App's token action, no checkout; a checkout of the
    base's commit only (no ref of the pull request, no other repository); no git command that
    puts a tree in the workspace; fetches of the pull request's head only (git objects, read by
    the base's tools)."""
    problems = []
    for job_id, job in document["jobs"].items():
        events = job_events(document, job) & PRIVILEGED_EVENTS
        if not events:
            continue
        where = f"{name} job {job_id} ({', '.join(sorted(events))})"
        if job["permissions"] == COMMENT_ONLY:
            problems += comment_job_problems(where, job)
        elif job["permissions"] != STATUS_ONLY and writes(job):
            problems.append(f"{where}: may write {', '.join(writes(job))}")
        if job["permissions"] == STATUS_ONLY and any("uses" in s for s in job["steps"]):
            problems.append(f"{where}: runs an action or a checkout with its write token")
        if holds_app_key(job) and any(
            not str(s.get("uses", APP_TOKEN)).startswith(APP_TOKEN) for s in job["steps"]
        ):
            problems.append(f"{where}: runs an action or a checkout with the evidence App's key")
        for step in checkouts(job):
            given = step.get("with") or {}
            if given.get("ref") != BASE_SHA or "repository" in given:
                problems.append(f"{where}: checks out {given.get('ref')}, not {BASE_SHA}")
        for command in TREE_COMMANDS.findall(scripts(job)):
            problems.append(f"{where}: runs git {command}, which puts a tree in the workspace")
        for line in re.findall(r"\bgit\s+fetch\b.*", scripts(job)):
            if not line.rstrip().endswith('origin "refs/pull/$PR_NUMBER/head"'):
                problems.append(f"{where}: fetches more than the pull request's head: {line}")
    return problems


def comment_job_problems(where: str, job: dict[str, Any]) -> list[str]:
    """A privileged job with COMMENT_ONLY: no action but DOWNLOAD, into ``runner.temp`` (outside
    the workspace), and no run: line that runs the repository's code."""
    problems = []
    for step in job["steps"]:
        uses = str(step.get("uses", ""))
        if uses and not uses.startswith(DOWNLOAD):
            problems.append(f"{where}: runs {uses} with its comment token")
        path = str((step.get("with") or {}).get("path", ""))
        if uses.startswith(DOWNLOAD) and not path.startswith("${{ runner.temp }}/"):
            problems.append(f"{where}: downloads into {path or 'the workspace'}, not runner.temp")
    for line in scripts(job).splitlines():
        if REPOSITORY_CODE.search(line.split("#", 1)[0]):
            problems.append(f"{where}: runs the repository's code: {line.strip()}")
    return problems


def pull_request_code_problems(name: str, document: dict[str, Any]) -> list[str]:
    """Each job of workflow NAME that runs on pull_request and checks out the pull request's
    code (any checkout but the base's commit) may only read."""
    return [
        f"{name} job {job_id}: checks out the pull request's code and may write "
        + ", ".join(writes(job))
        for job_id, job in document["jobs"].items()
        if "pull_request" in job_events(document, job)
        and any((s.get("with") or {}).get("ref") != BASE_SHA for s in checkouts(job))
        and writes(job)
    ]


def app_key_problems(name: str, document: dict[str, Any]) -> list[str]:
    """The evidence App's key (the secret EVIDENCE_APP_KEY) is read only by jobs of the
    environment ``evidence``, and none of them runs on pull_request (GitHub refuses such a run
    the environment, whose branches are the environment branches: the walks cannot show that)."""
    problems = []
    for job_id, job in document["jobs"].items():
        where = f"{name} job {job_id}"
        if "secrets.EVIDENCE_APP_KEY" in str(job) and not holds_app_key(job):
            problems.append(f"{where}: reads EVIDENCE_APP_KEY outside the environment {EVIDENCE}")
        if holds_app_key(job) and "pull_request" in job_events(document, job):
            problems.append(f"{where}: holds the evidence App's key on pull_request")
    return problems


def guard_problems(name: str, document: dict[str, Any], job_id: str) -> list[str]:
    """The guard JOB_ID of workflow NAME runs on pull_request_target only (never the pull
    request's own copy of the file), and a job that needs it, holds the evidence App's key and no
    permission of the workflow token, posts its result with a token of that App (its id the
    guard's output, from evidence.toml as the base has it) as the commit status named as
    gitops.doctor names the required check (the job's name)."""
    job = document["jobs"][job_id]
    where = f"{name} job {job_id}"
    problems = []
    events = job_events(document, job)
    if "pull_request" in events:
        problems.append(f"{where}: runs on pull_request, where the pull request's file runs")
    if "pull_request_target" not in events:
        problems.append(f"{where}: does not run on pull_request_target")
    context = doctor.Guard(name, job_id, first=True).context()
    posters = [
        other_id
        for other_id, other in document["jobs"].items()
        if job_id in ([needs] if isinstance(needs := other.get("needs"), str) else needs or [])
        and other["permissions"] == {}
        and holds_app_key(other)
        and str(other.get("if", "")).startswith("always()")
        and f"-f context={context} " in scripts(other).replace("\\\n", " ")
        and "${{ needs." + job_id + ".result }}" in str(other["steps"])
        and "${{ github.event.pull_request.head.sha }}" in str(other["steps"])
        and app_token_step(other, job_id)
        and "github.token" not in str(other["steps"])
    ]
    if not posters:
        problems.append(
            f"{where}: no job posts its result as the commit status {context} as the evidence App"
        )
    return problems


def app_token_step(job: dict[str, Any], guard: str) -> bool:
    """Whether JOB mints the evidence App's token (with the id GUARD read from evidence.toml and
    the key of the environment), and its posting step uses that token."""
    minting = [s for s in job["steps"] if str(s.get("uses", "")).startswith(APP_TOKEN)]
    return len(minting) == 1 and (
        minting[0]["with"].get("app-id") == "${{ needs." + guard + ".outputs.app_id }}"
        and minting[0]["with"].get("private-key") == "${{ secrets.EVIDENCE_APP_KEY }}"
        and job["steps"][-1]["env"]["GH_TOKEN"]
        == "${{ steps." + minting[0]["id"] + ".outputs.token }}"
    )


def test_no_privileged_run_writes_more_than_a_status_or_touches_the_pull_requests_tree() -> None:
    problems = [
        p for path in workflow_files() for p in privileged_run_problems(path.name, load(path))
    ]
    assert problems == []


def test_the_privileged_run_check_catches_a_head_checkout_a_write_token_and_a_tree_command() -> (
    None
):
    guard, verify = load(WORKFLOWS / "pr-guard.yml"), load(WORKFLOWS / "environments.yml")
    variants = {name: copy.deepcopy(guard if name < "d" else verify) for name in "abcde"}
    head_sha = "${{ github.event.pull_request.head.sha }}"
    variants["a"]["jobs"]["order"]["steps"][0]["with"]["ref"] = head_sha
    variants["b"]["jobs"]["order"]["permissions"]["contents"] = "write"
    variants["c"]["jobs"]["status"]["steps"].insert(1, guard["jobs"]["order"]["steps"][0])
    variants["d"]["jobs"]["verify"]["steps"][-1]["run"] += "git checkout FETCH_HEAD\nmake test\n"
    fetch = 'git fetch origin "refs/pull/$PR_NUMBER/merge"'
    variants["e"]["jobs"]["verify"]["steps"][-1]["run"] += fetch + "\n"
    found = {name: privileged_run_problems(name, v) for name, v in variants.items()}
    run = "(pull_request_target)"
    assert found == {
        "a": [f"a job order {run}: checks out {head_sha}, not {BASE_SHA}"],
        "b": [f"b job order {run}: may write contents"],
        "c": [f"c job status {run}: runs an action or a checkout with the evidence App's key"],
        "d": [f"d job verify {run}: runs git checkout, which puts a tree in the workspace"],
        "e": [f"e job verify {run}: fetches more than the pull request's head: {fetch}"],
    }


def test_the_privileged_run_check_catches_a_comment_job_that_checks_out_or_runs_code() -> None:
    """training-comment.yml's job with the pull request's head checked out, a `make report`, and
    its download into the workspace: each is refused."""
    comment = load(WORKFLOWS / "training-comment.yml")
    variants = {name: copy.deepcopy(comment) for name in "abc"}
    head = "${{ github.event.workflow_run.head_sha }}"
    checkout = {"uses": CHECKOUT_PIN, "with": {"ref": head}}
    variants["a"]["jobs"]["comment"]["steps"].insert(0, checkout)
    variants["b"]["jobs"]["comment"]["steps"][-1]["run"] = "make report\n" + str(
        comment["jobs"]["comment"]["steps"][-1]["run"]
    )
    variants["c"]["jobs"]["comment"]["steps"][0]["with"]["path"] = "report"
    found = {name: privileged_run_problems(name, v) for name, v in variants.items()}
    run = "(workflow_run)"
    assert found == {
        "a": [
            f"a job comment {run}: runs {CHECKOUT_PIN} with its comment token",
            f"a job comment {run}: checks out {head}, not {BASE_SHA}",
        ],
        "b": [f"b job comment {run}: runs the repository's code: make report"],
        "c": [f"c job comment {run}: downloads into report, not runner.temp"],
    }


def test_the_evidence_apps_key_is_read_only_in_its_environment_never_on_pull_request() -> None:
    problems = [p for path in workflow_files() for p in app_key_problems(path.name, load(path))]
    assert problems == []
    held = sorted(
        (path.name, job_id)
        for path in workflow_files()
        for job_id, job in load(path)["jobs"].items()
        if holds_app_key(job)
    )
    assert held == [
        ("environments.yml", "smoke"),
        ("environments.yml", "verify-status"),
        ("pr-guard.yml", "status"),
    ]


def test_the_app_key_check_catches_a_key_outside_its_environment_and_on_pull_request() -> None:
    """pr-guard.yml on pull_request (the old trigger), and its status job with the key as a
    plain secret, outside the environment."""
    old = load(WORKFLOWS / "pr-guard.yml")
    old[True] = {"pull_request": old[True].pop("pull_request_target")}
    loose = load(WORKFLOWS / "pr-guard.yml")
    del loose["jobs"]["status"]["environment"]
    assert app_key_problems("old", old) == [
        "old job status: holds the evidence App's key on pull_request"
    ]
    assert app_key_problems("loose", loose) == [
        "loose job status: reads EVIDENCE_APP_KEY outside the environment evidence"
    ]


# --- a repository dispatch's payload picks an environment, nothing else ------------------------
# GitHub runs a repository_dispatch with the default branch's workflow file and the repository's
# secrets, but anyone whose token may push can send one, with any client_payload.
PAYLOAD = "github.event.client_payload"
#: The one use of a payload value: the name checked against environments.toml.
CHECKED = "python3 -m gitops.stage_for_branch --branch-of"


def dispatch_payload_problems(name: str, document: dict[str, Any]) -> list[str]:
    """Each job of workflow NAME reads the dispatch payload only into a step's env:, never in a
    job holding the evidence App's key, and a step uses such a variable only as the name
    ``gitops.stage_for_branch --branch-of`` checks (an unknown one fails the step in one line)."""
    problems = []
    for job_id, job in document["jobs"].items():
        where = f"{name} job {job_id}"
        if PAYLOAD in str({k: v for k, v in job.items() if k != "steps"}):
            problems.append(f"{where}: reads {PAYLOAD} outside a step's env")
        if holds_app_key(job) and PAYLOAD in str(job):
            problems.append(f"{where}: reads {PAYLOAD} with the evidence App's key")
        for step in job.get("steps", []):
            if PAYLOAD in str({k: v for k, v in step.items() if k != "env"}):
                problems.append(f"{where} step {step.get('name', step.get('uses'))}: reads "
                                f"{PAYLOAD} outside its env")  # fmt: skip
            for variable, value in (step.get("env") or {}).items():
                if PAYLOAD not in str(value):
                    continue
                uses = re.findall(rf"[^\n]*\$\{{?{variable}\b[^\n]*", str(step.get("run", "")))
                if not uses or any(f'{CHECKED} "${variable}"' not in use for use in uses):
                    problems.append(f"{where}: uses {variable} ({value}) unchecked")
    return problems


def test_a_dispatch_payload_only_names_an_environment_that_is_checked() -> None:
    problems = [
        p for path in workflow_files() for p in dispatch_payload_problems(path.name, load(path))
    ]
    assert problems == []
    environments_yml = load(WORKFLOWS / "environments.yml")
    assert "repository_dispatch" in job_events(environments_yml, environments_yml["jobs"]["smoke"])


def test_the_dispatch_check_catches_the_payloads_revision_checked_out_and_its_name_unchecked() -> (
    None
):
    """environments.yml's smoke job checking out the payload's revision; smoke-target passing
    the payload's name on unchecked, or interpolating it into its script."""
    variants = {name: load(WORKFLOWS / "environments.yml") for name in "abc"}
    revision = "${{ github.event.client_payload.revision }}"
    variants["a"]["jobs"]["smoke"]["steps"][0]["with"]["ref"] = revision
    target = variants["b"]["jobs"]["smoke-target"]["steps"][-1]
    target["run"] = target["run"].replace(f'{CHECKED} "$SYNCED"', 'echo "$SYNCED"')
    target = variants["c"]["jobs"]["smoke-target"]["steps"][-1]
    target["run"] = target["run"].replace('"$SYNCED"', '"${{ github.event.client_payload.x }}"')
    found = {name: dispatch_payload_problems(name, v) for name, v in variants.items()}
    synced = "SYNCED (${{ github.event.client_payload.environment }})"
    assert found == {
        "a": [
            f"a job smoke: reads {PAYLOAD} with the evidence App's key",
            f"a job smoke step {CHECKOUT_PIN}: reads {PAYLOAD} outside its env",
        ],
        "b": [f"b job smoke-target: uses {synced} unchecked"],
        "c": [
            f"c job smoke-target step The environment to smoke-test and its commit: reads {PAYLOAD}"
            " outside its env",
            f"c job smoke-target: uses {synced} unchecked",
        ],
    }


def test_the_events_of_a_job_are_read_from_a_disjunction_only_when_it_comes_first() -> None:
    """smoke on (push || repository_dispatch): those two; one that names pull_request_target in
    its disjunction is a privileged job (and holds the App's key: refused); a disjunction after
    another || could be anything: every trigger."""
    document = load(WORKFLOWS / "environments.yml")
    smoke = document["jobs"]["smoke"]
    assert job_events(document, smoke) == {"push", "repository_dispatch"}
    smoke["if"] = smoke["if"].replace("'repository_dispatch'", "'pull_request_target'")
    assert job_events(document, smoke) == {"push", "pull_request_target"}
    assert privileged_run_problems("x", document) == [
        "x job smoke (pull_request_target): runs an action or a checkout with the evidence App's"
        " key",
        "x job smoke (pull_request_target): checks out ${{ needs.smoke-target.outputs.ref }}, not "
        + BASE_SHA,
    ]
    smoke["if"] = "github.event_name == 'push' || github.event_name == 'repository_dispatch'"
    assert job_events(document, smoke) == triggers(document)


def test_no_pull_request_job_runs_the_pull_requests_code_with_a_write_token() -> None:
    problems = [
        p for path in workflow_files() for p in pull_request_code_problems(path.name, load(path))
    ]
    assert problems == []


def test_the_pull_request_code_check_catches_a_test_job_that_may_write() -> None:
    ci = load(WORKFLOWS / "ci.yml")
    ci["jobs"]["unit"]["permissions"]["contents"] = "write"
    assert pull_request_code_problems("ci.yml", ci) == [
        "ci.yml job unit: checks out the pull request's code and may write contents"
    ]


def test_the_order_and_verify_guards_run_the_base_branchs_file_and_post_their_status() -> None:
    assert {(g.workflow, g.job) for g in doctor.GUARDS} - BASE_GUARDS == {
        ("ci.yml", job) for job in ("unit", "integration", "e2e")
    }
    problems = [p for name, job in sorted(BASE_GUARDS)
                for p in guard_problems(name, load(WORKFLOWS / name), job)]  # fmt: skip
    assert problems == []


def test_the_guard_check_catches_the_old_pull_request_trigger_and_a_missing_status() -> None:
    """pr-guard.yml as it was (on pull_request: the pull request's own copy runs), and without
    the job that posts the status."""
    old = load(WORKFLOWS / "pr-guard.yml")
    old[True] = {"pull_request": old[True].pop("pull_request_target")}
    silent = load(WORKFLOWS / "pr-guard.yml")
    del silent["jobs"]["status"]
    assert guard_problems("pr-guard.yml", old, "order") == [
        "pr-guard.yml job order: runs on pull_request, where the pull request's file runs",
        "pr-guard.yml job order: does not run on pull_request_target",
    ]
    missing = ["pr-guard.yml job order: no job posts its result as the commit status order as the "
               "evidence App"]  # fmt: skip
    assert guard_problems("pr-guard.yml", silent, "order") == missing
    # The status posted with the workflow token, as before: a pull request's own workflow on
    # pull_request posts as the same identity, so the status is not the App's.
    actions = load(WORKFLOWS / "pr-guard.yml")
    status = actions["jobs"]["status"]
    status["steps"] = status["steps"][1:]
    status["steps"][0]["env"]["GH_TOKEN"] = "${{ github.token }}"  # noqa: S105 - an expression
    assert guard_problems("pr-guard.yml", actions, "order") == missing
    status["permissions"] = {"statuses": "write"}
    assert guard_problems("pr-guard.yml", actions, "order") == missing


def test_promote_ignores_the_merge_of_its_own_deploy_pull_request() -> None:
    push = load(WORKFLOWS / "promote.yml")[True]["push"]
    assert push["paths-ignore"] == ["kustomize/overlays/dev/**", "rendered/**"]


def run_lines(path: Path) -> list[str]:
    """Every command line of the workflow's `run:` scripts, a backslash-continued line joined."""
    return [
        line
        for job in load(path)["jobs"].values()
        for step in job["steps"]
        for line in str(step.get("run", "")).replace("\\\n", " ").splitlines()
    ]


@pytest.mark.parametrize("path", workflow_files(), ids=lambda path: path.name)
def test_every_script_a_workflow_runs_exists_and_is_executable(path: Path) -> None:
    scripts = {
        word
        for line in run_lines(path)
        for word in re.findall(r"(?:scripts|images)/[\w.-]+|\.ci/run", line)
    }
    missing = {s for s in scripts if not ((REPO / s).is_file() and (REPO / s).stat().st_mode & 1)}
    assert missing == set()


@pytest.mark.parametrize("path", workflow_files(), ids=lambda path: path.name)
def test_every_make_target_a_workflow_runs_exists(path: Path) -> None:
    makefiles = [REPO / "Makefile", *sorted((REPO / "mk").glob("*.mk"))]
    defined = {
        match
        for makefile in makefiles
        for match in re.findall(r"^([a-z][\w-]*):", makefile.read_text(), re.MULTILINE)
    }
    used = {
        target
        for line in run_lines(path)
        for command in re.findall(r"\bmake ([^;&|]+)", line)
        for target in command.split()
        if "=" not in target
    }
    assert used - defined == set()


def modules_run(path: Path) -> set[str]:
    """The commands a workflow runs with ``python -m gitops.<module>`` or
    ``python -m retraining.<module>``, as ``package.module``."""
    pattern = r"python3? -m ((?:gitops|retraining)\.\w+)"
    return {m for line in run_lines(path) for m in re.findall(pattern, line)}


@pytest.mark.parametrize("path", workflow_files(), ids=lambda path: path.name)
def test_every_command_a_workflow_runs_exists_with_a_main(path: Path) -> None:
    for module in modules_run(path):
        source = REPO / f"{module.replace('.', '/')}.py"
        assert source.is_file(), f"{path.name} runs {module}, which does not exist"
        assert 'if __name__ == "__main__":' in source.read_text(), module


def test_the_workflows_run_the_delivery_and_retraining_commands() -> None:
    used = set().union(*(modules_run(path) for path in workflow_files()))
    assert {
        f"gitops.{name}" for name in (
            "check_pr_order", "stage_for_branch", "register", "deploy", "rendered", "promote",
            "rollback", "assign_stage",
        )
    } | {"retraining.retrain"} <= used  # fmt: skip


def test_pre_commit_pins_the_versions_the_venv_has() -> None:
    config = load(REPO / ".pre-commit-config.yaml")
    revs = {repo["repo"].rsplit("/", 1)[1]: repo["rev"] for repo in config["repos"]}
    pinned = versions("dev")
    assert revs == {
        "ruff-pre-commit": f"v{pinned['ruff']}",
        "check-jsonschema": pinned["check-jsonschema"],
        "yamllint": f"v{pinned['yamllint']}",
    }


CONFIG_STEP = "Stage of this branch, and the configuration"


def run_config_step(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], str]:
    output = tmp_path / "github-output"
    output.write_text("")
    result = run_step("promote.yml", CONFIG_STEP, REPO, tool_env(GITHUB_OUTPUT=str(output), **env))
    return result, output.read_text()


def test_promote_starts_by_naming_the_stage_and_the_registry_host(tmp_path: Path) -> None:
    result, output = run_config_step(
        tmp_path, BRANCH="staging", IMAGE_REGISTRY="ghcr.io/acme", HAS_DVC_CONFIG="true"
    )
    assert result.returncode == 0, result.stderr
    assert output.splitlines() == ["stage=staging", "registry_host=ghcr.io"]


@pytest.mark.parametrize(
    ("branch", "registry", "has_dvc_config"),
    [
        ("main", "", "true"),
        ("main", "ghcr.io/acme", "false"),
        ("experiment/x", "ghcr.io/a", "true"),
    ],
)
def test_promote_stops_before_tagging_without_its_configuration(
    tmp_path: Path, branch: str, registry: str, has_dvc_config: str
) -> None:
    result, output = run_config_step(
        tmp_path, BRANCH=branch, IMAGE_REGISTRY=registry, HAS_DVC_CONFIG=has_dvc_config
    )
    assert result.returncode != 0
    assert "stage=" not in output


def test_ci_runs_the_quick_tier_first_and_each_heavy_tier_in_its_own_job() -> None:
    jobs = load(WORKFLOWS / "ci.yml")["jobs"]
    assert list(jobs) == ["unit", "integration", "e2e"]
    runs = {
        name: "\n".join(str(step.get("run", "")) for step in job["steps"])
        for name, job in jobs.items()
    }
    assert "make lint test-unit" in runs["unit"] and "sudo" not in runs["unit"]
    assert "scripts/ci_tiers.py" in runs["unit"]
    for tier in ("integration", "e2e"):
        assert jobs[tier]["needs"] == "unit"
        assert jobs[tier]["if"] == f"needs.unit.outputs.{tier} == 'true'"
        assert f"make test-{tier}" in runs[tier]
        assert jobs["unit"]["outputs"][tier] == f"${{{{ steps.tiers.outputs.{tier} }}}}"


# --- no telemetry, no upload to a third party ---------------------------------------------------

#: What turns off the usage telemetry of DVC, GTO and CML (CML reads ITERATIVE_DO_NOT_TRACK).
TELEMETRY_OFF = {"DVC_NO_ANALYTICS": "1", "GTO_NO_ANALYTICS": "1", "ITERATIVE_DO_NOT_TRACK": "1"}
#: A command line that runs DVC, GTO or CML, or make (whose targets and tests run DVC and GTO).
RUNS_ITERATIVE_TOOLS = re.compile(r"(?:^|[\s;&|(])(?:dvc|gto|cml|make)\s")


def runs_iterative_tools(path: Path) -> bool:
    return any(RUNS_ITERATIVE_TOOLS.search(line) for line in run_lines(path))


def test_the_check_knows_which_workflows_run_dvc_gto_or_cml() -> None:
    runners = {path.name for path in workflow_files() if runs_iterative_tools(path)}
    assert runners == {
        "ci.yml", "promote.yml", "training-report.yml", "training-comment.yml", "environments.yml",
        "retrain.yml", "rendered-diff.yml", "pr-guard.yml",
    }  # fmt: skip


def test_every_workflow_that_runs_dvc_gto_or_cml_turns_their_telemetry_off_at_its_top() -> None:
    wrong = {}
    for path in filter(runs_iterative_tools, workflow_files()):
        top = {name: str(value) for name, value in load(path).get("env", {}).items()}
        if {name: top.get(name) for name in TELEMETRY_OFF} != TELEMETRY_OFF:
            wrong[path.name] = {name: top.get(name) for name in TELEMETRY_OFF}
    assert wrong == {}


def test_make_gives_every_recipe_the_telemetry_switches() -> None:
    env = {k: v for k, v in tool_env().items() if k not in TELEMETRY_OFF}
    recipe = "printenv " + " ".join(TELEMETRY_OFF)
    result = subprocess.run(
        ["make", "-s", "--eval", f"telemetry-probe: ; @{recipe}", "telemetry-probe"],
        cwd=REPO, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == list(TELEMETRY_OFF.values())


def cml_commands(path: Path) -> list[str]:
    return [line.strip() for line in run_lines(path) if re.search(r"(?:^|\s)cml\s", line)]


def test_the_comment_workflow_comments_the_reports_pull_request_with_cml_publishing_nothing() -> (
    None
):
    assert cml_commands(WORKFLOWS / "training-report.yml") == []
    [command] = cml_commands(WORKFLOWS / "training-comment.yml")
    assert command.startswith("cml comment create ")
    assert {"--publish=false", '--target="pr/$PR_NUMBER"', "report.md"} <= set(command.split())
    [step] = [s for s in load(WORKFLOWS / "training-comment.yml")["jobs"]["comment"]["steps"]
              if "cml comment" in str(s.get("run"))]  # fmt: skip
    assert step["env"]["PR_NUMBER"] == "${{ github.event.workflow_run.pull_requests[0].number }}"


def test_the_comment_workflow_fetches_the_artifact_the_report_run_kept() -> None:
    report = load(WORKFLOWS / "training-report.yml")
    comment = load(WORKFLOWS / "training-comment.yml")
    assert comment[True] == {
        "workflow_run": {"workflows": [report["name"]], "types": ["completed"]}
    }
    assert comment["env"]["REPORT_ARTIFACT"] == report["env"]["REPORT_ARTIFACT"]
    [download] = [s for s in comment["jobs"]["comment"]["steps"] if "uses" in s]
    assert download["uses"].startswith(DOWNLOAD)
    assert download["with"] == {
        "name": "${{ env.REPORT_ARTIFACT }}",
        "run-id": "${{ github.event.workflow_run.id }}",
        "github-token": "${{ github.token }}",
        "path": "${{ runner.temp }}/report",
    }
    assert report["jobs"]["report"]["permissions"] == {"contents": "read"}


def test_the_report_workflow_keeps_the_report_folder_as_the_artifact_the_report_names() -> None:
    steps = load(WORKFLOWS / "training-report.yml")["jobs"]["report"]["steps"]
    names = [step.get("name") for step in steps]
    [upload] = [
        step for step in steps if str(step.get("uses")).startswith("actions/upload-artifact@")
    ]
    script = step_script("training-report.yml", "make report")
    run_url = "$GITHUB_SERVER_URL/$GITHUB_REPOSITORY/actions/runs/$GITHUB_RUN_ID"
    assert f'run_url="{run_url}"' in script and 'REPORT_PLOTS_URL="$run_url"' in script
    assert 'REPORT_ARTIFACT="$REPORT_ARTIFACT"' in script and "REPORT_DIR=out/report" in script
    assert upload["with"] == {
        "name": "${{ env.REPORT_ARTIFACT }}",
        "path": "out/report/",
        "if-no-files-found": "error",
    }
    assert names.index("make report") < steps.index(upload)


@pytest.mark.parametrize("path", workflow_files(), ids=lambda path: path.name)
def test_no_workflow_lets_cml_upload_to_its_asset_host(path: Path) -> None:
    """CML's --publish defaults to true: every cml command must say --publish=false, and none
    may name another asset host or upload natively."""
    for command in cml_commands(path):
        words = command.split()
        others = [w for w in words if w.startswith(("--publish", "--native"))]
        assert others == ["--publish=false"], command
