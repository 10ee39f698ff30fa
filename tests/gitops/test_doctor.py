"""gitops.doctor: a live repository's settings read back through GitHub's API, against the
stand-in for that API (tests/workflows/act/github_api.py) set up as docs/workflow.md's fork setup
sets a repository up: the rulesets ``gitops.doctor --rulesets`` prints, POSTed one by one; a
CODEOWNERS with the organisation's own teams; a read-only workflow token. Then each setting is
broken the way a hurried admin or a contributor with admin rights would, and the doctor must say
so in one line each and exit 1."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitops import doctor, environments
from tests.workflows.act.github_api import ACTIONS_APP, EVIDENCE_APP, GitHubApi
from tests.workflows.workflow_helpers import REPO, tool_env
from training.params import load_artifact

REPOSITORY = "acme/modelops"
TOKEN = "doctor-token-of-this-test"  # noqa: S105 - a test value, not a secret
SHIPPED_CODEOWNERS = (REPO / ".github" / "CODEOWNERS").read_text()
DEV, STAGING, PROD = environments.load()
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def post_ruleset(api: GitHubApi, document: str) -> None:
    """What ``gh api repos/OWNER/NAME/rulesets -X POST --input -`` sends for one ruleset."""
    request = urllib.request.Request(
        f"{api.url}/repos/{REPOSITORY}/rulesets",
        data=document.encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        method="POST",
    )
    with _OPENER.open(request, timeout=10) as answer:
        assert answer.status == 201


def set_evidence_toml(api: GitHubApi, branch: str, text: str | None) -> None:
    """evidence.toml on BRANCH as the contents API serves it (None: no such file)."""
    path = f"/repos/{REPOSITORY}/contents/evidence.toml?ref={branch}"
    if text is None:
        api.settings.pop(path, None)
        return
    api.settings[path] = {"content": base64.b64encode(text.encode()).decode(), "encoding": "base64"}


def set_evidence_environment(
    api: GitHubApi, policy: dict[str, bool] | None, branches: list[dict[str, str]]
) -> None:
    """The GitHub environment `evidence`: its deployment_branch_policy and custom policies."""
    base = f"/repos/{REPOSITORY}/environments/evidence"
    api.settings[base] = {"name": "evidence", "deployment_branch_policy": policy}
    api.settings[f"{base}/deployment-branch-policies"] = {
        "total_count": len(branches),
        "branch_policies": branches,
    }


def set_codeowners(api: GitHubApi, text: str) -> None:
    content = base64.b64encode(text.encode()).decode()
    api.settings[f"/repos/{REPOSITORY}/contents/.github/CODEOWNERS?ref=main"] = {
        "content": content,
        "encoding": "base64",
    }


def set_image_signing(api: GitHubApi, branches: list[str] | None, images: str) -> None:
    """The environment image-signing with BRANCHES as its deployment branches (None: every
    branch), and evidence.toml on main with IMAGES as its [images] table's body."""
    environment = f"/repos/{REPOSITORY}/environments/image-signing"
    custom = branches is not None
    api.settings[environment] = {
        "name": "image-signing",
        "deployment_branch_policy": {"protected_branches": False, "custom_branch_policies": custom},
    }
    api.settings[f"{environment}/deployment-branch-policies"] = {
        "branch_policies": [{"name": b, "type": "branch"} for b in branches or []]
    }
    set_evidence_toml(api, "main", f"[app]\nid = {EVIDENCE_APP['id']}\n\n[images]\n{images}\n")


@pytest.fixture
def api() -> Iterator[GitHubApi]:
    """The stand-in, set up as the docs say: the evidence App's id in evidence.toml on every
    environment branch, every ruleset the doctor prints for it, the environment `evidence` open
    to the environment branches only, the shipped CODEOWNERS with the placeholder teams
    replaced, the workflow token read-only."""
    with GitHubApi() as stand_in:
        for ruleset in doctor.rulesets(EVIDENCE_APP["id"]):
            post_ruleset(stand_in, json.dumps(ruleset))
        for env in environments.load():
            set_evidence_toml(stand_in, env.branch, f"[app]\nid = {EVIDENCE_APP['id']}\n")
        set_evidence_environment(
            stand_in,
            {"protected_branches": False, "custom_branch_policies": True},
            [{"name": env.branch, "type": "branch"} for env in environments.load()],
        )
        set_codeowners(stand_in, SHIPPED_CODEOWNERS.replace("@modelops/", "@acme/"))
        stand_in.settings[f"/repos/{REPOSITORY}/codeowners/errors?ref=main"] = {"errors": []}
        stand_in.settings[f"/repos/{REPOSITORY}/actions/permissions/workflow"] = {
            "default_workflow_permissions": "read",
            "can_approve_pull_request_reviews": False,
        }
        set_image_signing(stand_in, ["main"], 'public_key = "' + "A" * 43 + '="')
        yield stand_in


def run_doctor(*args: str, token: str = TOKEN) -> subprocess.CompletedProcess[str]:
    env = tool_env(GH_TOKEN=token)
    env.pop("GITHUB_TOKEN", None)
    for name in [name for name in env if name.lower().endswith("_proxy")]:
        del env[name]
    return subprocess.run(
        [sys.executable, "-m", "gitops.doctor", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def problems(api: GitHubApi, *args: str) -> list[str]:
    """The doctor's lines for the stand-in's repository: none (and status 0, one ok line) or
    some (and status 1)."""
    done = run_doctor(REPOSITORY, "--api", api.url, *args)
    lines = done.stdout.splitlines()
    assert done.stderr == ""
    if done.returncode == 0:
        assert lines == [f"ok: {REPOSITORY} is set up as docs/workflow.md says"]
        return []
    assert done.returncode == 1 and lines, done
    return lines


def ruleset(api: GitHubApi, name: str) -> dict[str, Any]:
    (found,) = [r for r in api.rulesets if r["name"] == name]
    return found


def applications() -> dict[str, Any]:
    """The Applications of argocd/, as ``kubectl get -o json`` lists them: argocd/ built with
    kustomize (the repoURL set from the AppProject), its ApplicationSet's list generator
    expanded into the template as Argo CD's ApplicationSet controller does, then the app of
    apps."""
    built = subprocess.run(
        ["kubectl", "kustomize", "argocd"],
        cwd=REPO, env=tool_env(), capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    (appset,) = [d for d in yaml.safe_load_all(built) if d and d["kind"] == "ApplicationSet"]
    template = json.dumps(appset["spec"]["template"])
    items = []
    for element in appset["spec"]["generators"][0]["list"]["elements"]:
        text = template
        for key, value in element.items():
            text = text.replace(f"{{{{ .{key} }}}}", value)
        items.append(
            {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", **json.loads(text)}
        )
    items += [d for d in yaml.safe_load_all(built) if d and d["kind"] == "Application"]
    return {"apiVersion": "v1", "kind": "List", "items": items}


def test_a_fork_set_up_as_the_docs_say_passes(api: GitHubApi) -> None:
    assert problems(api) == []


def test_every_check_that_guards_a_branch_is_required_and_verify_only_after_dev() -> None:
    assert doctor.required_checks(DEV) == ["unit", "integration", "e2e", "order"]
    assert doctor.required_checks(PROD) == ["unit", "integration", "e2e", "order", "verify"]


def test_a_promotion_branch_without_verify_or_with_a_bypass_is_reported_per_branch(
    api: GitHubApi,
) -> None:
    promoted = ruleset(api, "environments: promoted")
    checks = promoted["rules"][3]["parameters"]["required_status_checks"]
    checks.remove({"context": "verify", "integration_id": EVIDENCE_APP["id"]})
    ruleset(api, "environments: first")["bypass_actors"].append(
        {"actor_id": 5, "actor_type": "RepositoryRole", "bypass_mode": "always"}
    )
    assert problems(api) == [
        "rulesets main: ruleset 'environments: first' can be bypassed by RepositoryRole 5",
        "rulesets staging: required status checks lack verify",
        "rulesets production: required status checks lack verify",
    ]


def test_the_rulesets_pin_order_and_verify_to_the_evidence_app_and_the_tiers_to_actions() -> None:
    first, promoted, _ = doctor.rulesets(EVIDENCE_APP["id"])
    checks = {
        name: {(c["context"], c["integration_id"]) for c in r["rules"][3]["parameters"][
            "required_status_checks"]}
        for name, r in (("first", first), ("promoted", promoted))
    }  # fmt: skip
    tiers = {(tier, ACTIONS_APP["id"]) for tier in ("unit", "integration", "e2e")}
    assert checks["first"] == tiers | {("order", EVIDENCE_APP["id"])}
    assert checks["promoted"] == tiers | {("order", EVIDENCE_APP["id"]), ("verify", 424242)}


def test_rulesets_are_not_printed_while_evidence_toml_names_no_app() -> None:
    """The checkout's evidence.toml as the repository ships it (id 0): the rulesets would pin
    order and verify to no App."""
    done = run_doctor("--rulesets")
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        "error: evidence.toml on this checkout: app.id must be the evidence GitHub App's id (a "
        "positive integer), got 0: docs/workflow.md, Evidence\n"
    )


def test_required_checks_not_pinned_to_their_app_are_reported(api: GitHubApi) -> None:
    """A required check any identity may satisfy (no integration_id: a status `order` the
    workflow token of a pull request's own workflow posts would count), one pinned to the
    GitHub Actions app instead of the evidence App, and a tier pinned to another app."""
    first = ruleset(api, "environments: first")["rules"][3]["parameters"]
    promoted = ruleset(api, "environments: promoted")["rules"][3]["parameters"]
    for check in first["required_status_checks"]:
        if check["context"] == "order":
            del check["integration_id"]
    for check in promoted["required_status_checks"]:
        if check["context"] in ("verify", "unit"):
            check["integration_id"] = {"verify": ACTIONS_APP["id"], "unit": 999}[check["context"]]
    assert problems(api) == [
        "rulesets main: required check order must come from the evidence App (integration_id "
        "424242), not None",
        "rulesets staging: required check unit must come from GitHub Actions (integration_id "
        "15368), not 999",
        "rulesets staging: required check verify must come from the evidence App "
        "(integration_id 424242), not 15368",
        "rulesets production: required check unit must come from GitHub Actions (integration_id "
        "15368), not 999",
        "rulesets production: required check verify must come from the evidence App "
        "(integration_id 424242), not 15368",
    ]


def test_an_evidence_app_not_set_up_on_a_branch_is_reported(api: GitHubApi) -> None:
    """evidence.toml as the repository ships it on staging (id 0), none on production, and
    main naming another App than the one its required checks are pinned to."""
    set_evidence_toml(api, "main", "[app]\nid = 7\n")
    set_evidence_toml(api, "staging", (REPO / "evidence.toml").read_text())
    set_evidence_toml(api, "production", None)
    assert problems(api) == [
        "rulesets main: required check order must come from the evidence App (integration_id "
        "7), not 424242",
        "evidence staging: app.id must be the evidence GitHub App's id (a positive integer), got "
        "0: docs/workflow.md, Evidence",
        "evidence production: no evidence.toml: the smoke gate accepts no evidence",
        "image-signing evidence.toml: main names no [images] public_key: the image gate refuses "
        "every image (python -m gitops.attestation keygen)",
    ]


@pytest.mark.parametrize(
    ("policy", "branches", "line"),
    [
        (None, [], "any branch may deploy to it (must be main, staging, production only)"),
        (
            {"protected_branches": True, "custom_branch_policies": False},
            [],
            "deployment branches are 'protected branches', which is not this flow's rulesets: "
            "list main, staging, production by name",
        ),
        (
            {"protected_branches": False, "custom_branch_policies": True},
            [{"name": "main", "type": "branch"}, {"name": "promote/*", "type": "branch"}],
            "deployment branch policy 'promote/*' lets other refs take the App's key (must be "
            "main, staging, production only)",
        ),
        (
            {"protected_branches": False, "custom_branch_policies": True},
            [{"name": "main", "type": "tag"}],
            "deployment tag policy 'main' lets other refs take the App's key (must be main, "
            "staging, production only)",
        ),
    ],
    ids=["every-branch", "protected-branches", "a-pattern", "a-tag"],
)
def test_an_evidence_environment_other_refs_may_use_is_reported(
    api: GitHubApi, policy: dict[str, bool] | None, branches: list[dict[str, str]], line: str
) -> None:
    set_evidence_environment(api, policy, branches)
    assert problems(api) == [f"environment evidence: {line}"]


def test_a_missing_evidence_environment_is_reported(api: GitHubApi) -> None:
    del api.settings[f"/repos/{REPOSITORY}/environments/evidence"]
    assert problems(api) == [
        "environment evidence: missing: create it with deployment branches main, staging, "
        "production only"
    ]


def test_branches_without_rules_and_a_weak_review_rule_are_reported(api: GitHubApi) -> None:
    ruleset(api, "environments: promoted")["enforcement"] = "evaluate"  # a dry run only
    first = ruleset(api, "environments: first")
    first["rules"][2]["parameters"]["require_code_owner_review"] = False
    first["rules"] = [rule for rule in first["rules"] if rule["type"] != "non_fast_forward"]
    lines = problems(api)
    assert lines[:2] == [
        "rulesets main: no active non_fast_forward rule",
        "rulesets main: pull_request require_code_owner_review is False, must be True",
    ]
    for branch in ("staging", "production"):
        assert f"rulesets {branch}: no active pull_request rule" in lines
        assert (
            f"rulesets {branch}: required status checks lack unit, integration, e2e, order, verify"
            in lines
        )
    assert len(lines) == 2 + 2 * 5


def test_gto_tags_anyone_may_push_are_reported(api: GitHubApi) -> None:
    tags = ruleset(api, "model registry tags")
    tags["bypass_actors"].append({"actor_id": 1, "actor_type": "OrganizationAdmin"})
    assert problems(api) == [
        f"tags {name}: no active tag ruleset, bypassed by GitHub Apps only, restricts its "
        "creation, update, deletion"
        for name in (f"{load_artifact().name}@v0.0.0", f"{load_artifact().name}#prod#1")
    ]


def test_codeowners_as_shipped_and_a_writable_token_are_reported(api: GitHubApi) -> None:
    set_codeowners(api, SHIPPED_CODEOWNERS)
    api.settings[f"/repos/{REPOSITORY}/codeowners/errors?ref=main"] = {
        "errors": [{"line": 5, "kind": "Unknown owner", "source": "@modelops/platform"}]
    }
    api.settings[f"/repos/{REPOSITORY}/actions/permissions/workflow"] = {
        "default_workflow_permissions": "write",
        "can_approve_pull_request_reviews": True,
    }
    assert problems(api) == [
        "codeowners .github/workflows/ci.yml: only placeholder owners (@modelops/platform)",
        "codeowners .github/CODEOWNERS: only placeholder owners (@modelops/platform)",
        "codeowners argocd/applicationset.yaml: only placeholder owners (@modelops/platform)",
        "codeowners gitops/check_pr_order.py: only placeholder owners (@modelops/platform)",
        "codeowners environments.toml: only placeholder owners (@modelops/platform)",
        "codeowners evidence.toml: only placeholder owners (@modelops/platform)",
        "codeowners line 5: Unknown owner @modelops/platform",
        "actions: the default workflow token may write ('write', must be 'read')",
        "actions: workflows may approve pull requests (must not)",
    ]


def test_argo_cd_applications_are_checked_against_environments_toml(
    api: GitHubApi, tmp_path: Path
) -> None:
    """argocd/ as shipped names example-org/modelops; a fork sets its own URL there."""
    listed = applications()
    path = tmp_path / "applications.json"
    done = run_doctor(REPOSITORY, "--api", api.url, "--applications", str(path))
    assert (done.returncode, done.stderr) == (
        1,
        f"error: --applications {path}: No such file or directory\n",
    )
    path.write_text(json.dumps(listed))
    assert problems(api, "--applications", str(path)) == [
        f"argocd {name}: repoURL 'https://github.com/example-org/modelops.git' is not {REPOSITORY}"
        for name in ("model-dev", "model-staging", "model-prod", "modelops-argocd")
    ]
    for item in listed["items"]:
        item["spec"]["source"]["repoURL"] = f"https://github.com/{REPOSITORY}.git"
    path.write_text(json.dumps(listed))
    assert problems(api, "--applications", str(path)) == []
    prod = listed["items"][2]
    prod["spec"]["source"]["targetRevision"] = "main"
    del prod["spec"]["syncPolicy"]["automated"]
    path.write_text(json.dumps(listed))
    assert problems(api, "--applications", str(path)) == [
        "argocd model-prod: targetRevision is 'main', must be 'production'",
        "argocd model-prod: no automated sync",
    ]
    prod["spec"]["source"]["targetRevision"] = "production"
    prod["spec"]["syncPolicy"]["automated"] = {"prune": True, "selfHeal": True}
    # The app of apps reading argocd/ from main (a merged, unpromoted change would reach the
    # cluster) or another directory is reported.
    app_of_apps = listed["items"][3]
    app_of_apps["spec"]["source"].update(targetRevision="main", path="rendered/prod")
    path.write_text(json.dumps(listed))
    assert problems(api, "--applications", str(path)) == [
        "argocd modelops-argocd: targetRevision is 'main', must be 'production'",
        "argocd modelops-argocd: path is 'rendered/prod', must be 'argocd'",
    ]
    listed["items"] = listed["items"][:2]
    path.write_text(json.dumps(listed))
    assert problems(api, "--applications", str(path)) == [
        "argocd model-prod: no such Application",
        "argocd modelops-argocd: no such Application",
    ]


def test_a_missing_token_or_a_refusing_api_is_one_line_and_status_1(api: GitHubApi) -> None:
    done = run_doctor(REPOSITORY, "--api", api.url, token="")
    assert (done.returncode, done.stderr) == (
        1,
        "error: set GH_TOKEN (or GITHUB_TOKEN) to a token that can read the settings\n",
    )
    api.status_of_gets = 403
    done = run_doctor(REPOSITORY, "--api", api.url)
    assert done.returncode == 1 and len(done.stderr.splitlines()) == 1
    assert done.stderr.startswith(f"error: GitHub answered 403 to GET /repos/{REPOSITORY}/")


def test_the_docs_create_the_rulesets_with_the_doctor_and_end_the_fork_setup_with_it() -> None:
    text = (REPO / "docs" / "workflow.md").read_text()
    assert "python -m gitops.doctor --rulesets |" in text
    assert '"required_status_checks"' not in text  # no second copy of the rulesets
    setup = text.split("### Setting it up in a fork", 1)[1].split("\n#", 1)[0]
    steps = [line for line in setup.splitlines() if line[:1].isdigit()]
    assert "python -m gitops.doctor OWNER/NAME" in steps[-1]


def test_an_image_signing_key_other_branches_can_read_or_no_public_key_is_reported(
    api: GitHubApi,
) -> None:
    """The key's environment open to every branch (a contributor's own workflow on their branch
    would read the secret and sign any image), or to an experiment's too, and no public key."""
    set_image_signing(api, None, "")
    assert problems(api) == [
        "image-signing image-signing: deployment branches are any branch, must be main only "
        "(else another branch's workflow reads IMAGE_SIGNING_KEY)",
        "image-signing evidence.toml: main names no [images] public_key: the image gate refuses "
        "every image (python -m gitops.attestation keygen)",
    ]
    set_image_signing(api, ["main", "experiment/*"], 'public_key = "key"')
    assert problems(api) == [
        "image-signing image-signing: deployment branches are branch:experiment/*, branch:main, "
        "must be main only (else another branch's workflow reads IMAGE_SIGNING_KEY)",
    ]
    del api.settings[f"/repos/{REPOSITORY}/environments/image-signing"]
    assert problems(api) == [
        "image-signing image-signing: no such GitHub environment: promote.yml cannot sign images"
    ]
