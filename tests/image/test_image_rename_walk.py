"""A fork renames its model in training/params.yaml alone, runs `make render`, and the whole path
carries the new name: trained and registered (training.demo: dvc repro, gto register and assign
dev), built (images/build-model-server.sh, MODEL_REF from the name), deployed to dev and promoted
to staging and prod (gitops.demo's first release: the deploy commit, gitops.promote, each
environment a podman pod played from its rendered manifests and smoke-tested), each pod answering
with the new name and GTO holding every stage under it; no generated file, tag, label or answer
keeps the old name.

It reuses the demo's own walk (make demo-training, then gitops.demo's first release) in a clone of
HEAD, with the clone's code, as `make demo` runs it. Root: podman builds and plays the pods.
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
#: gitops.demo's first release (its walk() up to the experiment), run with the clone's code: the
#: environment branches, the image built once, dev deployed, staging and prod promoted; then each
#: pod's answers as JSON on the last line.
FIRST_RELEASE = """
import json, sys
from contextlib import ExitStack
from pathlib import Path
from gitops import demo, environments
from images import pod as pods

box = demo.Sandbox(Path(sys.argv[1]))
order = environments.load()
with ExitStack() as stack:
    demo.set_up_github(box, stack)
    box.git("push", "-q", "-f", "origin", *(f"HEAD:refs/heads/{env.branch}" for env in order))
    box.git("fetch", "-q", "origin")
    version = box.run("gto", "show", f"{demo.NAME}@latest", "--version", show=False).strip()
    commit = box.git("rev-list", "-n", "1", f"{demo.NAME}@{version}")
    cluster = demo.Cluster(box, stack)
    demo.release(box, cluster, version, commit)
    answers = {"version": version, "commit": commit}
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
    image = f"localhost/modelops/model-server:{answers['commit']}"
    try:
        version = answers["version"]
        for env in ("dev", "staging", "prod"):
            assert answers[env]["predict"]["model_name"] == NEW_NAME, answers[env]
            assert answers[env]["metadata"]["name"] == NEW_NAME, answers[env]
            assert answers[env]["metadata"]["parameters"]["version"] == version
        assert old not in json.dumps(answers)
        inspect = podman("image", "inspect", image, "--format", "{{json .Config.Labels}}")
        labels = json.loads(inspect.stdout)
        assert labels["io.modelops.model.name"] == NEW_NAME
        assert old not in json.dumps(labels)
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
        # no file of any environment's branch spells out the old name but prose and tests
        for branch in ("main", "staging", "production"):
            left = subprocess.run(
                ["git", "grep", "-l", old, f"origin/{branch}", "--", ".", ":!docs", ":!tests",
                 ":!README.md"],
                cwd=repo, capture_output=True, text=True, check=False,
            ).stdout  # fmt: skip
            assert left == "", (branch, left)
    finally:
        podman("rmi", "-f", image, check=False)
