"""Real git, dvc and gto in temp repositories, for the training tests.

A source repository is built from this checkout's training files (the working-tree versions, so
uncommitted edits are tested too), committed, and published to a bare origin; each test module
clones it and points DVC at a local-directory remote. Nothing touches the network.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import yaml

from training.params import load_artifact

ROOT = Path(__file__).resolve().parents[2]
ARTIFACT = load_artifact().name  # this checkout's training/params.yaml
STAGE_LINE = re.compile(r"Running stage '(?:(?:training/)?dvc\.yaml:)?(\w+)'")


def tool_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(DVC_NO_ANALYTICS="1", GTO_NO_ANALYTICS="1", GIT_TERMINAL_PROMPT="0")
    return env


def run(
    *args: str | Path, cwd: Path, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command; on an unexpected failure, fail with its whole output."""
    result = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env or tool_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, args))} exited {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


def tracked_training_files() -> list[str]:
    """This checkout's pipeline files: what git tracks or would track (not the ignored outputs),
    with the artifact contract the export stage writes through (modelcard/)."""
    listed = run(
        "git", "ls-files", "--cached", "--others", "--exclude-standard", "-z",
        "training", "modelcard", ".dvc", ".dvcignore",
        cwd=ROOT,
    ).stdout  # fmt: skip
    return sorted({p for p in listed.split("\0") if p and (ROOT / p).is_file()})


def configure_identity(repo: Path) -> None:
    run("git", "config", "user.name", "modelops test", cwd=repo)
    run("git", "config", "user.email", "test@localhost", cwd=repo)


def make_source_repo(path: Path) -> Path:
    """A git repository holding this checkout's training pipeline, committed on main."""
    path.mkdir(parents=True)
    run("git", "init", "-q", "-b", "main", cwd=path)
    configure_identity(path)
    for name in tracked_training_files():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    run("git", "add", "-A", cwd=path)
    run("git", "commit", "-q", "-m", "training pipeline", cwd=path)
    return path


def make_origin(tmp: Path) -> Path:
    """A bare origin holding the pipeline (the stand-in for the Git server)."""
    source = make_source_repo(tmp / "source")
    origin = tmp / "origin.git"
    run("git", "clone", "-q", "--bare", source, origin, cwd=tmp)
    return origin


def clone(origin: Path, dest: Path, remote: Path, *, restore: bool = True) -> Path:
    """A working clone of origin whose default DVC remote is the directory ``remote``; with
    RESTORE, the bundled raw data written back (``make training-data``), as a fresh clone whose
    remote does not hold it needs."""
    run("git", "clone", "-q", origin, dest, cwd=dest.parent)
    configure_identity(dest)
    remote.mkdir(parents=True, exist_ok=True)
    run("dvc", "remote", "add", "--local", "--default", "local", remote, cwd=dest)
    if restore:
        run("python", "-m", "training.bundled", "restore", cwd=dest)
    return dest


def repro(repo: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run("dvc", "repro", "training/dvc.yaml", cwd=repo, check=check)


def commit_if_changed(repo: Path, message: str) -> bool:
    """Commit every change in the working tree (e.g. a dvc.lock this machine rewrote); return
    whether there was one. Tags made afterwards then name what this machine trained."""
    if not run("git", "status", "--porcelain", cwd=repo).stdout:
        return False
    run("git", "add", "-A", cwd=repo)
    run("git", "commit", "-q", "-m", message, cwd=repo)
    return True


def lock_outputs(lock_text: str) -> dict[str, str]:
    """The md5 of every stage output a dvc.lock records, by path (a directory's ends in .dir)."""
    stages = yaml.safe_load(lock_text)["stages"]
    return {out["path"]: out["md5"] for stage in stages.values() for out in stage.get("outs", [])}


def committed(repo: Path, path: str, rev: str = "HEAD") -> str:
    """A file's text as committed at REV."""
    return run("git", "show", f"{rev}:{path}", cwd=repo).stdout


def stages_run(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The stages a ``dvc repro`` actually ran, in order."""
    return STAGE_LINE.findall(result.stdout)


def set_param(repo: Path, dotted: str, value: object) -> None:
    """Edit one key of training/params.yaml (``None`` deletes it)."""
    path = repo / "training" / "params.yaml"
    document = yaml.safe_load(path.read_text())
    *parents, leaf = dotted.split(".")
    node = document
    for key in parents:
        node = node[key]
    if value is None:
        del node[leaf]
    else:
        node[leaf] = value
    path.write_text(yaml.safe_dump(document, sort_keys=False))


def copy_repo(repo: Path, dest: Path) -> Path:
    """An independent copy of a working clone: its DVC cache included, with its own bare origin
    and its own (empty) DVC remote, so that pushes and tags stay private to the copy."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(repo, dest, symlinks=True)
    origin = origin_of(dest)
    run("git", "clone", "-q", "--bare", dest, origin, cwd=dest.parent)
    run("git", "remote", "set-url", "origin", origin, cwd=dest)
    run("git", "fetch", "-q", "origin", cwd=dest)
    remote = remote_of(dest)
    remote.mkdir()
    run("dvc", "remote", "add", "--local", "--force", "--default", "local", remote, cwd=dest)
    return dest


def origin_of(repo: Path) -> Path:
    """The bare origin ``copy_repo`` made for a copy."""
    return repo.parent / f"{repo.name}-origin.git"


def remote_of(repo: Path) -> Path:
    """The DVC remote directory ``copy_repo`` made for a copy."""
    return repo.parent / f"{repo.name}-dvc-remote"


def png_size(data: bytes) -> tuple[int, int]:
    """Decode a PNG far enough to prove it is one: chunk CRCs, IHDR, and the inflated pixel data.

    Returns (width, height); raises AssertionError when anything does not add up.
    """
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    pos, chunks, idat = 8, [], b""
    header: tuple[int, ...] = ()
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in {kind!r} chunk"
        chunks.append(kind)
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert chunks[0] == b"IHDR" and chunks[-1] == b"IEND", f"bad chunk order {chunks}"
    width, height, depth, color, _, _, interlace = header
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color]
    assert interlace == 0 and depth == 8, "unexpected PNG layout"
    raw = zlib.decompress(idat)
    assert len(raw) == height * (1 + width * channels), "pixel data does not match IHDR"
    return width, height


def switch_to_example(repo: Path, name: str) -> None:
    """What docs/training.md ("The example datasets") tells a user to do in REPO: the example's
    params.yaml over training/params.yaml, its .dvc file into training/data/, then the data file
    it names written and checked against it (``make training-data``)."""
    example = ROOT / "training" / "examples" / name
    shutil.copy(example / "params.yaml", repo / "training/params.yaml")
    (dvc_file,) = example.glob("*.dvc")
    shutil.copy(dvc_file, repo / "training/data" / dvc_file.name)
    run("python", "-m", "training.bundled", "restore", cwd=repo)
