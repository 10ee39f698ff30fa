"""A fork renames its model in training/params.yaml alone, runs `make render`, and the whole path
carries the new name: trained and registered (training.demo: dvc repro, gto register and assign
dev), built (images/build-model-server.sh, MODEL_REF from the name), pushed to the demo's loopback
registry and signed, deployed to dev and promoted to staging and prod (gitops.demo's first
release: the deploy commit, gitops.promote with its image gate reading the attestation back, each
environment a podman pod played from its rendered manifests and smoke-tested), each pod answering
with the new name and GTO holding every stage under it; no generated file, tag, label or answer
keeps the old name.

It reuses the demo's own walk (make demo-training, then gitops.demo's set-up and first release)
in a clone of HEAD, with the clone's code, as `make demo` runs it. Root: podman builds and plays
the pods; the registry is Debian's docker-registry (make registry-tools).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.test_artifact_render import NEW_DESCRIPTION, NEW_NAME, rename
from training.params import load_artifact

from .conftest import podman, require_podman

pytestmark = pytest.mark.e2e  # podman builds the image and plays three pods

ROOT = Path(__file__).resolve().parents[2]
#: gitops.demo's set-up and first release (its walk() up to the experiment), run with the clone's
#: code: GitHub's stand-in, the fork's registry and signing key, the environment branches, the
#: image built once, pushed and signed, dev deployed, staging and prod promoted; then each pod's
#: answers, the image and its labels as JSON on the last line.
FIRST_RELEASE = """
import json, sys
from contextlib import ExitStack
from pathlib import Path
from gitops import demo, environments, rendered
from images import pod as pods

box = demo.Sandbox(Path(sys.argv[1]))
order = environments.load()
with ExitStack() as stack:
    demo.set_up(box, stack)
    box.git("push", "-q", "-f", "origin", *(f"HEAD:refs/heads/{env.branch}" for env in order))
    box.git("fetch", "-q", "origin")
    version = box.run("gto", "show", f"{demo.NAME}@latest", "--version", show=False).strip()
    commit = box.git("rev-list", "-n", "1", f"{demo.NAME}@{version}")
    cluster = demo.Cluster(box, stack)
    demo.release(box, cluster, version, commit)
    dev = order[0]
    image = rendered.release(box.git("show", f"origin/{dev.branch}:{rendered.path(dev)}")).image
    name, _, digest = image.partition("@")
    pinned = f"{name.rpartition(':')[0]}@{digest}"
    labels = pods.podman("image", "inspect", pinned, "--format", "{{json .Config.Labels}}")
    answers = {"version": version, "commit": commit, "image": image, "labels": json.loads(labels),
               "registry": box.registry}
    for env in order:
        base = cluster.pods[env.name][1].base
        _, predicted, _ = pods.call(f"{base}/predict", {"instances": [pods.sample_row()]})
        _, metadata, _ = pods.call(f"{base}/v2/models/{demo.NAME}")
        answers[env.name] = {"predict": predicted, "metadata": metadata}
    print(json.dumps(answers))
"""


def run(*args: str, cwd: Path) -> str:
    env = dict(os.environ)
    bins = [ROOT / ".tools" / "bin", Path(sys.executable).parent]
    env["PATH"] = os.pathsep.join([*map(str, bins), env["PATH"]])
    env.update(DVC_NO_ANALYTICS="1", GTO_NO_ANALYTICS="1", ITERATIVE_DO_NOT_TRACK="1")
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{args[:4]}: {done.stdout[-3000:]}{done.stderr[-3000:]}"
    return done.stdout


@pytest.mark.timeout(1500)
def test_a_model_renamed_in_params_yaml_alone_is_trained_built_deployed_and_promoted_by_it(
    tmp_path: Path,
) -> None:
    require_podman()
    old = load_artifact().name
    user, out = tmp_path / "user", tmp_path / "demo"
    run("git", "clone", "-q", "--no-local", str(ROOT), str(user), cwd=tmp_path)
    rename(user, NEW_NAME, NEW_DESCRIPTION)
    # make render as a fork runs it (this checkout's venv and tools, not the clone's)
    run("make", "-o", "venv", "-o", "tools", "render", cwd=user)
    run("git", "-c", "user.name=fork", "-c", "user.email=fork@example.invalid", "commit", "-qam",
        "rename the model", cwd=user)  # fmt: skip
    run(sys.executable, "-m", "training.demo", "--repo", str(user), "--out", str(out), cwd=user)
    answers = json.loads(
        run(sys.executable, "-c", FIRST_RELEASE, str(out), cwd=user).splitlines()[-1]
    )
    repo = out / "repo"
    version, commit = answers["version"], answers["commit"]
    # the image the registry stored, pinned by the digest it gave, as the demo pushed it
    assert answers["image"].startswith(f"{answers['registry']}/modelops/model-server:{commit}@")
    for env in ("dev", "staging", "prod"):
        assert answers[env]["predict"]["model_name"] == NEW_NAME, answers[env]
        assert answers[env]["metadata"]["name"] == NEW_NAME, answers[env]
        assert answers[env]["metadata"]["parameters"]["version"] == version
        assert answers[env]["metadata"]["parameters"]["git_commit"] == commit
    assert old not in json.dumps(answers)
    labels = answers["labels"]
    assert labels["io.modelops.model.name"] == NEW_NAME
    # built from the commit it is tagged with, as the attestation says (the image gate checks it)
    assert labels["org.opencontainers.image.revision"] == commit
    assert old not in json.dumps(labels)
    # the demo took its image out of local storage when it ended, with its registry: neither the
    # name it built nor the digest it pulled back is left
    name_tag, _, digest = answers["image"].partition("@")
    for left in (name_tag, f"{name_tag.rpartition(':')[0]}@{digest}"):
        assert podman("image", "exists", left, check=False).returncode == 1, left
    run("git", "fetch", "-q", "--tags", "origin", cwd=repo)
    for stage in ("dev", "staging", "prod"):
        held = run("gto", "show", f"{NEW_NAME}#{stage}", "--ref", cwd=repo).strip()
        assert held == f"{NEW_NAME}@{version}", stage
    tags = run("git", "ls-remote", "--tags", "origin", cwd=repo).split()[1::2]
    assert tags and all(t.startswith(f"refs/tags/{NEW_NAME}") for t in tags), tags
    log = run("git", "log", "--format=%s", "origin/main", cwd=repo)
    assert f"({NEW_NAME}@{version})" in log.splitlines()[0]
    for pr in ("pr-staging.md", "pr-prod.md"):
        body = (out / pr).read_text()
        assert f"{NEW_NAME} {version}" in body and old not in body, pr
        # the image gate read the demo's signed attestation back from the registry
        assert f"built by CI from {commit[:12]}" in body, pr
    # no file of any environment's branch spells out the old name but prose and tests
    for branch in ("main", "staging", "production"):
        left = subprocess.run(
            ["git", "grep", "-l", old, f"origin/{branch}", "--", ".", ":!docs", ":!tests",
             ":!README.md"],
            cwd=repo, capture_output=True, text=True, check=False,
        ).stdout  # fmt: skip
        assert left == "", (branch, left)
