"""Run the repository's own workflow files, unmodified, with nektos/act on this machine.

`make act` (mk/workflows.mk) and the workflow walks (tests/workflows/test_act_*.py) build act's
command line here, with `act_command`, so a walk a test runs is a command a person can run.

act runs in host mode (``-P ubuntu-24.04=-self-hosted``: each step is a process of this machine,
no container engine) and never in the checkout itself: in a sandbox, a clone of the checkout's
committed HEAD (``SANDBOX/work``) whose origin is a bare repository at
``SANDBOX/github.com/OWNER/NAME.git``. act names the repository after the origin's URL, so
``github.repository`` is OWNER/NAME; tags and branches a workflow pushes land in that bare
repository, where a test reads them. act copies the sandbox's tracked files into a fresh
workspace under ``SANDBOX/act-N`` for each run.

act reads the workflow files from its working directory, the sandbox clone. For a pull request
event the harness first checks out there the commit GitHub reads them from (``workflow_commit``:
for ``pull_request`` the pull request's merge commit, ``refs/pull/N/merge``; for
``pull_request_target`` the base branch's tip), after making ``refs/pull/N/head`` and
``refs/pull/N/merge`` as GitHub serves them (``pull_request_refs``), and goes back afterwards. So
a pull request that edits a workflow file runs its own copy under ``pull_request``, as on GitHub,
and the base's under ``pull_request_target``.

Everything that stands in for GitHub (the actions that only prepare a runner or keep artifacts,
and the `gh` CLI) is in tests/workflows/act/, listed with the reason in its README.md.
`act_command` wires each action of the workflows to its stand-in by the exact ``owner/repo@sha``
the workflows pin, read from the workflow files; a workflow that starts using another action fails
here until that action has a stand-in. Artifacts land in ``SANDBOX/artifacts/NAME``, and stay, for
a later run's download by ``run-id``, in ``SANDBOX/runs/N/artifacts/NAME`` (N: ``ActRun.number``).

usage (what `make act` runs):
    python tests/workflows/act_harness.py --event push --branch main [--workflow promote.yml]
    python tests/workflows/act_harness.py --event pull_request_target --workflow pr-guard.yml \\
        --payload event.json --pr-files changed-files.txt
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from workflow_helpers import REPO, WORKFLOWS, git, tool_env, workflow_files

STANDINS = Path(__file__).resolve().parent / "act"
#: The runner label of every job, run on this machine.
PLATFORM = "ubuntu-24.04=-self-hosted"
#: The stand-in folder (in STANDINS) of each action the workflows use, by owner/repo.
STANDIN_OF = {
    "actions/checkout": "checkout",
    "actions/setup-python": "setup-python",
    "actions/cache": "cache",
    "docker/login-action": "docker-login",
    "actions/upload-artifact": "upload-artifact",
    "actions/download-artifact": "download-artifact",
    "actions/create-github-app-token": "app-token",
}
#: github.token of every run: given, so act does not ask `gh auth token` for one; act masks it
#: in its output, so it is a string no other output contains.
TOKEN = "ghs-act-run-token"  # noqa: S105 - not a secret: the stand-in token of local runs
OWNER_NAME = "acme/modelops"
#: The pull request events, and the commit GitHub reads their workflow files from (and sets
#: GITHUB_SHA to): the pull request's merge commit, or the base branch's tip.
PULL_REQUEST_EVENTS = {"pull_request": "merge", "pull_request_target": "base"}
#: The secrets of the GitHub environment `evidence` (the evidence App's key), whose deployment
#: branches are the environment branches (docs/workflow.md): GitHub gives them to a job of a run
#: whose ref is such a branch (a push to it, a pull_request_target into it: the run's ref is the
#: base branch) and refuses the environment to a pull_request run (ref refs/pull/N/merge). act
#: knows no environments, so the harness leaves them out of a pull_request run: a job of that
#: environment then finds no key, and its token step fails.
ENVIRONMENT_SECRETS = {"EVIDENCE_APP_KEY"}
#: Who GitHub's merge commits of pull requests are by, and when (fixed: a run's merge commit
#: does not depend on the clock).
MERGE_IDENTITY = {
    "GIT_AUTHOR_NAME": "GitHub",
    "GIT_AUTHOR_EMAIL": "noreply@github.com",
    "GIT_AUTHOR_DATE": "@0 +0000",
    "GIT_COMMITTER_NAME": "GitHub",
    "GIT_COMMITTER_EMAIL": "noreply@github.com",
    "GIT_COMMITTER_DATE": "@0 +0000",
}


def pinned_actions(files: Iterable[Path] | None = None) -> list[str]:
    """Every ``owner/repo@ref`` a step of the workflow FILES uses, each once, sorted."""
    uses = set()
    for path in workflow_files() if files is None else files:
        for job in yaml.safe_load(path.read_text())["jobs"].values():
            uses.update(str(step["uses"]) for step in job.get("steps", []) if "uses" in step)
    return sorted(uses)


def local_repositories(actions: Iterable[str]) -> list[str]:
    """act's --local-repository options: each pinned action to its stand-in folder."""
    options = []
    for action in actions:
        name = action.split("@", 1)[0]
        if name not in STANDIN_OF:
            raise LookupError(
                f"{action}: no stand-in in {STANDINS.relative_to(REPO)}; act would fetch it from"
                f" GitHub. Add one and list it in README.md there (stand-ins: {sorted(STANDIN_OF)})"
            )
        options += ["--local-repository", f"{action}={STANDINS / STANDIN_OF[name]}"]
    return options


def act_command(
    event: str,
    *,
    workflow: str | None = None,
    job: str | None = None,
    payload: Path | None = None,
    variables: Mapping[str, str] | None = None,
    secrets: Mapping[str, str] | None = None,
    api: str | None = None,
    cache: Path,
) -> list[str]:
    """act's command line for EVENT: one WORKFLOW file (else all) and one JOB (else all), the
    event PAYLOAD (JSON), repository VARIABLES and SECRETS, GitHub's REST API at API (a stand-in:
    GITHUB_API_URL and github.api_url of the run); actions and workspaces under CACHE."""
    command = ["act", event, "-P", PLATFORM, "--action-cache-path", str(cache)]
    if api:
        command += ["--env", f"GITHUB_API_URL={api}"]
    command.append("--no-cache-server")  # the actions/cache stand-in uses none
    if workflow:
        command += ["-W", str(WORKFLOWS.relative_to(REPO) / workflow)]
    if job:
        command += ["-j", job]
    if payload:
        command += ["-e", str(payload)]
    for name, value in (variables or {}).items():
        command += ["--var", f"{name}={value}"]
    for name, value in {"GITHUB_TOKEN": TOKEN, **(secrets or {})}.items():
        command += ["-s", f"{name}={value}"]
    return command + local_repositories(pinned_actions())


@dataclass(frozen=True)
class Sandbox:
    """Where act runs: WORK (the clone act reads), ORIGIN (its bare origin) under ROOT."""

    root: Path

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def origin(self) -> Path:
        return self.root / "github.com" / f"{OWNER_NAME}.git"

    @property
    def gh_calls(self) -> Path:
        """The gh stand-in's record of the last run: one JSON object a call."""
        return self.root / "gh-calls.jsonl"

    @property
    def pr_files(self) -> Path:
        """What the gh stand-in answers to `gh pr diff --name-only`."""
        return self.root / "pr-files"

    @property
    def artifacts(self) -> Path:
        """Where the upload-artifact stand-in keeps the last run's artifacts: one folder each."""
        return self.root / "artifacts"

    @property
    def artifact_uploads(self) -> Path:
        """The upload-artifact stand-in's record of the last run: one JSON object an upload."""
        return self.root / "artifact-uploads.jsonl"

    @property
    def runs(self) -> Path:
        """Each finished run's artifacts, as GitHub keeps them for later runs:
        ``runs/<ActRun.number>/artifacts/<name>`` (the download-artifact stand-in's ``run-id``)."""
        return self.root / "runs"

    @property
    def artifact_downloads(self) -> Path:
        """The download-artifact stand-in's record of the last run: one JSON object a download."""
        return self.root / "artifact-downloads.jsonl"

    def downloads(self) -> list[dict[str, Any]]:
        """The artifact downloads of the last run, in order: name, run_id, path and files."""
        path = self.artifact_downloads
        lines = path.read_text().splitlines() if path.exists() else []
        return [json.loads(line) for line in lines]

    def uploads(self) -> list[dict[str, Any]]:
        """The artifact uploads of the last run, in order: name and files (relative paths)."""
        path = self.artifact_uploads
        lines = path.read_text().splitlines() if path.exists() else []
        return [json.loads(line) for line in lines]

    def calls(self) -> list[dict[str, Any]]:
        """The gh calls of the last run, in order."""
        lines = self.gh_calls.read_text().splitlines() if self.gh_calls.exists() else []
        return [json.loads(line) for line in lines]

    def origin_refs(self, pattern: str = "refs/") -> list[str]:
        """The refs of the bare origin under PATTERN, sorted."""
        out = git(self.origin, "for-each-ref", "--format=%(refname)", pattern)
        return sorted(out.split())


def make_sandbox(root: Path, branch: str = "main", source: Path = REPO) -> Sandbox:
    """A clone of SOURCE's committed HEAD at ROOT/work, on BRANCH and no other local branch (act
    names a push's ref after a branch at HEAD: the one SOURCE is on would do), pushed as main (and
    BRANCH) to a fresh bare origin. ROOT must not exist or be empty."""
    sandbox = Sandbox(root)
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(sandbox.origin)], check=True)
    git(root, "clone", "-q", "--no-hardlinks", str(source), str(sandbox.work))
    git(sandbox.work, "remote", "set-url", "origin", str(sandbox.origin))
    git(sandbox.work, "switch", "-q", "-C", branch)
    for other in git(sandbox.work, "for-each-ref", "--format=%(refname)", "refs/heads").split():
        if other != f"refs/heads/{branch}":
            git(sandbox.work, "update-ref", "-d", other)
    refs = sorted({"HEAD:refs/heads/main", f"HEAD:refs/heads/{branch}"})
    git(sandbox.work, "push", "-q", "origin", *refs)
    sandbox.pr_files.write_text("")
    return sandbox


def act_env(sandbox: Sandbox) -> dict[str, str]:
    """The environment of the act process, which its host-mode steps inherit: the gh stand-in
    first on PATH, where it records and what it answers, the checkout whose .venv and .tools the
    setup-python stand-in links, the sandbox the checkout stand-in clones, where the
    upload-artifact stand-in keeps artifacts and records uploads, where the download-artifact
    stand-in finds earlier runs' artifacts and records downloads."""
    env = tool_env()
    env["PATH"] = os.pathsep.join([str(STANDINS / "bin"), env["PATH"]])
    env.update(
        MODELOPS_GH_CALLS=str(sandbox.gh_calls),
        MODELOPS_GH_PR_FILES=str(sandbox.pr_files),
        MODELOPS_ACT_TOOLCHAIN=str(REPO),
        MODELOPS_ACT_REPO=str(sandbox.work),
        MODELOPS_ACT_ARTIFACTS=str(sandbox.artifacts),
        MODELOPS_ACT_UPLOADS=str(sandbox.artifact_uploads),
        MODELOPS_ACT_RUNS=str(sandbox.runs),
        MODELOPS_ACT_DOWNLOADS=str(sandbox.artifact_downloads),
    )
    # Nothing of the caller's own run (a CI runner's) leaks into the workflow's.
    for name in [name for name in env if name.startswith(("GITHUB_", "RUNNER_", "ACTIONS_"))]:
        del env[name]
    return env


@dataclass(frozen=True)
class ActRun:
    """One act run: its exit status (None when stopped), its output, the step it stopped before,
    its number in the sandbox (the ``run-id`` a later run downloads its artifacts by)."""

    returncode: int | None
    output: str
    stopped_before: str | None = None
    number: int = 0

    def step_started(self, name: str) -> bool:
        return step_header(name) in self.output


def step_outputs(run: ActRun) -> dict[str, str]:
    """Every `::set-output::` act reported (name=value), the last value of each name."""
    return dict(re.findall(r"::set-output:: ([\w-]+)=(.*)", run.output))


def step_header(name: str) -> str:
    """The line act prints when a step (main part) starts."""
    return f"⭐ Run Main {name}"


@dataclass(frozen=True)
class PullRequestRefs:
    """What GitHub serves of a pull request: its head commit (``refs/pull/N/head``), the test
    merge of it into the base branch (``refs/pull/N/merge``), and the base branch's tip."""

    number: int
    head: str
    merge: str
    base: str


def pull_request_refs(sandbox: Sandbox, payload: Mapping[str, Any]) -> PullRequestRefs:
    """Make ``refs/pull/N/head`` (the PAYLOAD's ``pull_request.head.sha``) and ``refs/pull/N/merge``
    (that commit merged into the tip of the base branch ``pull_request.base.ref`` in the origin)
    in the sandbox clone and in its origin, as GitHub serves them. The head commit must be in the
    sandbox clone; a merge with conflicts is an error (GitHub then makes no merge ref and runs no
    ``pull_request`` workflow)."""
    pull_request = payload["pull_request"]
    number = int(pull_request["number"])
    head, base_ref = str(pull_request["head"]["sha"]), str(pull_request["base"]["ref"])
    tracking = f"refs/remotes/origin/{base_ref}"
    git(sandbox.work, "fetch", "-q", "origin", f"+refs/heads/{base_ref}:{tracking}")
    base = git(sandbox.work, "rev-parse", tracking).strip()
    if subprocess.run(["git", "cat-file", "-e", f"{head}^{{commit}}"], cwd=sandbox.work).returncode:
        raise LookupError(f"pull request {number}: its head {head} is not in {sandbox.work}")
    merged = subprocess.run(
        ["git", "merge-tree", "--write-tree", base, head],
        cwd=sandbox.work, env=tool_env(), capture_output=True, text=True, check=False,
    )  # fmt: skip
    if merged.returncode != 0:
        raise ValueError(
            f"pull request {number}: {head[:12]} does not merge into {base_ref} cleanly:"
            f" GitHub would make no refs/pull/{number}/merge and run no pull_request workflow"
        )
    merge = subprocess.run(
        ["git", "commit-tree", merged.stdout.split()[0], "-p", base, "-p", head,
         "-m", f"Merge {head} into {base}"],
        cwd=sandbox.work, env=tool_env(**MERGE_IDENTITY), capture_output=True, text=True,
        check=True,
    ).stdout.strip()  # fmt: skip
    refs = {f"refs/pull/{number}/head": head, f"refs/pull/{number}/merge": merge}
    for ref, commit in refs.items():
        git(sandbox.work, "update-ref", ref, commit)
    git(sandbox.work, "push", "-q", "--force", "origin", *[f"{ref}:{ref}" for ref in refs])
    return PullRequestRefs(number, head, merge, base)


def workflow_commit(event: str, refs: PullRequestRefs) -> str:
    """The commit GitHub reads the workflow files of a pull request EVENT from, and sets
    GITHUB_SHA to: the merge commit for ``pull_request``, the base branch's tip for
    ``pull_request_target`` (PULL_REQUEST_EVENTS)."""
    if event not in PULL_REQUEST_EVENTS:
        raise ValueError(
            f"{event} is no pull request event (events: {sorted(PULL_REQUEST_EVENTS)})"
        )
    return refs.merge if PULL_REQUEST_EVENTS[event] == "merge" else refs.base


@contextlib.contextmanager
def checked_out(repo: Path, commit: str) -> Iterator[None]:
    """REPO's HEAD detached at COMMIT for the block, then back on the branch (or the commit) it
    was on."""
    branch = subprocess.run(
        ["git", "symbolic-ref", "-q", "--short", "HEAD"], cwd=repo, capture_output=True, text=True
    ).stdout.strip()
    before = branch or git(repo, "rev-parse", "HEAD").strip()
    git(repo, "switch", "-q", "--detach", commit)
    try:
        yield
    finally:
        git(repo, "switch", "-q", *([before] if branch else ["--detach", before]))


def run_act(
    sandbox: Sandbox,
    event: str,
    *,
    stop_before: str | None = None,
    echo: bool = False,
    env: Mapping[str, str] | None = None,
    **options: Any,
) -> ActRun:
    """Run act (act_command's OPTIONS) in SANDBOX with act_env; the gh record, the artifacts and
    their record start empty. With STOP_BEFORE, stop act and its steps as soon as the step of that
    name starts (what it needs is not here: the rest of the job is not run). With ECHO, copy act's
    output to stdout. ENV is added to the environment the steps inherit (what a self-hosted
    runner's machine would have set).

    A pull request EVENT (PULL_REQUEST_EVENTS) needs its ``payload``: act then runs with the
    sandbox clone checked out at the commit GitHub reads the workflow files from
    (``workflow_commit``, after ``pull_request_refs``), and the clone goes back afterwards."""
    if event == "pull_request":
        secrets = options.get("secrets") or {}
        options["secrets"] = {k: v for k, v in secrets.items() if k not in ENVIRONMENT_SECRETS}
    if event not in PULL_REQUEST_EVENTS:
        return _run_act(sandbox, event, stop_before, echo, env, options)
    if options.get("payload") is None:
        raise ValueError(f"a {event} run needs its payload (the pull request it is about)")
    refs = pull_request_refs(sandbox, json.loads(Path(options["payload"]).read_text()))
    with checked_out(sandbox.work, workflow_commit(event, refs)):
        return _run_act(sandbox, event, stop_before, echo, env, options)


def _run_act(
    sandbox: Sandbox,
    event: str,
    stop_before: str | None,
    echo: bool,
    env: Mapping[str, str] | None,
    options: Mapping[str, Any],
) -> ActRun:
    number = len(list(sandbox.root.glob("act-*")))
    cache = sandbox.root / f"act-{number}"  # a fresh one per run
    sandbox.gh_calls.write_text("")
    shutil.rmtree(sandbox.artifacts, ignore_errors=True)
    sandbox.artifact_uploads.unlink(missing_ok=True)
    sandbox.artifact_downloads.unlink(missing_ok=True)
    command = act_command(event, cache=cache, **options)
    with subprocess.Popen(
        command,
        cwd=sandbox.work,
        env={**act_env(sandbox), **(env or {})},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: stopping it stops its steps
    ) as act:
        assert act.stdout is not None
        lines = []
        stopped = None
        for line in act.stdout:
            lines.append(line)
            if echo:
                sys.stdout.write(line)
            if stop_before and step_header(stop_before) in line:
                stopped = stop_before
                os.killpg(act.pid, signal.SIGKILL)
                break
        act.wait()
    if sandbox.artifacts.is_dir():  # kept for later runs, as GitHub keeps a run's artifacts
        shutil.copytree(sandbox.artifacts, sandbox.runs / str(number) / "artifacts")
    return ActRun(None if stopped else act.returncode, "".join(lines), stopped, number)


def pull_request_payload(
    *,
    number: int,
    head_ref: str,
    base_ref: str,
    head_sha: str,
    base_sha: str,
    head_repo: str = OWNER_NAME,
    base_repo: str = OWNER_NAME,
) -> dict[str, Any]:
    """The parts of a pull_request event payload the workflows read."""
    return {
        "action": "opened",
        "number": number,
        "pull_request": {
            "number": number,
            "head": {"ref": head_ref, "sha": head_sha, "repo": {"full_name": head_repo}},
            "base": {"ref": base_ref, "sha": base_sha, "repo": {"full_name": base_repo}},
        },
        "repository": {"full_name": base_repo},
    }


def workflow_run_payload(
    run: ActRun,
    *,
    workflow: str,
    pull_request: int,
    head_sha: str,
    conclusion: str = "success",
    event: str = "pull_request",
    head_repo: str = OWNER_NAME,
) -> dict[str, Any]:
    """The parts of a workflow_run event payload (``completed``) the workflows read: the finished
    RUN (its number is the run id its artifacts are downloaded by) of WORKFLOW (its name), started
    by EVENT for PULL_REQUEST at HEAD_SHA from HEAD_REPO. GitHub lists the run's pull requests only
    when HEAD_REPO is this repository, so then only."""
    same = head_repo == OWNER_NAME
    return {
        "action": "completed",
        "workflow_run": {
            "id": run.number,
            "name": workflow,
            "event": event,
            "conclusion": conclusion,
            "head_sha": head_sha,
            "head_repository": {"full_name": head_repo},
            "pull_requests": [{"number": pull_request}] if same else [],
        },
        "repository": {"full_name": OWNER_NAME},
    }


def pairs(values: Sequence[str]) -> dict[str, str]:
    """NAME=VALUE arguments as a mapping."""
    found = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name:
            raise SystemExit(f"error: expected NAME=VALUE, got {value!r}")
        found[name] = rest
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--event", required=True, help="push, pull_request_target, ...")
    parser.add_argument("--workflow", help="a file of .github/workflows (default: all)")
    parser.add_argument("--job", help="one job id (default: all)")
    parser.add_argument("--branch", default="main", help="the sandbox's branch (push: the ref)")
    parser.add_argument("--payload", type=Path, help="the event's JSON payload")
    parser.add_argument("--pr-files", type=Path, help="what `gh pr diff --name-only` answers")
    parser.add_argument("--var", action="append", default=[], help="NAME=VALUE, vars.NAME")
    parser.add_argument("--secret", action="append", default=[], help="NAME=VALUE, secrets.NAME")
    parser.add_argument("--sandbox", type=Path, default=REPO / "out" / "act", help="made afresh")
    args = parser.parse_args(argv)
    if args.event in PULL_REQUEST_EVENTS and args.payload is None:
        parser.error(f"a {args.event} run needs --payload (tests/workflows/act/README.md)")
    shutil.rmtree(args.sandbox, ignore_errors=True)
    sandbox = make_sandbox(args.sandbox.resolve(), branch=args.branch)
    if args.event in PULL_REQUEST_EVENTS:
        # The base branch, where the payload says it is, unless the sandbox's origin has it.
        base = json.loads(args.payload.read_text())["pull_request"]["base"]
        if not sandbox.origin_refs(f"refs/heads/{base['ref']}"):
            git(sandbox.work, "push", "-q", "origin", f"{base['sha']}:refs/heads/{base['ref']}")
    if args.pr_files:
        shutil.copyfile(args.pr_files, sandbox.pr_files)
    run = run_act(
        sandbox,
        args.event,
        echo=True,
        workflow=args.workflow,
        job=args.job,
        payload=args.payload.resolve() if args.payload else None,
        variables=pairs(args.var),
        secrets=pairs(args.secret),
    )
    print(
        f"act exited {run.returncode}; sandbox {sandbox.root}, gh calls in {sandbox.gh_calls},"
        f" artifacts in {sandbox.artifacts}"
    )
    return run.returncode or 0


if __name__ == "__main__":
    sys.exit(main())
