"""The GitOps part of ``make demo``: build once, deploy dev, promote to staging and prod, release
again, roll prod back; every environment a podman pod played from its rendered manifests.

    python -m gitops.demo --sandbox out/demo [--experiment train.logistic_regression.C=0.5]
                          [--monitoring on|off]

Runs in the sandbox ``make demo-training`` made (training.demo: ``origin.git`` standing in for the
Git server, ``repo/`` where the pipeline ran and v0.1.0 was registered, ``dvc-remote/``), never in
the user's clone, with the gitops commands of the sandbox's own checkout, as a workflow would:

1. the sandbox is set up as a fork sets itself up (docs/workflow.md, "Setting it up in a fork"):
   the evidence App named in evidence.toml: GitHub's REST API is the suite's stand-in
   (tests/workflows/act/github_api.py, on loopback, as origin.git stands in for GitHub's git),
   which holds the App's key and keeps the smoke tests' check runs the smoke gate reads; the
   fork's registry: a loopback registry for this run (images/registry.py, its storage in
   ``registry/``), the dev overlay pulling from it (re-rendered by gitops.rendered) and
   evidence.toml's ``[images] public_key`` naming CI's image signing key, which the demo makes
   and holds, as the GitHub environment ``image-signing`` holds it, one commit on main; the
   environment branches are then made from main (main, staging, production); with
   ``--monitoring on`` (``make demo MONITORING=on``), main first turns monitoring on in every
   overlay (gitops.monitoring on, as docs/monitoring.md says), so every rendering carries its
   environment's ServiceMonitor and PrometheusRule through every gate (the pods, played by
   podman, have no Prometheus: images/pod.py plays the Deployment and its ConfigMaps);
2. release 1: what promote.yml's build job does, from a checkout of the commit its model was
   registered at: the image is built once (that checkout's images/build-model-server.sh, the
   version tag as MODEL_REF) as ``<registry>/modelops/model-server:<commit>``, pushed
   (images/push-model-server.sh: the manifest digest the registry stored) and signed
   (gitops.attestation.attest: its build attestation stored next to it); then pulled back by
   that digest, as a node pulls it (layers reused from local storage). The deploy pull request
   pins that digest (gitops.deploy --registry), pr-guard's ``image`` check reads its attestation
   (gitops.attestation verify-overlay), it is merged, then gitops.assign_stage; dev's pod is
   played from ``rendered/dev/manifests.yaml`` and smoke-tested (gitops.smoke --record, with the
   evidence App's token); gitops.promote takes it to staging and then to prod, each gated (the
   gates' lines are printed, ``image`` among them: built by CI from the commit), merged, played
   and smoke-tested in turn;
3. release 2: an experiment (``--experiment`` sets one parameter, ``dvc repro``, ``dvc push``)
   merged into main and registered as the next version, built once, through dev, staging, prod;
4. prod is rolled back (gitops.rollback): its pod runs release 1 again, and GTO says so.

It ends with one prediction from each environment's pod and a table of what runs where (model
version, GTO stage, image digest, git commit, model sha256), and how long it took. Any step that
fails stops the demo with one line (``error: ...``); the pods, the images it built (from local
storage) and the registry are removed either way (the registry's storage stays until the next run).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from types import ModuleType

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gitops import attestation, environments, evidence, rendered, set_image
from gitops.cli import OneLineParser, ToolError
from images import pod as pods
from images import registry
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
#: The workflow run an attestation names: the demo plays promote.yml's build job.
RUN = "make demo (gitops.demo)"


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
        self.registry = ""  # the fork's registry HOST:PORT, once set_up_registry ran
        self.signing_key: Ed25519PrivateKey | None = None  # CI's image signing key, likewise

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


def build_image(box: Sandbox, stack: ExitStack, version: str, commit: str) -> dict[str, str]:
    """What promote.yml's build job does for COMMIT, whose model is VERSION: build the image once
    from a checkout of COMMIT, push it to the fork's registry, sign its build attestation; then
    pull it back by the digest the registry stored, so that the pods (images/pod.py,
    imagePullPolicy IfNotPresent) find it by that digest. Its name:tag, digest and model sha256;
    the image leaves local storage (both its names) when STACK closes."""
    if not box.registry or box.signing_key is None:
        raise ToolError("the demo builds no image before the fork's registry is set up")
    name = f"{box.registry}/{set_image.DEFAULT_IMAGE}"
    image = f"{name}:{commit}"
    out = box.out / f"image-{version}"
    print(f"\n== build once: {image} with {NAME}@{version} (log: {out / 'build.log'})")
    out.mkdir(parents=True, exist_ok=True)
    source = out / "source"  # the checkout of COMMIT the build job runs in
    box.git("worktree", "prune")
    if source.exists():
        shutil.rmtree(source)
    box.git("worktree", "add", "-q", "--detach", str(source), commit)
    stack.callback(pods.podman, "rmi", image, check=False)
    try:
        box.run(
            str(source / "images" / "build-model-server.sh"),
            env={
                "MODEL_REPO": str(box.out / "origin.git"),
                "MODELOPS_DVC_REMOTE_DIR": str(box.out / "dvc-remote"),
                "MODEL_REF": f"{NAME}@{version}",
                "IMAGE": image,
                "MODELOPS_IMAGE_OUT": str(out),
                "MODELOPS_BUILD_LOG": str(out / "build.log"),
            },
        )
        started = time.monotonic()
        pushed = dict(
            line.split("=", 1)
            for line in box.run(str(source / "images" / "push-model-server.sh"), image).split()
        )
    finally:
        box.git("worktree", "remove", "--force", str(source))
    digest = pushed["image_digest"]
    print(f"  pushed {name}@{digest} in {time.monotonic() - started:.1f} s")
    signed = attestation.attest(box.signing_key, name, digest, commit, RUN)
    print(f"  signed with CI's key (the demo's): {signed}")
    started = time.monotonic()
    stack.callback(pods.podman, "rmi", f"{name}@{digest}", check=False)
    box.run("podman", "pull", "--quiet", "--tls-verify=false", f"{name}@{digest}")
    print(f"  pulled back by digest in {time.monotonic() - started:.1f} s (local layers reused)")
    return {"image": image, "digest": digest, "sha256": pushed["model_sha256"]}


def deploy_dev(box: Sandbox, version: str, commit: str, built: dict[str, str]) -> None:
    """The deploy pull request of promote.yml (gitops.deploy), made and merged; then the stage
    job."""
    dev = environments.load()[0]
    print(f"\n== deploy {dev.name}: {NAME} {version}, image {built['digest']}")
    outputs = box.tool(
        "deploy", "--registry", box.registry, "--digest", built["digest"],
        "--model-version", version, "--model-sha256", built["sha256"], "--no-push",
        "--body-file", str(box.out / f"pr-{dev.name}.md"), commit,
    )  # fmt: skip
    main = f"origin/{dev.branch}"
    print(f"  pr-guard's image check of {outputs['branch']}:")
    box.tool("attestation", "verify-overlay", dev.name, "--at", outputs["commit"],
             "--ref", main, "--main", main)  # fmt: skip
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


def with_signing_key(text: str, public: str) -> str:
    """evidence.toml TEXT with ``[images] public_key`` set to PUBLIC, as a fork's pull request sets
    it (docs/workflow.md, "Setting it up in a fork", step 5): the key line of an ``[images]`` table
    replaced, or the commented-out table the repository ships uncommented, or the table appended;
    comments and the rest kept. ToolError when the result does not read PUBLIC back."""
    line = f'public_key = "{public}"'
    try:
        has_table = isinstance(tomllib.loads(text).get("images"), dict)
    except tomllib.TOMLDecodeError as error:
        raise ToolError(f"{evidence.FILE} is not valid TOML ({error})") from None
    shipped = re.compile(r"(?m)^# \[images\]\n# public_key = .*$")
    key_line = re.compile(r"(?m)^public_key\s*=.*$")
    if has_table:
        if len(key_line.findall(text)) == 1:  # else the key read back below is not PUBLIC
            text = key_line.sub(lambda _: line, text)
    elif shipped.search(text):
        text = shipped.sub(lambda _: f"[images]\n{line}", text)
    else:
        text = f"{text.rstrip()}\n\n[images]\n{line}\n"
    try:
        found = tomllib.loads(text).get("images", {}).get("public_key")
    except (tomllib.TOMLDecodeError, AttributeError):
        found = None
    if found != public:
        raise ToolError(
            f"{evidence.FILE}: cannot set [images] public_key (one 'public_key = ...' line in "
            "its [images] table, the commented-out table, or no table at all)"
        )
    return text


def set_up_registry(box: Sandbox, stack: ExitStack) -> None:
    """The fork's registry and CI's image signing key: a loopback registry for this run under the
    sandbox (its storage from an earlier run removed), stopped when STACK closes; a key pair whose
    private half the demo holds (box.signing_key, the secret of promote.yml's environment
    ``image-signing``); one commit on main, as a fork makes it: the dev overlay's newName pointed
    at the registry and its rendered file re-rendered (gitops.rendered), and evidence.toml naming
    the public key. Every later command reads the registry over plain HTTP."""
    root = box.out / "registry"
    if root.exists():
        shutil.rmtree(root)
    box.registry = stack.enter_context(registry.loopback(root))
    tls = os.environ.get("MODELOPS_REGISTRY_TLS_VERIFY")
    os.environ["MODELOPS_REGISTRY_TLS_VERIFY"] = box.env["MODELOPS_REGISTRY_TLS_VERIFY"] = "false"
    stack.callback(restore_variable, "MODELOPS_REGISTRY_TLS_VERIFY", tls)
    secret, public = attestation.keygen()
    box.signing_key = attestation.private_key(secret)
    print(f"== the fork's registry: {box.registry} (storage {root}); CI's image signing key")
    dev = environments.load()[0]
    kustomization = box.repo / dev.overlay / "kustomization.yaml"
    entry = set_image.image_entry(kustomization, set_image.DEFAULT_IMAGE)
    text = set_image.with_entry_line(
        kustomization.read_text(encoding="utf-8"),
        str(entry["name"]),
        "newName",
        f"{box.registry}/{set_image.DEFAULT_IMAGE}",
        kustomization,
    )
    kustomization.write_text(text, encoding="utf-8")
    box.tool("rendered")
    path = box.repo / evidence.FILE
    path.write_text(with_signing_key(path.read_text(encoding="utf-8"), public), encoding="utf-8")
    box.git(
        "commit", "-qam",
        f"the fork's registry: {dev.name} pulls from {box.registry}; evidence.toml names CI's "
        "image signing key (the demo's)",
    )  # fmt: skip


def restore_variable(name: str, value: str | None) -> None:
    """Set the environment variable NAME back to VALUE (unset when None)."""
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def set_up(box: Sandbox, stack: ExitStack) -> None:
    """Step 1 before the branches: GitHub's stand-in and the evidence App, then the fork's
    registry and image signing key (both committed on main); what they start ends with STACK."""
    set_up_github(box, stack)
    set_up_registry(box, stack)


def gate_lines(body: str) -> list[str]:
    """The ``gate NAME: FIGURE`` lines of a promotion pull request's BODY (its gates table)."""
    lines = body.splitlines()
    if "| gate | checked |" not in lines:
        return []
    found = []
    for line in lines[lines.index("| gate | checked |") + 2 :]:
        match = re.fullmatch(r"\| (\S+) \| (.*) \|", line)
        if match is None:
            break
        found.append(f"gate {match[1]}: {match[2]}")
    return found


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
    built = build_image(box, cluster.stack, version, commit)
    deploy_dev(box, version, commit, built)
    order = environments.load()
    cluster.sync(order[0])
    for env in order[1:]:
        print(f"\n== promote {env.name}: what {environments.before(env).name} runs")
        body = box.out / f"pr-{env.name}.md"
        outputs = box.tool("promote", env.name, "--body-file", str(body))
        for line in gate_lines(body.read_text(encoding="utf-8")):
            print(f"  {line}")
        merge(box, outputs, env)
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
        set_up(box, stack)
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
