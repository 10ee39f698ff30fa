"""The smoke gate's evidence (gitops/evidence.py): only the evidence App's newest check run counts.

A small real repository (this checkout's rendered/dev on main, evidence.toml naming the evidence
App on staging, the target), the GitHub API stand-in (tests/workflows/act/github_api.py) holding
the identities a contributor with push rights has (their own token; a same-repository pull
request's workflow token, the GitHub Actions app's) and the evidence App's key, and the
environments' Service stand-in (tests/workflows/act/deployed.py). Each forgery the old git-note
record let through is replayed as such a contributor would, and refused with one line; the
genuine record of `gitops.smoke --record` passes.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitops import environments, evidence, gates, rendered
from gitops.cli import ToolError
from gitops.github import GitHub
from tests.gitops.github_stand_in import RUN_TOKEN as ACTIONS_TOKEN
from tests.gitops.github_stand_in import evidence_api
from tests.workflows.act.deployed import Deployed
from tests.workflows.act.github_api import EVIDENCE_APP, GitHubApi
from tests.workflows.workflow_helpers import REPO, git, run_tool

pytestmark = pytest.mark.integration  # real git, the gitops commands, HTTP stand-ins

DEV, STAGING, _ = environments.load()
CONTRIBUTOR_TOKEN = "ghp_contributor"  # noqa: S105 - a stand-in token


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """main with dev's rendered file, staging with evidence.toml naming the evidence App."""
    work = tmp_path / "work"
    (work / "rendered").mkdir(parents=True)
    shutil.copytree(REPO / "rendered" / "dev", work / "rendered" / "dev")
    (work / evidence.FILE).write_text(f"[app]\nid = {EVIDENCE_APP['id']}\n")
    git(work, "init", "-q", "-b", "main")
    git(work, "config", "user.name", "test")
    git(work, "config", "user.email", "test@example.org")
    git(work, "add", "-A")
    git(work, "commit", "-qm", "dev runs a release; the evidence App is set up")
    git(work, "branch", "staging")
    monkeypatch.chdir(work)
    return work


@pytest.fixture
def github(monkeypatch: pytest.MonkeyPatch) -> Iterator[GitHubApi]:
    """The API stand-in, its identities (and a contributor's own token), and the environment the
    tools read it from; GH_TOKEN is the evidence App's installation token, as in the smoke job
    after its token step."""
    with evidence_api(monkeypatch, as_evidence_app=True) as api:
        api.add_user("contributor", CONTRIBUTOR_TOKEN)
        yield api


@pytest.fixture
def deployed(repo: Path) -> Iterator[Deployed]:
    with Deployed(lambda env: git(repo, "show", f"main:rendered/{env}/manifests.yaml")) as d:
        yield d


def candidate() -> gates.Candidate:
    text = git(Path.cwd(), "show", f"main:{rendered.path(DEV)}")
    release = rendered.release(text)
    return gates.Candidate(DEV, STAGING, "main", "staging", release, text, text, None)


def gate_line() -> str:
    """The smoke gate's refusal, one line."""
    with pytest.raises(gates.GateError) as refusal:
        gates.smoke_test(candidate())
    (line,) = str(refusal.value).splitlines()
    assert line.startswith("gate smoke: ")
    return line


def smoke(deployed: Deployed, check: bool = True) -> None:
    run_tool("smoke", "dev", "--url", deployed.url_of("dev"), "--ref", "main", "--record",
             cwd=Path.cwd(), check=check)  # fmt: skip


def genuine() -> dict[str, object]:
    """The record of a passed smoke test, as the evidence App wrote it (the gate's view)."""
    c = candidate()
    commit, blob = evidence.rendered_commit(DEV, "main")
    runs = GitHub.from_environ().check_runs(commit, "smoke/dev")
    found = json.loads(runs[0]["output"]["text"])
    assert (found["blob"], found["digest"], found["passed"]) == (blob, c.release.digest, True)
    return found


def as_identity(token: str, body: dict[str, object], path: str = "check-runs") -> object:
    """POST BODY to the repository's PATH with TOKEN, as that identity would with gh api."""
    api = GitHub.from_environ({**os.environ, "GH_TOKEN": token})
    return api.repo("POST", path, body)


def check_run(record: dict[str, object], conclusion: str = "success") -> dict[str, object]:
    commit, _ = evidence.rendered_commit(DEV, "main")
    output = {"title": "smoke", "summary": "x", "text": json.dumps(record)}
    return {"name": "smoke/dev", "head_sha": commit, "status": "completed",
            "conclusion": conclusion, "output": output}  # fmt: skip


def test_the_smoke_test_recorded_by_the_evidence_app_passes_the_gate(
    repo: Path, github: GitHubApi, deployed: Deployed
) -> None:
    smoke(deployed)
    figure = gates.smoke_test(candidate())
    assert figure.startswith("dev served ") and "check run smoke/dev" in figure
    (run,) = github.check_runs
    assert run["app"] == EVIDENCE_APP and run["conclusion"] == "success"


def test_a_hand_pushed_git_note_is_no_evidence(repo: Path, github: GitHubApi) -> None:
    """The record the smoke gate used to take: a note anyone with push rights writes."""
    blob = git(repo, "rev-parse", f"main:{rendered.path(DEV)}").strip()
    note = '{"environment":"dev","passed":true}'
    git(repo, "notes", "--ref", "modelops-smoke", "append", "-m", note, blob)
    line = gate_line()
    assert "has no check run smoke/dev by the evidence App 424242" in line


def test_a_record_posted_with_a_contributors_own_token_is_refused(
    repo: Path, github: GitHubApi, deployed: Deployed
) -> None:
    smoke(deployed)
    record = genuine()
    github.check_runs.clear()
    # GitHub creates no check run for a person's token; a commit status it takes, as theirs.
    refused = "403 to POST /repos/acme/modelops/check-runs: You must authenticate via a"
    with pytest.raises(ToolError, match=refused):
        as_identity(CONTRIBUTOR_TOKEN, check_run(record))
    commit, _ = evidence.rendered_commit(DEV, "main")
    status = {"state": "success", "context": "smoke/dev", "description": json.dumps(record)[:140]}
    as_identity(CONTRIBUTOR_TOKEN, status, f"statuses/{commit}")
    assert [s["creator"]["login"] for s in github.statuses] == ["contributor"]
    assert "has no check run smoke/dev by the evidence App 424242" in gate_line()


def test_a_record_made_by_a_pull_requests_workflow_token_is_refused(
    repo: Path, github: GitHubApi, deployed: Deployed
) -> None:
    """A same-repository pull request's own workflow can create check runs with GITHUB_TOKEN:
    GitHub makes them the GitHub Actions app's, whatever name the run gives itself."""
    smoke(deployed)
    record = genuine()
    github.check_runs.clear()
    as_identity(ACTIONS_TOKEN, check_run(record))
    assert gate_line().endswith(
        "by the evidence App 424242; check runs smoke/dev by github-actions (app 15368) are not "
        "evidence"
    )


def test_a_failure_recorded_after_a_pass_is_refused(
    repo: Path, github: GitHubApi, deployed: Deployed
) -> None:
    smoke(deployed)
    gates.smoke_test(candidate())  # passes
    deployed.serve_instead("dev", model_sha256="0" * 64)  # the pods changed under it
    smoke(deployed, check=False)
    assert [r["conclusion"] for r in github.check_runs] == ["success", "failure"]
    line = gate_line()
    assert "the newest smoke test of rendered/dev/manifests.yaml on main" in line
    assert "failed: smoke: /v2 model metadata reports model_sha256 '000" in line
    deployed.overrides.clear()
    smoke(deployed)  # fixed, tested again: the newest passes
    gates.smoke_test(candidate())


def test_the_apps_newest_record_decides_behind_a_page_of_others_records(
    repo: Path, github: GitHubApi, deployed: Deployed
) -> None:
    """A pass, then a failure, then a full page of passes by the Actions app: the gate reads
    every page, so the App's failure still decides."""
    smoke(deployed)
    record = genuine()
    deployed.serve_instead("dev", version="v9.9.9")
    smoke(deployed, check=False)
    for _ in range(evidence.PAGE):
        as_identity(ACTIONS_TOKEN, check_run(record))
    assert len(github.check_runs) == evidence.PAGE + 2
    assert "failed: smoke: /v2 model metadata reports version 'v9.9.9'" in gate_line()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("blob", "0" * 40),
        ("digest", "sha256:" + "ee" * 32),
        ("model_sha256", "1" * 64),
        ("git_commit", "2" * 40),
    ],
)
def test_a_record_of_the_evidence_app_for_another_release_is_refused(
    repo: Path, github: GitHubApi, deployed: Deployed, field: str, value: str
) -> None:
    """The App's own record, on this commit, but naming another blob, digest, model or commit."""
    smoke(deployed)
    record = genuine()
    as_identity(GitHub.from_environ().token, check_run({**record, field: value}))
    line = gate_line()
    assert f"names {field} {value!r}, but dev runs {record[field]!r}" in line


def test_an_evidence_app_that_is_not_set_up_stops_the_gate(repo: Path, github: GitHubApi) -> None:
    git(repo, "switch", "-q", "staging")
    (repo / evidence.FILE).write_text("[app]\nid = 0\n")
    git(repo, "commit", "-qam", "evidence.toml as the repository ships it")
    assert "evidence.toml on staging: app.id must be the evidence GitHub App's id" in gate_line()


def test_gitops_smoke_record_without_a_repository_fails_in_one_line(
    repo: Path, github: GitHubApi, deployed: Deployed, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GITHUB_REPOSITORY")
    done = run_tool("smoke", "dev", "--url", deployed.url_of("dev"), "--ref", "main", "--record",
                    cwd=repo, check=False)  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "error: GITHUB_REPOSITORY must be OWNER/NAME (where the evidence is), got ''"
    ]


def test_smoke_wait_asks_again_until_the_sync_and_records_only_the_last_answer(
    repo: Path, github: GitHubApi, deployed: Deployed
) -> None:
    """The smoke job starts right after the merge, before Argo CD synced: the pods still serve
    the old model for a while."""
    deployed.serve_instead("dev", version="v0.0.1")
    synced = threading.Timer(0.5, deployed.overrides.clear)
    synced.start()
    run_tool("smoke", "dev", "--url", deployed.url_of("dev"), "--ref", "main", "--record",
             "--wait", "30", cwd=repo)  # fmt: skip
    synced.join()
    assert [r["conclusion"] for r in github.check_runs] == ["success"]
    gates.smoke_test(candidate())
