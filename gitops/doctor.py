"""Check a live repository's GitHub settings (and Argo CD's Applications) against what the flow
relies on: one line a problem, exit status 1 when there is any.

usage: python -m gitops.doctor OWNER/NAME [--api URL] [--applications FILE | --kubeconfig FILE]
       python -m gitops.doctor --rulesets

Role: the last step of setting up a fork (docs/workflow.md, "Setting it up in a fork"), and a
check to re-run whenever the settings may have changed. The promotion order, the gates and the
rollback hold only while the repository's settings say what they rely on; nothing in the
repository can enforce those settings, so this reads them back through GitHub's REST API, with
the token in ``GH_TOKEN`` (or ``GITHUB_TOKEN``; it needs read access to the repository's
administration, contents and actions settings). ``--api`` (or ``GITHUB_API_URL``) points it at
GitHub Enterprise or a stand-in.

What it checks, each problem printed as ``<area> <where>: <what is wrong>``:

  rulesets    every environment branch of environments.toml is under active rules, bypassed by
              nobody: no deletion, no force push, changes by pull request only (an approving
              review, Code Owners' review, stale approvals dismissed), and every status check
              that guards it required (:data:`GUARDS`: the check names are the jobs' names in
              the workflow files), each from the app meant to set it (``integration_id``: the
              evidence App for ``order`` and ``verify``, GitHub Actions for ci.yml's tiers)
  evidence    evidence.toml on each environment branch names the evidence App (app.id set, not
              0): the id its required checks are pinned to and the smoke gate trusts
  environment the GitHub environment ``evidence`` (the App's key) lets only the environment
              branches, each by name, run a job in it
  tags        an active tag ruleset forbids creating, moving and deleting the GTO tags of the
              artifact (training/params.yaml's artifact.name) to everyone but GitHub Apps (the
              workflows' own identity)
  codeowners  .github/CODEOWNERS on the first environment's branch names owners for each path
              of :data:`OWNED` other than the placeholder teams it ships with, and GitHub finds
              no error in it
  actions     the workflows' default token is read-only and cannot approve pull requests
  image-signing  the GitHub environment image-signing (CI's image signing key) lets only the
              first environment's branch deploy, and evidence.toml there names the public key
              (gitops.attestation)
  argocd      with --applications (the JSON of ``kubectl get applications.argoproj.io -n argocd
              -o json``) or --kubeconfig: one Application per environment, tracking the
              environment's branch and rendered/<env> in this repository, into its namespace,
              in the project of argocd/, with automated sync; and the app of apps
              (argocd/application.yaml) tracking argocd/ on the last environment's branch, in
              its own project, with automated sync

``--rulesets`` prints the rulesets that satisfy the rulesets and tags checks, one JSON document a
line, for ``gh api repos/OWNER/NAME/rulesets -X POST --input -`` (docs/workflow.md), with the
evidence App's id from this checkout's evidence.toml (refused while it is 0): the documented
settings and the checked ones are the same table.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import os
import subprocess
import tomllib
import urllib.error
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gitops import environments
from gitops.cli import OneLineParser, ToolError, run_main
from gitops.github import (
    DEFAULT_API,
    EVIDENCE_FILE,
    GITHUB_ACTIONS_APP,
    GitHub,
    HTTPError,
    parse_app_id,
)

ROOT = environments.ROOT
WORKFLOWS = ROOT / ".github" / "workflows"
#: The GitHub environment holding the evidence App's key (secret EVIDENCE_APP_KEY): the smoke
#: job and the guards' status jobs name it; only the environment branches may use it.
EVIDENCE_ENVIRONMENT = "evidence"


@dataclass(frozen=True)
class Guard:
    """A job whose check guards pull requests into some environments' branches."""

    workflow: str  # a file of .github/workflows
    job: str  # its job id
    first: bool  # guards the first environment's branch (main) too, not only the later ones
    by_evidence_app: bool = False  # its result is posted by the evidence App, else GitHub Actions

    def context(self) -> str:
        """The check's name as GitHub reports it: the job's ``name:``, else its id."""
        jobs = yaml.safe_load((WORKFLOWS / self.workflow).read_text(encoding="utf-8"))["jobs"]
        if self.job not in jobs:
            raise ToolError(f"{self.workflow} has no job {self.job} (gitops.doctor.GUARDS)")
        return str(jobs[self.job].get("name", self.job))


#: The checks every pull request into an environment branch must pass (docs/workflow.md,
#: "Branch protection"): the test tiers, the order guard, and for the branches after the first
#: the rebuild of the promotion or rollback from the protected branches.
GUARDS = (
    Guard("ci.yml", "unit", first=True),
    Guard("ci.yml", "integration", first=True),
    Guard("ci.yml", "e2e", first=True),
    Guard("pr-guard.yml", "order", first=True, by_evidence_app=True),
    Guard("environments.yml", "verify", first=False, by_evidence_app=True),
)
#: Paths whose changes need their owners' review: the workflows and the guard's code, the
#: environments and what deploys them, and the identities the gates trust (the evidence App, CI's
#: image signing key).
OWNED = (
    ".github/workflows/ci.yml",
    ".github/CODEOWNERS",
    "argocd/applicationset.yaml",
    "gitops/check_pr_order.py",
    "environments.toml",
    "evidence.toml",
)
#: The owner prefix of the teams .github/CODEOWNERS ships with, to be replaced in a fork.
PLACEHOLDER_OWNER = "@modelops/"
#: The pull_request rule's parameters that must be set (and to what).
PULL_REQUEST = {
    "required_approving_review_count": 1,  # at least
    "dismiss_stale_reviews_on_push": True,
    "require_code_owner_review": True,
}
BRANCH_RULES = ("deletion", "non_fast_forward", "pull_request", "required_status_checks")
TAG_RULES = ("creation", "update", "deletion")


def required_checks(env: environments.Environment) -> list[str]:
    """The check names a pull request into ENV's branch must pass."""
    return [guard.context() for guard in guards(env)]


def guards(env: environments.Environment) -> list[Guard]:
    """The guards of a pull request into ENV's branch."""
    first = environments.load()[0]
    return [guard for guard in GUARDS if guard.first or env != first]


def integration_id(guard: Guard, app: int) -> int:
    """The app GitHub must take GUARD's check from (the required check's ``integration_id``):
    the evidence App APP for the guards it posts, the GitHub Actions app for ci.yml's tiers. A
    status or check run of the same name from any other identity does not count."""
    return app if guard.by_evidence_app else GITHUB_ACTIONS_APP


def local_app_id() -> int:
    """The evidence App's id in this checkout's evidence.toml (for --rulesets)."""
    path = ROOT / EVIDENCE_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ToolError(f"{EVIDENCE_FILE}: {error.strerror}") from None
    return parse_app_id(text, "this checkout")


def artifact_name() -> str:
    """The GTO artifact's name (training/params.yaml: artifact.name)."""
    params = yaml.safe_load((ROOT / "training" / "params.yaml").read_text(encoding="utf-8"))
    return str(params["artifact"]["name"])


def tag_patterns() -> list[str]:
    """The GTO tags of the artifact: versions (NAME@vX.Y.Z) and stage assignments (NAME#...)."""
    name = artifact_name()
    return [f"refs/tags/{name}@*", f"refs/tags/{name}#*"]


def rulesets(app: int) -> list[dict[str, Any]]:
    """The rulesets that pass the rulesets and tags checks, as GitHub's API creates them, with
    APP the evidence App's id."""
    envs = environments.load()

    def branch_ruleset(name: str, branches: Sequence[environments.Environment]) -> dict[str, Any]:
        pinned = {(g.context(), integration_id(g, app)) for env in branches for g in guards(env)}
        return {
            "name": name,
            "target": "branch",
            "enforcement": "active",
            "bypass_actors": [],
            "conditions": {
                "ref_name": {"include": [f"refs/heads/{e.branch}" for e in branches], "exclude": []}
            },
            "rules": [
                {"type": "deletion"},
                {"type": "non_fast_forward"},
                {
                    "type": "pull_request",
                    "parameters": {
                        **PULL_REQUEST,
                        "require_last_push_approval": False,
                        "required_review_thread_resolution": False,
                    },
                },
                {
                    "type": "required_status_checks",
                    "parameters": {
                        "strict_required_status_checks_policy": True,
                        "required_status_checks": [
                            {"context": context, "integration_id": app_id}
                            for context, app_id in sorted(pinned)
                        ],
                    },
                },
            ],
        }

    return [
        branch_ruleset("environments: first", envs[:1]),
        branch_ruleset("environments: promoted", envs[1:]),
        {
            "name": "model registry tags",
            "target": "tag",
            "enforcement": "active",
            # The GitHub Actions app (the workflows' GITHUB_TOKEN); add the promote App if
            # PROMOTE_TOKEN is one.
            "bypass_actors": [
                {
                    "actor_id": GITHUB_ACTIONS_APP,
                    "actor_type": "Integration",
                    "bypass_mode": "always",
                }
            ],
            "conditions": {"ref_name": {"include": tag_patterns(), "exclude": []}},
            "rules": [{"type": rule} for rule in TAG_RULES],
        },
    ]


def _matches(patterns: Iterable[str], ref: str) -> bool:
    return any(p == "~ALL" or fnmatch.fnmatchcase(ref, p) for p in patterns)


def check_branches(api: GitHub, repo: str) -> list[str]:
    problems = []
    for env in environments.load():
        where = f"rulesets {env.branch}"
        rules = api.get(f"/repos/{repo}/rules/branches/{urllib.parse.quote(env.branch)}") or []
        types = {rule["type"] for rule in rules}
        problems += [f"{where}: no active {t} rule" for t in BRANCH_RULES if t not in types]
        for rule in (r for r in rules if r["type"] == "pull_request"):
            got = rule.get("parameters", {})
            for key, wanted in PULL_REQUEST.items():
                value = got.get(key)
                if value is not wanted if isinstance(wanted, bool) else (value or 0) < wanted:
                    problems.append(f"{where}: pull_request {key} is {value}, must be {wanted}")
        required: dict[str, set[int | None]] = {}
        for rule in rules:
            if rule["type"] == "required_status_checks":
                for check in rule.get("parameters", {}).get("required_status_checks", []):
                    pinned = check.get("integration_id")
                    required.setdefault(check["context"], set()).add(pinned)
        missing = [check for check in required_checks(env) if check not in required]
        if missing:
            problems.append(f"{where}: required status checks lack {', '.join(missing)}")
        found = branch_app_id(api, repo, env)
        app = found if isinstance(found, int) else None
        if isinstance(found, str):
            problems.append(found)
        for guard in guards(env):
            context = guard.context()
            if context not in required or (guard.by_evidence_app and app is None):
                continue
            wanted = integration_id(guard, app or 0)
            if wanted not in required[context]:
                got = ", ".join(str(i) for i in sorted(required[context], key=str))
                who = "the evidence App" if guard.by_evidence_app else "GitHub Actions"
                problems.append(
                    f"{where}: required check {context} must come from {who} (integration_id "
                    f"{wanted}), not {got}"
                )
        for ruleset_id in sorted({r["ruleset_id"] for r in rules if "ruleset_id" in r}):
            ruleset = api.get(f"/repos/{repo}/rulesets/{ruleset_id}") or {}
            for actor in ruleset.get("bypass_actors") or []:
                problems.append(
                    f"{where}: ruleset {ruleset.get('name', ruleset_id)!r} can be bypassed by "
                    f"{actor.get('actor_type')} {actor.get('actor_id')}"
                )
    return problems


def branch_app_id(api: GitHub, repo: str, env: environments.Environment) -> int | str:
    """The evidence App's id in evidence.toml on ENV's branch, or the problem line."""
    path = f"/repos/{repo}/contents/{EVIDENCE_FILE}?ref={urllib.parse.quote(env.branch)}"
    answer = api.get(path)
    if not answer or "content" not in answer:
        return f"evidence {env.branch}: no {EVIDENCE_FILE}: the smoke gate accepts no evidence"
    try:
        return parse_app_id(base64.b64decode(answer["content"]).decode("utf-8"), env.branch)
    except ToolError as error:
        return f"evidence {env.branch}: {str(error).split(': ', 1)[1]}"


def check_evidence_environment(api: GitHub, repo: str) -> list[str]:
    """The GitHub environment holding the evidence App's key: only the environment branches,
    each named (no pattern, no tag, not "protected branches"), may run a job in it."""
    where = f"environment {EVIDENCE_ENVIRONMENT}"
    branches = [env.branch for env in environments.load()]
    wanted = ", ".join(branches)
    found = api.get(f"/repos/{repo}/environments/{EVIDENCE_ENVIRONMENT}")
    if found is None:
        return [f"{where}: missing: create it with deployment branches {wanted} only"]
    policy = found.get("deployment_branch_policy")
    if not policy:
        return [f"{where}: any branch may deploy to it (must be {wanted} only)"]
    if not policy.get("custom_branch_policies"):
        return [
            f"{where}: deployment branches are 'protected branches', which is not this flow's "
            f"rulesets: list {wanted} by name"
        ]
    listed = api.get(
        f"/repos/{repo}/environments/{EVIDENCE_ENVIRONMENT}/deployment-branch-policies"
    )
    problems = []
    for item in (listed or {}).get("branch_policies", []):
        name, kind = str(item.get("name", "")), item.get("type", "branch")
        if kind != "branch" or name not in branches:
            problems.append(
                f"{where}: deployment {kind} policy {name!r} lets other refs take the App's key "
                f"(must be {wanted} only)"
            )
    return problems


def check_tags(api: GitHub, repo: str) -> list[str]:
    name, last = artifact_name(), environments.load()[-1].stage
    wanted = [f"refs/tags/{name}@v0.0.0", f"refs/tags/{name}#{last}#1"]  # a version, a stage
    guarding: dict[str, set[str]] = {tag: set() for tag in wanted}
    for summary in api.get(f"/repos/{repo}/rulesets?includes_parents=true") or []:
        if summary.get("target") != "tag":
            continue
        ruleset = api.get(f"/repos/{repo}/rulesets/{summary['id']}") or {}
        if ruleset.get("enforcement") != "active":
            continue
        if any(a.get("actor_type") != "Integration" for a in ruleset.get("bypass_actors") or []):
            continue
        ref_name = ruleset.get("conditions", {}).get("ref_name", {})
        for tag in wanted:
            if _matches(ref_name.get("include", []), tag) and not _matches(
                ref_name.get("exclude", []), tag
            ):
                guarding[tag].update(rule["type"] for rule in ruleset.get("rules", []))
    problems = []
    for tag, rules in guarding.items():
        lacking = [rule for rule in TAG_RULES if rule not in rules]
        if lacking:
            problems.append(
                f"tags {tag.removeprefix('refs/tags/')}: no active tag ruleset, bypassed by "
                f"GitHub Apps only, restricts its {', '.join(lacking)}"
            )
    return problems


def pattern_matches(pattern: str, path: str) -> bool:
    """Whether a CODEOWNERS PATTERN (gitignore syntax, as GitHub reads it) matches the file PATH."""
    if pattern.strip("/") in ("*", "**"):
        return True
    directory = pattern.endswith("/")
    bare = pattern.strip("/")
    anchored = pattern.startswith("/") or "/" in bare
    if directory:
        return path.startswith(f"{bare}/") if anchored else f"/{bare}/" in f"/{path}"
    if anchored:
        return fnmatch.fnmatchcase(path, bare) or path.startswith(f"{bare}/")
    return any(fnmatch.fnmatchcase(part, bare) for part in path.split("/"))


def owners(codeowners: str, path: str) -> list[str]:
    """The owners CODEOWNERS gives PATH: those of the last line whose pattern matches it."""
    found: list[str] = []
    for line in codeowners.splitlines():
        parts = line.split("#", 1)[0].split()
        if parts and pattern_matches(parts[0], path):
            found = parts[1:]
    return found


def check_codeowners(api: GitHub, repo: str) -> list[str]:
    branch = environments.load()[0].branch
    answer = api.get(f"/repos/{repo}/contents/.github/CODEOWNERS?ref={branch}")
    if not answer or "content" not in answer:
        return [f"codeowners {branch}: no .github/CODEOWNERS: nobody's review is required"]
    text = base64.b64decode(answer["content"]).decode("utf-8")
    problems = []
    for path in OWNED:
        names = owners(text, path)
        real = [name for name in names if not name.startswith(PLACEHOLDER_OWNER)]
        if not names:
            problems.append(f"codeowners {path}: no owner")
        elif not real:
            problems.append(f"codeowners {path}: only placeholder owners ({', '.join(names)})")
    errors = api.get(f"/repos/{repo}/codeowners/errors?ref={branch}") or {}
    for error in errors.get("errors", []):
        what = f"{error.get('kind')} {error.get('source', '')}".rstrip()
        problems.append(f"codeowners line {error.get('line')}: {what}")
    return problems


def check_actions(api: GitHub, repo: str) -> list[str]:
    settings = api.get(f"/repos/{repo}/actions/permissions/workflow") or {}
    problems = []
    if settings.get("default_workflow_permissions") != "read":
        problems.append(
            "actions: the default workflow token may write "
            f"({settings.get('default_workflow_permissions')!r}, must be 'read')"
        )
    if settings.get("can_approve_pull_request_reviews") is not False:
        problems.append("actions: workflows may approve pull requests (must not)")
    return problems


def check_image_signing(api: GitHub, repo: str) -> list[str]:
    """The image signing key (gitops.attestation): the GitHub environment that holds it lets
    only the first environment's branch (main) deploy, so no other branch's workflow and no pull
    request reads the secret; evidence.toml on that branch names its public key."""
    from gitops import attestation

    name, branch = attestation.ENVIRONMENT, environments.load()[0].branch
    where = f"image-signing {name}"
    found = api.get(f"/repos/{repo}/environments/{name}")
    problems = []
    if not found:
        problems.append(f"{where}: no such GitHub environment: promote.yml cannot sign images")
    else:
        policy = found.get("deployment_branch_policy") or {}
        names = []
        if policy.get("custom_branch_policies") is True:
            listed = api.get(f"/repos/{repo}/environments/{name}/deployment-branch-policies")
            names = sorted(
                f"{p.get('type', 'branch')}:{p.get('name')}"
                for p in (listed or {}).get("branch_policies", [])
            )
        if names != [f"branch:{branch}"]:
            every = "the protected branches" if policy.get("protected_branches") else "any branch"
            allowed = ", ".join(names) or every
            problems.append(
                f"{where}: deployment branches are {allowed}, must be {branch} only "
                "(else another branch's workflow reads IMAGE_SIGNING_KEY)"
            )
    answer = api.get(f"/repos/{repo}/contents/{attestation.FILE}?ref={branch}") or {}
    try:
        text = base64.b64decode(answer.get("content", "")).decode("utf-8")
        key = tomllib.loads(text).get("images", {}).get("public_key")
    except (ValueError, tomllib.TOMLDecodeError, AttributeError):
        key = None
    if not key:
        problems.append(
            f"image-signing {attestation.FILE}: {branch} names no [images] public_key: the "
            "image gate refuses every image (python -m gitops.attestation keygen)"
        )
    return problems


#: The app of apps (argocd/application.yaml): Argo CD's own configuration, argocd/ as the last
#: environment's branch has it.
APP_OF_APPS = "argocd/application.yaml"


def expected_applications() -> list[tuple[str, dict[str, str]]]:
    """(name, {field: value}) of every Application argocd/ makes: one per environment of
    environments.toml (the ApplicationSet's template), and the app of apps, which must read
    ``argocd`` from the last environment's branch."""
    appset = yaml.safe_load((ROOT / "argocd" / "applicationset.yaml").read_text(encoding="utf-8"))
    template = appset["spec"]["template"]
    found = [
        (
            template["metadata"]["name"].replace("{{ .env }}", env.name),
            {
                "project": template["spec"]["project"],
                "targetRevision": env.branch,
                "path": f"rendered/{env.name}",
                "namespace": env.namespace,
            },
        )
        for env in environments.load()
    ]
    app = yaml.safe_load((ROOT / APP_OF_APPS).read_text(encoding="utf-8"))
    found.append(
        (
            app["metadata"]["name"],
            {
                "project": app["spec"]["project"],
                "targetRevision": environments.load()[-1].branch,
                "path": "argocd",
                "namespace": app["spec"]["destination"]["namespace"],
            },
        )
    )
    return found


def check_applications(applications: dict[str, Any], repo: str) -> list[str]:
    """The Applications (a ``kubectl get -o json`` list) against environments.toml and argocd/."""
    by_name = {app["metadata"]["name"]: app for app in applications.get("items", [])}
    problems = []
    for name, wanted in expected_applications():
        app = by_name.get(name)
        if app is None:
            problems.append(f"argocd {name}: no such Application")
            continue
        spec = app.get("spec", {})
        source = spec.get("source", {})
        got = {
            "project": spec.get("project"),
            "targetRevision": source.get("targetRevision"),
            "path": source.get("path"),
            "namespace": spec.get("destination", {}).get("namespace"),
        }
        for field, value in wanted.items():
            if got[field] != value:
                problems.append(f"argocd {name}: {field} is {got[field]!r}, must be {value!r}")
        url = str(source.get("repoURL", "")).removesuffix(".git").rstrip("/")
        if not url.endswith(f"/{repo}") and not url.endswith(f":{repo}"):
            problems.append(f"argocd {name}: repoURL {source.get('repoURL')!r} is not {repo}")
        if not spec.get("syncPolicy", {}).get("automated"):
            problems.append(f"argocd {name}: no automated sync")
    return problems


def applications_from(path: Path | None, kubeconfig: Path | None) -> dict[str, Any] | None:
    if kubeconfig is not None:
        done = subprocess.run(
            ["kubectl", "--kubeconfig", str(kubeconfig), "get", "applications.argoproj.io",
             "-n", "argocd", "-o", "json"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise ToolError(f"kubectl get applications failed: {last}")
        text = done.stdout
    elif path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise ToolError(f"--applications {path}: {error.strerror}") from None
    else:
        return None
    try:
        found = json.loads(text)
    except json.JSONDecodeError as error:
        raise ToolError(f"the Applications are not JSON: {error}") from None
    if not isinstance(found, dict):
        raise ToolError("the Applications are not a kubectl list (an object with items)")
    return found


def main(argv: Sequence[str]) -> int:
    parser = OneLineParser(prog="python -m gitops.doctor", description=__doc__)
    parser.add_argument("repo", nargs="?", metavar="OWNER/NAME", help="the repository")
    parser.add_argument("--api", help="GitHub's REST API (GITHUB_API_URL, else GitHub's own)")
    parser.add_argument("--applications", type=Path, help="kubectl get applications -o json")
    parser.add_argument("--kubeconfig", type=Path, help="read the Applications with kubectl")
    parser.add_argument("--rulesets", action="store_true", help="print the rulesets to create")
    args = parser.parse_args(argv)
    if args.rulesets:
        for ruleset in rulesets(local_app_id()):
            print(json.dumps(ruleset, separators=(",", ":")))
        return 0
    if not args.repo or args.repo.count("/") != 1:
        parser.error("OWNER/NAME is required (the repository to check)")
    token = os.environ.get("GH_TOKEN") or os.environ.get("GITHUB_TOKEN") or ""
    if not token:
        raise ToolError("set GH_TOKEN (or GITHUB_TOKEN) to a token that can read the settings")
    api = GitHub(args.api or os.environ.get("GITHUB_API_URL") or DEFAULT_API, token)
    applications = applications_from(args.applications, args.kubeconfig)
    try:
        problems = (
            check_branches(api, args.repo)
            + check_evidence_environment(api, args.repo)
            + check_tags(api, args.repo)
            + check_codeowners(api, args.repo)
            + check_actions(api, args.repo)
            + check_image_signing(api, args.repo)
            + ([] if applications is None else check_applications(applications, args.repo))
        )
    except HTTPError as error:
        raise ToolError(
            f"{error}: the token needs read access to the repository's administration, "
            "contents, environments and actions settings"
        ) from None
    for problem in problems:
        print(problem)
    if not problems:
        print(f"ok: {args.repo} is set up as docs/workflow.md says")
    return 1 if problems else 0


if __name__ == "__main__":
    run_main(main)
