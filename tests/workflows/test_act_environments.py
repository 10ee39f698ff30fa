"""environments.yml run by act: a promotion proposed by hand (workflow_dispatch), its pull request
verified (pull_request_target into staging: the base branch's workflow file, as GitHub plays it),
and the stage job after the merge (push to staging).

The sandbox is a clone of HEAD with a bare origin holding main, staging and production, set up
as a fork sets itself up (docs/workflow.md): the evidence App and CI's image signing key in
evidence.toml on main, the dev overlay pulling from the suite's loopback registry (the variable
IMAGE_REGISTRY; the runs read it over plain HTTP, MODELOPS_REGISTRY_TLS_VERIFY=false). Dev runs
v0.1.0 as promote.yml's run and its deploy pull request leave it: CI's image of the commit in the
registry with its signed build attestation (tests/registry_kit.py, Signer.built), which every
promotion's image gate reads back by digest, then gitops.set_image, gitops.rendered, merged,
gitops.assign_stage. GitHub's REST API is the stand-in tests/workflows/act/github_api.py (the
evidence App with its key, the run's token as the GitHub Actions app's) and the environments'
Services the stand-in tests/workflows/act/deployed.py, which serves what each branch renders in
the origin (an automated sync). Each merge's push runs the smoke job, which smoke-tests the
environment and records the check run the next promotion's smoke gate reads; so does the
repository_dispatch environment-synced that Argo CD's notification (argocd/notifications.yaml,
its request rendered by tests/deploy/notifications.py) makes GitHub deliver. The walks then run
the workflow file; after each one the test reads the origin (branches, tags), the check runs,
and the pull request the gh stand-in recorded.
"""

import json
import re
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from act_harness import OWNER_NAME, TOKEN, ActRun, Sandbox, pull_request_payload, run_act
from workflow_helpers import REPO, git, run_tool, set_up_as_a_fork, tool_env

from gitops import attestation, environments, evidence, rendered
from tests.deploy import notifications
from tests.registry_kit import Signer, push_image
from tests.workflows.act import deployed as deployed_standin
from tests.workflows.act import github_api
from training.params import load_artifact

pytestmark = pytest.mark.integration  # act running real git, GTO and kustomize

NAME = load_artifact().name  # the sandbox is a clone of HEAD
ORDER = environments.load()
DEV, STAGING, PROD = ORDER
# The walks follow one another on one sandbox, in the order of this file (as a team would run them).
MODEL_SHA256 = "5e" * 32


def sh(sandbox: Sandbox, *args: str) -> str:
    done = subprocess.run(args, cwd=sandbox.work, env=tool_env(), capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(args)}: {done.stderr}"
    return done.stdout


def mirror_origin(sandbox: Sandbox) -> None:
    """The act checkouts clone the sandbox clone: give it every ref the origin has, as GitHub
    would serve them."""
    git(sandbox.work, "fetch", "-q", "--update-head-ok", "--tags", "--force", "origin",
        "+refs/heads/*:refs/heads/*", "+refs/notes/*:refs/notes/*")  # fmt: skip


class GitHub:
    """What stands in for GitHub and the clusters in these walks, started once for the module,
    and the registry CI pushes its images to (IMAGE_REGISTRY, the suite's loopback one) with CI's
    signing key; `built` maps each model version deployed to dev to (commit, image digest)."""

    def __init__(
        self,
        api: github_api.GitHubApi,
        services: deployed_standin.Deployed,
        registry: str,
        signer: Signer,
    ) -> None:
        self.api, self.services, self.registry, self.signer = api, services, registry, signer
        self.built: dict[str, tuple[str, str]] = {}

    def options(self) -> dict[str, Any]:
        """run_act's options: the API, the variables SMOKE_URLS and IMAGE_REGISTRY, the evidence
        App's key, and the runner's MODELOPS_REGISTRY_TLS_VERIFY=false (a plain-HTTP registry)."""
        urls = " ".join(f"{env.name}={self.services.url_of(env.name)}" for env in ORDER)
        return {
            "api": self.api.url,
            "variables": {"SMOKE_URLS": urls, "IMAGE_REGISTRY": self.registry},
            "secrets": {"EVIDENCE_APP_KEY": github_api.EVIDENCE_KEY},
            "env": {"MODELOPS_REGISTRY_TLS_VERIFY": "false"},
        }

    def smoke_runs(self, env: environments.Environment) -> list[tuple[str, str]]:
        """(head sha, conclusion) of every check run smoke/ENV, oldest first, with the app."""
        name = evidence.check_name(env)
        return [
            (run["head_sha"], run["conclusion"])
            for run in self.api.check_runs
            if run["name"] == name and run["app"]["id"] == github_api.EVIDENCE_APP["id"]
        ]


GITHUB: list[GitHub] = []  # the module's stand-ins, set by the fixture `stand_ins`


def act(sandbox: Sandbox, event: str, **options: Any) -> ActRun:
    """run_act on environments.yml with the module's stand-ins for GitHub and the clusters."""
    return run_act(sandbox, event, workflow="environments.yml", **GITHUB[0].options(), **options)


def dispatch(sandbox: Sandbox, environment: str, action: str, version: str = "") -> ActRun:
    """`Run workflow` on environments.yml with these inputs."""
    event = sandbox.root / f"dispatch-{environment}-{action}.json"
    inputs = {"environment": environment, "action": action, "version": version}
    event.write_text(json.dumps({"inputs": inputs}))
    return act(sandbox, "workflow_dispatch", payload=event)


def verify(
    sandbox: Sandbox,
    branch: str,
    env: environments.Environment,
    head: str,
    event: str = "pull_request_target",
) -> ActRun:
    """The pull request of BRANCH (head HEAD) into ENV's branch, as environments.yml sees it on
    EVENT (GitHub's: pull_request_target); the harness makes its refs/pull/N/*."""
    base = git(sandbox.origin, "rev-parse", env.branch).strip()
    mirror_origin(sandbox)
    number = len(list(sandbox.root.glob("pull-request-*.json"))) + 11
    payload = pull_request_payload(
        number=number, head_ref=branch, base_ref=env.branch, head_sha=head, base_sha=base
    )
    path = sandbox.root / f"pull-request-{number}.json"
    path.write_text(json.dumps(payload))
    return act(sandbox, event, payload=path)


def verify_statuses(sandbox: Sandbox) -> list[tuple[str, str]]:
    """The commit statuses the last run posted: (sha, state), each with the context verify and
    a token of the evidence App (the required check is pinned to it)."""
    calls = [c for c in sandbox.calls() if c["argv"][:1] == ["api"]]
    posted = [c["argv"] for c in calls]
    fields = [dict(f.split("=", 1) for f in argv[5::2]) for argv in posted]
    assert {f["context"] for f in fields} <= {"verify"}, posted
    apps = [GITHUB[0].api.identities[c["env"]["GH_TOKEN"]]["app"] for c in calls]
    assert all(app["id"] == github_api.EVIDENCE_APP["id"] for app in apps), apps
    return [(argv[3].rsplit("/", 1)[1], f["state"]) for argv, f in zip(posted, fields, strict=True)]


def merge(sandbox: Sandbox, branch: str, env: environments.Environment) -> ActRun:
    """Merge BRANCH into ENV's branch (a fast-forward), then run the push event it causes."""
    head = git(sandbox.origin, "rev-parse", branch).strip()
    base = git(sandbox.origin, "rev-parse", env.branch).strip()
    git(sandbox.origin, "update-ref", f"refs/heads/{env.branch}", head, base)
    return pushed(sandbox, env, base, head)


def pushed(sandbox: Sandbox, env: environments.Environment, base: str, head: str) -> ActRun:
    """The push event of ENV's branch moving from BASE to HEAD in the origin: the stage job and
    the smoke job."""
    mirror_origin(sandbox)
    git(sandbox.work, "switch", "-q", env.branch)
    # The ref in the payload: act would otherwise guess it from the branches at HEAD.
    event = sandbox.root / f"push-{env.branch}.json"
    event.write_text(json.dumps({"ref": f"refs/heads/{env.branch}", "before": base, "after": head}))
    try:
        return act(sandbox, "push", payload=event)
    finally:
        git(sandbox.work, "switch", "-q", "main")


def read_rendered(sandbox: Sandbox) -> Callable[[str], str | None]:
    """What each environment's Service serves: its rendered file on its branch in the origin."""

    def read(name: str) -> str | None:
        env = environments.named(name)
        done = subprocess.run(
            ["git", "show", f"{env.branch}:{rendered.path(env)}"],
            cwd=sandbox.origin, capture_output=True, text=True,
        )  # fmt: skip
        return done.stdout if done.returncode == 0 else None

    return read


def stage_holder(sandbox: Sandbox, env: environments.Environment) -> str:
    mirror_origin(sandbox)
    return sh(sandbox, "gto", "show", f"{NAME}#{env.stage}", "--ref").strip()


def image_name() -> str:
    """The image CI pushes and dev's overlay pulls: IMAGE_REGISTRY/modelops/model-server."""
    return f"{GITHUB[0].registry}/modelops/model-server"


def deploy_to_dev(sandbox: Sandbox, version: str, model_sha256: str) -> ActRun:
    """What promote.yml's run on main's tip and the merge of its deploy pull request leave: the
    model VERSION registered at that commit, CI's image of it in the registry, tagged with it and
    signed (Signer.built), dev's overlay pinning its digest (with the model MODEL_SHA256) and
    rendered, pushed to main with dev's GTO stage; then the push event's run (stage, smoke)."""
    work = sandbox.work
    sh(sandbox, "gto", "register", NAME, "HEAD", "--version", version)
    commit = git(work, "rev-parse", "HEAD").strip()
    digest = GITHUB[0].signer.built(image_name(), commit, sandbox.root / "images")
    GITHUB[0].built[version] = (commit, digest)
    for args in (
        ("set_image", "--digest", digest, "--model-version", version,
         "--model-sha256", model_sha256, "dev", commit),
        ("rendered", "dev"),
    ):  # fmt: skip
        run_tool(*args, cwd=work)
    git(work, "commit", "-qam", f"deploy(dev): {version}")
    base = git(sandbox.origin, "rev-parse", "main").strip()
    git(work, "push", "-q", "--tags", "origin", "main")
    run_tool("assign_stage", "dev", "--push", "origin", cwd=work)
    return pushed(sandbox, DEV, base, git(work, "rev-parse", "HEAD").strip())


@pytest.fixture(scope="module")
def stand_ins(
    new_sandbox: Callable[[str], Sandbox],
    loopback_registry: str,
    monkeypatch_module: pytest.MonkeyPatch,
) -> Iterator[tuple[Sandbox, GitHub]]:
    """The module's sandbox, GitHub's API (the evidence App installed), the Services, and the
    registry with CI's signing key."""
    sandbox = new_sandbox("environments")
    with (
        github_api.GitHubApi() as api,
        deployed_standin.Deployed(read_rendered(sandbox)) as services,
    ):
        api.add_app(github_api.EVIDENCE_APP["id"], "modelops-evidence", github_api.EVIDENCE_KEY)
        api.add_app_token(TOKEN, github_api.ACTIONS_APP)
        # the tools the walks run outside act (a promotion by hand) read the same API
        monkeypatch_module.setenv("GITHUB_API_URL", api.url)
        monkeypatch_module.setenv("GITHUB_REPOSITORY", "acme/modelops")
        monkeypatch_module.setenv("GH_TOKEN", TOKEN)
        # ... and the registry, over plain HTTP (the signing too)
        monkeypatch_module.setenv("MODELOPS_REGISTRY_TLS_VERIFY", "false")
        GITHUB[:] = [GitHub(api, services, f"{loopback_registry}/acme", Signer())]
        yield sandbox, GITHUB[0]
        GITHUB.clear()


@pytest.fixture(scope="module")
def dev_runs_a_release(
    stand_ins: tuple[Sandbox, GitHub], monkeypatch_module: pytest.MonkeyPatch
) -> Sandbox:
    sandbox, github = stand_ins
    work = sandbox.work
    git(work, "config", "user.name", "test")
    git(work, "config", "user.email", "test@example.org")
    fork = github.signer.evidence_toml(github_api.EVIDENCE_APP["id"])
    set_up_as_a_fork(work, github.registry, fork)
    git(work, "push", "-q", "origin", "HEAD:refs/heads/main", "HEAD:refs/heads/staging",
        "HEAD:refs/heads/production")  # fmt: skip
    run = deploy_to_dev(sandbox, "v0.1.0", MODEL_SHA256)
    assert run.returncode == 0, run.output
    head = git(sandbox.origin, "rev-parse", "main").strip()
    assert github.smoke_runs(DEV) == [(head, "success")], run.output
    monkeypatch_module.chdir(work)
    return sandbox


@pytest.fixture(scope="module")
def monkeypatch_module() -> pytest.MonkeyPatch:
    patch = pytest.MonkeyPatch()
    yield patch
    patch.undo()


@pytest.fixture(scope="module")
def proposed(dev_runs_a_release: Sandbox) -> tuple[Sandbox, str]:
    """The walk of `Run workflow: staging, promote`: the sandbox and the pushed branch."""
    sandbox = dev_runs_a_release
    run = dispatch(sandbox, "staging", "promote")
    assert run.returncode == 0, run.output
    (branch,) = sandbox.origin_refs("refs/heads/promote/")
    return sandbox, branch.removeprefix("refs/heads/")


def test_a_promotion_run_by_hand_pushes_one_branch_and_opens_its_pull_request(
    proposed: tuple[Sandbox, str],
) -> None:
    sandbox, branch = proposed
    assert branch.startswith("promote/staging/")
    (call,) = [c for c in sandbox.calls() if c["argv"][:2] == ["pr", "create"]]
    argv = call["argv"]
    assert argv[argv.index("--base") + 1] == "staging"
    assert argv[argv.index("--head") + 1] == branch
    body = argv[argv.index("--body") + 1]
    commit, digest = GITHUB[0].built["v0.1.0"]
    assert f"+++ b/{rendered.path(STAGING)}" in body
    assert f"@{digest}" in body and "| smoke |" in body
    # the image gate read CI's attestation of that digest back from the registry
    assert f"| image | {digest[:19]} built by CI from {commit[:12]} (" in body, body
    promoted = git(sandbox.origin, "show", f"{branch}:{rendered.path(STAGING)}")
    release = rendered.release(promoted)
    assert (release.image, release.model_version, release.model_sha256) == (
        f"{image_name()}:{commit}@{digest}", "v0.1.0", MODEL_SHA256)  # fmt: skip
    assert release.namespace == STAGING.namespace


def test_the_verify_check_passes_the_promotion_and_the_stage_job_follows_the_merge(
    proposed: tuple[Sandbox, str],
) -> None:
    sandbox, branch = proposed
    head = git(sandbox.origin, "rev-parse", branch).strip()
    run = verify(sandbox, branch, STAGING, head)
    assert run.returncode == 0, run.output
    assert f"ok: {head[:12]} promotes dev's release to staging, every gate passed" in run.output
    assert verify_statuses(sandbox) == [(head, "success")]
    run = merge(sandbox, branch, STAGING)
    assert run.returncode == 0, run.output
    # GTO numbers the assignments of an artifact across its stages: dev had #1
    staging = [t for t in sandbox.origin_refs("refs/tags/") if f"{NAME}#staging#" in t]
    assert staging == [f"refs/tags/{NAME}#staging#2"], run.output
    assert stage_holder(sandbox, STAGING) == f"{NAME}@v0.1.0"


def synced(sandbox: Sandbox, name: str, revision: str) -> ActRun:
    """Argo CD's notification that the environment NAME synced REVISION and is healthy: the
    request argocd/notifications.yaml's template renders for that environment's Application
    (the ApplicationSet's, reading this sandbox's repository), as the repository_dispatch GitHub
    delivers, run by act on environments.yml as main has it (GitHub's default branch)."""
    appset = yaml.safe_load((REPO / "argocd" / "applicationset.yaml").read_text())
    known = {e["env"]: e for e in appset["spec"]["generators"][0]["list"]["elements"]}
    # An environment the ApplicationSet lacks gets an element as one would be written for it.
    element = known.get(name, {"env": name, "branch": name, "namespace": name})
    template = json.dumps(appset["spec"]["template"])
    app = json.loads(re.sub(r"\{\{ \.(\w+) \}\}", lambda m: element[m[1]], template))
    app["spec"]["source"]["repoURL"] = f"https://github.com/{OWNER_NAME}.git"
    (request,) = notifications.requests(notifications.synced(app, revision))
    event = sandbox.root / f"synced-{name}.json"
    event.write_bytes(github_api.repository_dispatch_event(request))
    mirror_origin(sandbox)
    return act(sandbox, "repository_dispatch", payload=event)


def test_argo_cds_notification_that_staging_synced_records_its_smoke_test_as_the_app(
    proposed: tuple[Sandbox, str],
) -> None:
    """The dispatch names staging and a revision of its own (here main's tip, which staging does
    not run): the smoke job tests staging's branch at its tip, not the payload's revision, and
    records smoke/staging there as the evidence App."""
    sandbox, branch = proposed
    if git(sandbox.origin, "rev-parse", "staging") != git(sandbox.origin, "rev-parse", branch):
        merge(sandbox, branch, STAGING)  # this walk alone: the merge of the walk above
    staging = git(sandbox.origin, "rev-parse", STAGING.branch).strip()
    main = git(sandbox.origin, "rev-parse", DEV.branch).strip()
    assert main != staging
    before = len(GITHUB[0].api.check_runs)
    run = synced(sandbox, STAGING.name, revision=main)
    assert run.returncode == 0, run.output[-3000:]
    assert f"smoke-testing {STAGING.name} at refs/heads/{STAGING.branch}" in run.output
    new = GITHUB[0].api.check_runs[before:]
    assert [(r["name"], r["head_sha"], r["app"]["id"]) for r in new] == [
        (evidence.check_name(STAGING), staging, github_api.EVIDENCE_APP["id"])
    ]
    assert new[0]["conclusion"] == "success"


def test_a_notification_naming_no_environment_fails_in_one_line_and_records_nothing(
    dev_runs_a_release: Sandbox,
) -> None:
    sandbox = dev_runs_a_release
    before = len(GITHUB[0].api.check_runs)
    run = synced(sandbox, "qa", revision="0" * 40)
    assert run.returncode == 1, run.output[-3000:]
    assert re.findall(r"\| (error: .*)", run.output) == [
        "error: no environment 'qa' (one of dev, staging, prod)"
    ]
    assert not run.step_started("A token of the evidence App (checks write, nothing else)")
    assert GITHUB[0].api.check_runs[before:] == []


def test_the_verify_check_fails_a_hand_edited_promotion(proposed: tuple[Sandbox, str]) -> None:
    sandbox, branch = proposed
    work = sandbox.work
    git(work, "switch", "-q", "--detach", git(sandbox.origin, "rev-parse", branch).strip())
    try:
        path = work / rendered.path(STAGING)
        path.write_text(path.read_text().replace("maxReplicas: 4", "maxReplicas: 40"))
        git(work, "commit", "-qam", "promote(staging): more replicas, quietly")
        head = git(work, "rev-parse", "HEAD").strip()
    finally:
        git(work, "switch", "-q", "main")
    run = verify(sandbox, branch, STAGING, head)
    assert run.returncode == 1, run.output
    assert f"error: verify: {head[:12]} is not a promotion onto staging's tip" in run.output
    assert verify_statuses(sandbox) == [(head, "failure")]


def switched_off(sandbox: Sandbox) -> str:
    """environments.yml as main has it, edited as a pull request that switches off verify would:
    on pull_request (under which GitHub runs the pull request's own copy), verify's check step
    `true`."""
    document = yaml.safe_load(
        git(sandbox.origin, "show", "main:.github/workflows/environments.yml")
    )
    on = document.pop(True)  # `on:` loads as True
    on["pull_request"] = on.pop("pull_request_target")
    for job in document["jobs"].values():
        job["if"] = job["if"].replace("'pull_request_target'", "'pull_request'")
    steps = document["jobs"]["verify"]["steps"]
    [step for step in steps if "run" in step and "app-id" not in step["run"]][-1]["run"] = "true"
    return yaml.safe_dump({"name": document.pop("name"), "on": on, **document}, sort_keys=False)


def test_a_promotion_that_switches_off_verify_in_its_own_tree_is_still_refused(
    proposed: tuple[Sandbox, str],
) -> None:
    """promote/prod/* onto production's tip pinning a digest no environment ran in rendered/prod,
    its environments.yml running verify on pull_request as `true`, its Makefile and
    gitops/promote.py writing a marker and passing. GitHub plays it on pull_request_target: the
    base's file and tools refuse it, and none of its code runs. On pull_request, the trigger
    verify had before, its own copy runs and passes, but cannot post the status: the evidence
    App's key is not given to a pull_request run."""
    sandbox, _ = proposed
    work = sandbox.work
    marker = sandbox.root / "the-pull-requests-code-ran"
    mirror_origin(sandbox)
    git(work, "switch", "-q", "--detach", git(sandbox.origin, "rev-parse", PROD.branch).strip())
    try:
        staging = git(work, "show", f"{STAGING.branch}:{rendered.path(STAGING)}")
        pinned = re.sub(r"@sha256:[0-9a-f]{64}", "@sha256:" + "ee" * 32, staging, count=1)
        assert pinned != staging
        files = {
            rendered.path(PROD): pinned,
            ".github/workflows/environments.yml": switched_off(sandbox),
            "Makefile": f"venv tools:\n\techo make > {marker}\n",
            "gitops/promote.py": (
                f"from pathlib import Path\nPath({str(marker)!r}).write_text('promote')\n"
            ),
        }
        for path, text in files.items():
            (work / path).parent.mkdir(parents=True, exist_ok=True)
            (work / path).write_text(text)
        git(work, "add", *files)
        git(work, "commit", "-qm", f"promote(prod): image sha256:{'ee' * 32}")
        head = git(work, "rev-parse", "HEAD").strip()
    finally:
        git(work, "switch", "-q", "main")
    branch = "promote/prod/0123456789ab"

    run = verify(sandbox, branch, PROD, head)
    assert run.returncode == 1, run.output
    assert f"error: verify: {head[:12]} is not a promotion onto production's tip" in run.output
    assert verify_statuses(sandbox) == [(head, "failure")]
    assert not marker.exists()

    # Its own copy on pull_request passes its `true`, but GitHub gives a pull_request run
    # (refs/pull/N/merge) no job of the environment `evidence`: no App token, no status.
    run = verify(sandbox, branch, PROD, head, event="pull_request")
    assert run.returncode == 1, run.output
    assert "error: verify" not in run.output
    assert "A token of the evidence App" in run.output
    assert verify_statuses(sandbox) == []


def test_running_a_finished_promotion_again_changes_nothing(proposed: tuple[Sandbox, str]) -> None:
    sandbox, branch = proposed
    if git(sandbox.origin, "rev-parse", "staging") != git(sandbox.origin, "rev-parse", branch):
        merge(sandbox, branch, STAGING)  # this walk alone: the merge of the walk above
    before = git(sandbox.origin, "for-each-ref")
    run = dispatch(sandbox, "staging", "promote")
    assert run.returncode == 0, run.output
    assert f"unchanged: staging already runs {NAME} v0.1.0" in run.output
    assert git(sandbox.origin, "for-each-ref") == before
    assert [c for c in sandbox.calls() if c["argv"][:2] == ["pr", "create"]] == []


def test_prod_takes_what_staging_runs_and_a_rollback_takes_prod_back(
    proposed: tuple[Sandbox, str],
) -> None:
    sandbox, branch = proposed
    work = sandbox.work
    if git(sandbox.origin, "rev-parse", "staging") != git(sandbox.origin, "rev-parse", branch):
        merge(sandbox, branch, STAGING)
    # the merge's smoke job recorded what staging serves: the prod promotion's smoke gate reads it
    staging = git(sandbox.origin, "rev-parse", "staging").strip()
    assert GITHUB[0].smoke_runs(STAGING)[-1] == (staging, "success")
    assert dispatch(sandbox, "prod", "promote").returncode == 0
    (first,) = [r for r in sandbox.origin_refs("refs/heads/promote/prod/")]
    run = merge(sandbox, first.removeprefix("refs/heads/"), PROD)
    assert run.returncode == 0, run.output[-3000:]
    assert stage_holder(sandbox, PROD) == f"{NAME}@v0.1.0"
    # A second release through every environment, with the tools the jobs run.
    git(work, "switch", "-q", "main")
    git(work, "reset", "-q", "--hard", "origin/main")
    assert deploy_to_dev(sandbox, "v0.2.0", "6e" * 32).returncode == 0
    for env in (STAGING, PROD):
        out = run_tool("promote", env.name, cwd=work).stdout
        outputs = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        assert merge(sandbox, outputs["branch"], env).returncode == 0
    assert stage_holder(sandbox, PROD) == f"{NAME}@v0.2.0"
    # Roll prod back: Run workflow (prod, rollback), verify, merge, stage.
    run = dispatch(sandbox, "prod", "rollback")
    assert run.returncode == 0, run.output
    (rollback,) = sandbox.origin_refs("refs/heads/rollback/prod/")
    rollback = rollback.removeprefix("refs/heads/")
    (call,) = [c for c in sandbox.calls() if c["argv"][:2] == ["pr", "create"]]
    body = call["argv"][call["argv"].index("--body") + 1]
    assert "-        modelops.io/model-version: v0.2.0" in body
    head = git(sandbox.origin, "rev-parse", rollback).strip()
    run = verify(sandbox, rollback, PROD, head)
    assert run.returncode == 0, run.output
    assert f"ok: {head[:12]} restores production as of" in run.output
    assert merge(sandbox, rollback, PROD).returncode == 0
    assert stage_holder(sandbox, PROD) == f"{NAME}@v0.1.0"
    first_prod = git(sandbox.origin, "show", f"{first.removeprefix('refs/heads/')}:"
                     f"{rendered.path(PROD)}")  # fmt: skip
    assert git(sandbox.origin, "show", f"production:{rendered.path(PROD)}") == first_prod


def test_a_promotion_of_an_image_ci_did_not_sign_stops_at_the_image_gate(
    dev_runs_a_release: Sandbox,
) -> None:
    """Someone with the registry's credentials pushes an image under the tag of main's tip,
    labelled as CI labels it (its revision that commit), and dev's overlay comes to pin it (a
    merge into main): `Run workflow: staging, promote` stops at the image gate, the first, in one
    line (the registry holds no attestation for that digest), and pushes and opens nothing.
    main is put back afterwards."""
    sandbox = dev_runs_a_release
    work = sandbox.work
    git(work, "switch", "-q", "main")
    git(work, "reset", "-q", "--hard", "origin/main")
    base = git(work, "rev-parse", "HEAD").strip()
    runs = rendered.release(git(work, "show", f"HEAD:{rendered.path(DEV)}"))
    name = image_name()
    forged = {attestation.REVISION_LABEL: base, "io.modelops.model.sha256": runs.model_sha256}
    hand = push_image(name, sandbox.root / "hand-pushed", base, forged)
    try:
        run_tool("set_image", "--digest", hand, "--model-version", runs.model_version,
                 "--model-sha256", runs.model_sha256, "dev", base, cwd=work)  # fmt: skip
        run_tool("rendered", "dev", cwd=work)
        git(work, "commit", "-qam", f"deploy(dev): {runs.model_version}, an image pushed by hand")
        git(work, "push", "-q", "origin", "main")
        before = git(sandbox.origin, "for-each-ref")
        run = dispatch(sandbox, "staging", "promote")
        assert run.returncode == 1, run.output[-3000:]
        assert re.findall(r"\| (error: .*)", run.output) == [
            f"error: gate image: image {name}@{hand} has no build attestation "
            f"({name}:sha256-{hand[7:]}.att): only images CI built and signed from main may be "
            "deployed"
        ]
        assert git(sandbox.origin, "for-each-ref") == before
        assert [c for c in sandbox.calls() if c["argv"][:2] == ["pr", "create"]] == []
    finally:
        git(sandbox.origin, "update-ref", "refs/heads/main", base)
        git(work, "reset", "-q", "--hard", base)
