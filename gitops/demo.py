"""The GitOps part of ``make demo``: build once, deploy dev, promote to staging and prod, release
again, roll prod back; every environment a podman pod played from its rendered manifests.

    python -m gitops.demo --sandbox out/demo [--experiment train.logistic_regression.C=0.5]
                          [--monitoring on|off]

Runs in the sandbox ``make demo-training`` made (training.demo: ``origin.git`` standing in for the
Git server, ``repo/`` where the pipeline ran and v0.1.0 was registered, ``dvc-remote/``), never in
the user's clone, with the gitops commands of the sandbox's own checkout, as a workflow would:

1. the environment branches are made as a fork makes them (main, staging, production), with the
   evidence App named in evidence.toml: GitHub's REST API is the suite's stand-in
   (tests/workflows/act/github_api.py, on loopback, as origin.git stands in for GitHub's git),
   which holds the App's key and keeps the smoke tests' check runs the smoke gate reads; with
   ``--monitoring on`` (``make demo MONITORING=on``), main first turns monitoring on in every
   overlay (gitops.monitoring on, as docs/monitoring.md says), so every rendering carries its
   environment's ServiceMonitor and PrometheusRule through every gate (the pods, played by
   podman, have no Prometheus: images/pod.py plays the Deployment and its ConfigMaps);
2. release 1: the image is built once (images/build-model-server.sh, the version tag as MODEL_REF)
   and tagged with the commit its model was registered at; the deploy pull request of
   promote.yml is made (gitops.deploy) and merged, then gitops.assign_stage;
   dev's pod is played from ``rendered/dev/manifests.yaml`` and smoke-tested (gitops.smoke
   --record, with the evidence App's token); gitops.promote takes it to staging and then to
   prod, each merged, played and smoke-tested in turn;
3. release 2: an experiment (``--experiment`` sets one parameter, ``dvc repro``, ``dvc push``)
   merged into main and registered as the next version, built once, through dev, staging, prod;
4. prod is rolled back (gitops.rollback): its pod runs release 1 again, and GTO says so.

It ends with one prediction from each environment's pod and a table of what runs where (model
version, GTO stage, image digest, git commit, model sha256), and how long it took. Any step that
fails stops the demo with one line (``error: ...``); the pods are removed either way.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from types import ModuleType

from gitops import environments, evidence, rendered
from gitops.cli import OneLineParser, ToolError
from images import pod as pods
from serving.provenance import HEADER
from training.params import load_artifact

ROOT = environments.ROOT
NAME = load_artifact().name  # training/params.yaml's artifact.name
PARAMS = "training/params.yaml"
#: GitHub's REST API in the demo: the suite's stand-in (its README: tests/workflows/act/).
GITHUB_STAND_IN = ROOT / "tests" / "workflows" / "act" / "github_api.py"
#: The demo's evidence App (the stand-in holds its key; evidence.toml names its id).
EVIDENCE_APP_ID = 424242
EVIDENCE_KEY = "the demo's evidence App key"
#: The second release's experiment: one hyper-parameter of the default estimator.
EXPERIMENT = "train.logistic_regression.C=0.5"


class Sandbox:
    """The demo's git checkout (``repo/``) and the commands run in it, echoed as they run."""

    def __init__(self, out: Path) -> None:
        self.out = out.resolve()
        self.repo = self.out / "repo"
        if not (self.out / "origin.git").is_dir() or not self.repo.is_dir():
            raise ToolError(f"{out} holds no demo sandbox: run make demo-training first")
        bins = [ROOT / ".venv" / "bin", ROOT / ".tools" / "bin", Path(sys.executable).parent]
        self.env = pods.podman_env()  # the repository's containers.conf, as make exports it
        self.env["PATH"] = os.pathsep.join([*map(str, bins), os.environ["PATH"]])
        self.env.update(DVC_NO_ANALYTICS="1", GTO_NO_ANALYTICS="1", ITERATIVE_DO_NOT_TRACK="1")
        self.evidence_token = ""  # the evidence App's, once set_up_github ran

    def run(self, *args: str, show: bool = True, env: dict[str, str] | None = None) -> str:
        if show:
            print(f"$ {shlex.join(args)}", flush=True)
        done = subprocess.run(
            args, cwd=self.repo, env={**self.env, **(env or {})}, capture_output=True, text=True
        )
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
            raise ToolError(f"{shlex.join(args[:4])} failed: {lines[-1]}")
        return done.stdout

    def tool(self, command: str, *args: str, env: dict[str, str] | None = None) -> dict[str, str]:
        """``python -m gitops.COMMAND ARGS`` (ENV added); its key=value lines (other lines are
        shown)."""
        out = self.run(sys.executable, "-m", f"gitops.{command}", *args, env=env)
        pairs = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        for line in out.splitlines():
            if "=" not in line:
                print(f"  {line}")
        return pairs

    def git(self, *args: str) -> str:
        return self.run("git", *args, show=False).strip()


def build_image(box: Sandbox, version: str, commit: str) -> dict[str, str]:
    """Build the model server image of VERSION once, tagged with COMMIT; its reference pieces."""
    image = f"localhost/modelops/model-server:{commit}"
    out = box.out / f"image-{version}"
    print(f"\n== build once: {image} with {NAME}@{version} (log: {out / 'build.log'})")
    out.mkdir(parents=True, exist_ok=True)
    box.run(
        str(ROOT / "images" / "build-model-server.sh"),
        env={
            "MODEL_REPO": str(box.out / "origin.git"),
            "MODELOPS_DVC_REMOTE_DIR": str(box.out / "dvc-remote"),
            "MODEL_REF": f"{NAME}@{version}",
            "IMAGE": image,
            "MODELOPS_IMAGE_OUT": str(out),
            "MODELOPS_BUILD_LOG": str(out / "build.log"),
        },
    )
    digest = (out / "digest").read_text().strip()
    labels = json.loads(
        pods.podman("image", "inspect", image, "--format", "{{json .Config.Labels}}")
    )
    return {"image": image, "digest": digest, "sha256": labels["io.modelops.model.sha256"]}


def deploy_dev(box: Sandbox, version: str, commit: str, built: dict[str, str]) -> None:
    """The deploy pull request of promote.yml (gitops.deploy), made and merged; then the stage
    job."""
    dev = environments.load()[0]
    print(f"\n== deploy {dev.name}: {NAME} {version}, image {built['digest']}")
    outputs = box.tool(
        "deploy", "--digest", built["digest"], "--model-version", version,
        "--model-sha256", built["sha256"], "--no-push",
        "--body-file", str(box.out / f"pr-{dev.name}.md"), commit,
    )  # fmt: skip
    merge(box, outputs, dev)


def merge(box: Sandbox, outputs: dict[str, str], env: environments.Environment) -> None:
    """Merge the proposal's pull request (a fast-forward of the branch); then the stage job."""
    print(f"  merge {outputs['branch']} into {env.branch}")
    box.git("push", "-q", "origin", f"{outputs['commit']}:refs/heads/{env.branch}")
    box.git("fetch", "-q", "origin")
    box.tool("assign_stage", env.name, "--ref", f"origin/{env.branch}", "--push", "origin")


def github_stand_in() -> ModuleType:
    """The module of GitHub's REST API stand-in (GITHUB_STAND_IN)."""
    spec = importlib.util.spec_from_file_location("modelops_github_api", GITHUB_STAND_IN)
    if spec is None or spec.loader is None:
        raise ToolError(f"{GITHUB_STAND_IN} is missing: the demo needs its GitHub stand-in")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def set_up_github(box: Sandbox, stack: ExitStack) -> None:
    """GitHub's REST API for the sandbox (the stand-in, with the evidence App installed) and
    evidence.toml naming that App on main, committed as a fork commits it."""
    stand_in = github_stand_in()
    api = stack.enter_context(stand_in.GitHubApi())
    api.add_app(EVIDENCE_APP_ID, "modelops-evidence", EVIDENCE_KEY)
    run_token = "demo-run-token"  # noqa: S105 - the stand-in's GITHUB_TOKEN, no real token
    api.add_app_token(run_token, stand_in.ACTIONS_APP)
    box.env.update(GITHUB_API_URL=api.url, GITHUB_REPOSITORY="demo/modelops", GH_TOKEN=run_token)
    box.evidence_token = api.installation_token(EVIDENCE_APP_ID, EVIDENCE_KEY)
    path = box.repo / evidence.FILE
    path.write_text(re.sub(r"(?m)^id = \d+", f"id = {EVIDENCE_APP_ID}", path.read_text()))
    if box.git("status", "--porcelain", "--untracked-files=no"):  # not set from a rerun
        box.git("commit", "-qam", "evidence: the demo's evidence App (its GitHub stand-in)")


class Cluster:
    """One podman pod per environment, each played from its branch's rendered manifests."""

    def __init__(self, box: Sandbox, stack: ExitStack) -> None:
        self.box, self.stack = box, stack
        self.pods: dict[str, tuple[ExitStack, pods.Pod]] = {}

    def sync(self, env: environments.Environment) -> pods.Pod:
        """What Argo CD does after a merge: replace ENV's pod with its rendered manifests; then
        the smoke test, recorded on those manifests."""
        self.box.git("fetch", "-q", "origin")
        text = self.box.git("show", f"origin/{env.branch}:{rendered.path(env)}") + "\n"
        if env.name in self.pods:
            self.pods.pop(env.name)[0].close()
        own = self.stack.enter_context(ExitStack())
        pod = own.enter_context(pods.running_rendered(text))
        self.pods[env.name] = (own, pod)
        print(f"  {env.name}: pod {pod.name} at {pod.base} ({rendered.release(text).summary()})")
        self.box.tool("smoke", env.name, "--url", pod.base, "--ref", f"origin/{env.branch}",
                      "--record", env={"GH_TOKEN": self.box.evidence_token})  # fmt: skip
        return pod


def release(box: Sandbox, cluster: Cluster, version: str, commit: str) -> None:
    """One release: built once, deployed to dev, promoted through every later environment."""
    built = build_image(box, version, commit)
    deploy_dev(box, version, commit, built)
    order = environments.load()
    cluster.sync(order[0])
    for env in order[1:]:
        print(f"\n== promote {env.name}: what {environments.before(env).name} runs")
        merge(
            box,
            box.tool("promote", env.name, "--body-file", str(box.out / f"pr-{env.name}.md")),
            env,
        )
        cluster.sync(env)


def set_param(text: str, key: str, value: str) -> str | None:
    """params.yaml TEXT with the scalar at the dotted KEY (``train.logistic_regression.C``) set to
    VALUE, its comment and the layout kept; None unless exactly one line holds that key."""
    lines = text.splitlines(keepends=True)
    path: list[tuple[int, str]] = []  # (indent, key) of the mappings the line is inside
    found = []
    for index, line in enumerate(lines):
        match = re.match(r"(\s*)([A-Za-z_][\w-]*)(:\s*)(\S*)(.*)", line, re.S)
        if match is None:
            continue
        while path and path[-1][0] >= len(match[1]):
            path.pop()
        path.append((len(match[1]), match[2]))
        if ".".join(k for _, k in path) == key and match[4] and not match[4].startswith("#"):
            lines[index] = f"{match[1]}{match[2]}{match[3]}{value}{match[5]}"
            found.append(index)
    return "".join(lines) if len(found) == 1 else None


def experiment(box: Sandbox, assignment: str) -> tuple[str, str]:
    """An experiment merged into main: PARAM=VALUE set, the pipeline re-run and pushed, the new
    model registered. Its version and the commit it was registered at."""
    key, _, value = assignment.partition("=")
    print(f"\n== experiment: {key}={value}, dvc repro, merged into main, registered")
    box.git("switch", "-q", "-C", f"experiment/{key.replace('.', '-')}", "origin/main")
    params = box.repo / PARAMS
    changed = set_param(params.read_text(), key, value)
    if changed is None:
        raise ToolError(f"--experiment {assignment}: {PARAMS} has no key {key}")
    params.write_text(changed)
    box.run("dvc", "repro", "training/dvc.yaml")
    box.run("dvc", "push", "training/dvc.yaml")
    box.git("add", "training")
    box.git("commit", "-qm", f"experiment: {key}={value}")
    box.git("switch", "-q", "-C", "main", "origin/main")  # what main is after the deploys
    box.git("merge", "-q", "--ff-only", f"experiment/{key.replace('.', '-')}")
    box.git("push", "-q", "origin", "main")
    box.run("gto", "register", NAME, "HEAD", "--bump-minor")
    version = box.run("gto", "show", f"{NAME}@latest", "--version", show=False).strip()
    box.git("push", "-q", "origin", f"{NAME}@{version}")
    return version, box.git("rev-parse", "HEAD")


def table(box: Sandbox, cluster: Cluster) -> str:
    """Per environment: what its pod answered for one prediction, and with which provenance."""
    rows = ["| environment | branch | prediction | model | GTO stage holds | image digest | "
            "git commit | model sha256 |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for env in environments.load():
        pod = cluster.pods[env.name][1]
        status, body, headers = pods.call(f"{pod.base}/predict", {"instances": [pods.sample_row()]})
        if status != 200:
            raise ToolError(f"{env.name}: POST /predict answered {status}: {body}")
        _, metadata, _ = pods.call(f"{pod.base}/v2/models/{body['model_name']}")
        seen = (metadata or {}).get("parameters") or {}
        if headers.get(HEADER) != seen.get("provenance_id"):
            raise ToolError(
                f"{env.name}: the prediction's {HEADER} {headers.get(HEADER)!r} is not the "
                f"model metadata's provenance_id {seen.get('provenance_id')!r}"
            )
        holder = box.run("gto", "show", f"{NAME}#{env.stage}", "--version", show=False).strip()
        rows.append(
            f"| {env.name} | {env.branch} | {body['labels'][0]} | {seen.get('version')} | "
            f"{env.stage}: {holder} | {seen.get('image_digest', '')[:19]} | "
            f"{seen.get('git_commit', '')[:12]} | {seen.get('model_sha256', '')[:12]} |"
        )
    return "\n".join(rows)


def demo(out: Path, assignment: str, monitoring: bool = False) -> None:
    started = time.monotonic()
    box = Sandbox(out)
    order = environments.load()
    with ExitStack() as stack:
        set_up_github(box, stack)
        walk(box, stack, order, assignment, monitoring)
    state = "on" if monitoring else "off"
    print(
        f"\ndemo: done in {time.monotonic() - started:.0f} s (monitoring {state}); "
        f"pull request bodies in {box.out}"
    )


def walk(
    box: Sandbox,
    stack: ExitStack,
    order: tuple[environments.Environment, ...],
    assignment: str,
    monitoring: bool,
) -> None:
    """The demo's steps 1 to 4 (the module's docstring), the pods kept on STACK."""
    if monitoring:
        print("== monitoring on in every overlay, by a commit on main")
        box.tool("monitoring", "on")
        if box.git("status", "--porcelain", "--untracked-files=no"):  # not on from a rerun
            box.git("commit", "-qam", "monitoring: on in every environment (gitops.monitoring on)")
    print("== the environment branches, as a fork makes them")
    box.git("push", "-q", "-f", "origin", *(f"HEAD:refs/heads/{env.branch}" for env in order))
    box.git("fetch", "-q", "origin")
    first_version = box.run("gto", "show", f"{NAME}@latest", "--version", show=False).strip()
    first_commit = box.git("rev-list", "-n", "1", f"{NAME}@{first_version}")
    cluster = Cluster(box, stack)
    release(box, cluster, first_version, first_commit)
    second_version, second_commit = experiment(box, assignment)
    release(box, cluster, second_version, second_commit)
    prod = order[-1]
    print(f"\n== roll {prod.name} back")
    merge(
        box,
        box.tool("rollback", prod.name, "--body-file", str(box.out / "pr-rollback.md")),
        prod,
    )
    cluster.sync(prod)
    print("\n== what runs where (one prediction each, through each pod's Nginx)\n")
    print(table(box, cluster))


def main(argv: Sequence[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m gitops.demo", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sandbox", type=Path, default=Path("out/demo"), help="make demo-training's"
    )
    parser.add_argument("--experiment", default=EXPERIMENT, metavar="KEY=VALUE",
                        help=f"the second release's experiment (default {EXPERIMENT})")  # fmt: skip
    parser.add_argument("--monitoring", default="off", choices=("on", "off"),
                        help="turn monitoring on in every overlay first (default off)")  # fmt: skip
    args = parser.parse_args(argv)
    if "=" not in args.experiment or "." not in args.experiment.partition("=")[0]:
        print(f"error: --experiment {args.experiment!r} is not SECTION.KEY=VALUE", file=sys.stderr)
        return 2
    try:
        demo(args.sandbox, args.experiment, args.monitoring == "on")
    except (ToolError, RuntimeError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
