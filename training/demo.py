"""The training part of ``make demo``: train, register and assign dev in a sandbox, fetch the model.

    python -m training.demo --repo . --out out/demo

Never tags the user's clone. It builds (and on every run rebuilds) a sandbox from the repository's
committed HEAD, so uncommitted changes are not in the demo:

- ``origin.git``: a bare clone, standing in for the Git server;
- ``repo/``: a clone of it where the bundled raw data is restored (a fresh clone has no DVC
  remote that holds it: ``python -m training.bundled restore`` writes it and checks it against its
  ``.dvc`` file), ``dvc repro`` runs, ``dvc push`` sends raw data, splits and model to
  ``dvc-remote/``, ``gto register`` and ``gto assign --stage dev`` tag, and the tags are pushed;
- ``model/``: the dev-stage model fetched back from ``origin.git`` with ``dvc get``, verified
  against its sha256;
- ``model.env``: ``MODELOPS_MODEL_*`` and ``MODELOPS_GIT_COMMIT`` for the serving demo (sourceable).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import modelcard
from training.errors import StageError, run_stage
from training.params import load_artifact
from training.remote import require_all_in_remote

STAGE = "dev"
PARAMS = "training/params.yaml"
MODEL_PATH = "training/model"
REMOTE_NAME = "demo"
SANDBOX_ENTRIES = ("origin.git", "repo", "dvc-remote", "model", "model.env")


def tool_env() -> dict[str, str]:
    """This interpreter's bin directory first on PATH (dvc, gto, python), analytics off."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(DVC_NO_ANALYTICS="1", GTO_NO_ANALYTICS="1")
    return env


def run(
    args: Sequence[str],
    cwd: Path,
    *,
    capture: bool = False,
    show: bool = True,
    env: dict[str, str] | None = None,
) -> str:
    """Run a command in ``cwd`` (``env`` added to :func:`tool_env`); echo it, and raise
    StageError naming it when it fails."""
    if show:
        print(f"$ {shlex.join(args)}", flush=True)
    result = subprocess.run(
        list(args),
        cwd=cwd,
        env={**tool_env(), **(env or {})},
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.PIPE if capture else None,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        detail = (result.stderr or "").strip().splitlines()
        reason = detail[-1] if detail else f"exit code {result.returncode}"
        raise StageError(f"{shlex.join(args)} failed in {cwd}: {reason}")
    return (result.stdout or "").strip()


def reset_sandbox(out: Path) -> None:
    """Remove what an earlier run left, and nothing else."""
    out.mkdir(parents=True, exist_ok=True)
    for name in SANDBOX_ENTRIES:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def ensure_identity(repo: Path) -> None:
    """gto writes annotated tags: give the sandbox a committer when the machine has none."""
    probe = subprocess.run(
        ["git", "config", "user.email"], cwd=repo, capture_output=True, text=True, check=False
    )
    if not probe.stdout.strip():
        run(["git", "config", "user.name", "modelops demo"], repo, show=False)
        run(["git", "config", "user.email", "demo@localhost"], repo, show=False)


def write_env(path: Path, values: dict[str, str]) -> None:
    lines = [f"{key}={shlex.quote(value)}" for key, value in values.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def demo(source: Path, out: Path) -> dict[str, str]:
    """Run the whole demo; return what model.env holds."""
    source, out = source.resolve(), out.resolve()
    head = run(["git", "rev-parse", "HEAD"], source, capture=True, show=False)
    dirty = run(["git", "status", "--porcelain", "--untracked-files=no"], source, capture=True)
    if dirty:
        print("note: uncommitted changes are not in the demo (it clones the committed HEAD)")
    reset_sandbox(out)
    origin, repo, remote = out / "origin.git", out / "repo", out / "dvc-remote"

    run(["git", "clone", "-q", "--bare", "--no-local", str(source), str(origin)], out)
    run(["git", "clone", "-q", str(origin), str(repo)], out)
    run(["git", "checkout", "-q", "--detach", head], repo)
    ensure_identity(repo)
    remote.mkdir()
    run(["dvc", "remote", "add", "--local", "--default", REMOTE_NAME, str(remote)], repo)

    artifact_name = load_artifact(repo / PARAMS).name
    run(["python", "-m", "training.bundled", "restore"], repo)
    run(["dvc", "repro", "training/dvc.yaml"], repo)
    if run(["git", "status", "--porcelain"], repo, capture=True, show=False):
        # The committed dvc.lock is stale, or this CPU is off the reference level (arm64, no
        # AVX2: training/numerics.py) and trained other bytes. Record the result in the sandbox
        # (never in the user's clone) so the registered commit names the model it trained. The
        # commit takes HEAD's dates: a rerun makes the same commit, so model.env is the same.
        print(
            "note: this machine's dvc repro changed training/dvc.lock; committing it in the sandbox"
        )
        dates = run(
            ["git", "log", "-1", "--format=%aI %cI", "HEAD"], repo, capture=True, show=False
        )
        authored, committed = dates.split()
        run(["git", "add", "training"], repo)
        run(
            ["git", "commit", "-q", "-m", "demo: reproduce the training pipeline on this machine"],
            repo,
            env={"GIT_AUTHOR_DATE": authored, "GIT_COMMITTER_DATE": committed},
        )
    run(["dvc", "push"], repo)  # the raw data's .dvc file and the pipeline's outputs

    run(["gto", "register", artifact_name], repo)
    version = run(["gto", "show", f"{artifact_name}@latest", "--version"], repo, capture=True)
    run(["gto", "assign", artifact_name, "--version", version, "--stage", STAGE], repo)
    require_all_in_remote(repo, tool_env())  # no tag leaves the sandbox naming a missing model
    run(["git", "push", "-q", "origin", "--tags"], repo)

    print("\nmetrics (test split):")
    print(run(["dvc", "metrics", "show", "--md"], repo, capture=True, show=False))
    print("\nregistry (gto show):")
    print(run(["gto", "show"], repo, capture=True, show=False))

    # Fetch the dev model the way the image build does: from the bare origin, by its GTO tag.
    tag = run(["gto", "show", f"{artifact_name}#{STAGE}", "--ref"], repo, capture=True)
    commit = run(["git", "rev-list", "-n", "1", tag], repo, capture=True, show=False)
    model_dir = out / "model"
    run(
        [
            "dvc", "get", str(origin), MODEL_PATH, "--rev", tag, "-o", str(model_dir),
            "--remote", REMOTE_NAME, "--remote-config", f"url={remote}",
        ],
        out,
    )  # fmt: skip
    try:
        card = modelcard.load(model_dir)
    except modelcard.ContractError as exc:
        raise StageError(f"the fetched model failed verification: {exc}") from None
    values = {
        "MODELOPS_MODEL_DIR": str(model_dir),
        "MODELOPS_MODEL_NAME": artifact_name,
        "MODELOPS_MODEL_VERSION": version,
        "MODELOPS_MODEL_STAGE": STAGE,
        "MODELOPS_GIT_COMMIT": commit,
        "MODELOPS_MODEL_SHA256": str(card["model_sha256"]),
    }
    write_env(out / "model.env", values)
    print(f"\n{artifact_name} {version} is in stage {STAGE} (tag {tag}, commit {commit[:12]})")
    print(f"model fetched and verified (sha256 {card['model_sha256'][:16]}...) -> {model_dir}")
    print(f"serving environment -> {out / 'model.env'}")
    return values


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=Path(), help="repository to clone (HEAD)")
    parser.add_argument("--out", type=Path, required=True, help="sandbox directory (recreated)")
    args = parser.parse_args(argv)
    demo(args.repo, args.out)


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
