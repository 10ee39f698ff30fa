"""The hashed Python locks in requirements/ agree with pyproject.toml and with each other, and
every install the project makes reads one of them with --require-hashes.

requirements/lock.py writes the locks (`make lock`) and checks them (`make lock-check`); these
tests read the committed files on their own, then show that the check names each kind of drift.
Offline: nothing here resolves or downloads a package.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "requirements"
LOCKS = ("tools", "serving", "dev", "serving-sklearn", "fetch", "sbom", "checkov", "mlserver")
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+)")


def load_lock_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lock", REQUIREMENTS / "lock.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["lock"] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(lock: str) -> list[str]:
    """The requirement lines of a lock, each joined with its backslash-continued hashes."""
    text = (REQUIREMENTS / f"{lock}.txt").read_text().replace("\\\n", " ")
    return [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def pins(lock: str) -> dict[str, str]:
    found = {}
    for line in requirements(lock):
        match = PIN.match(line)
        assert match, f"{lock}.txt: not a pin: {line[:80]}"
        found[norm(match["name"])] = match["version"]
    return found


def extra(name: str) -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {
        norm(re.match(r"[A-Za-z0-9._-]+", x)[0])  # type: ignore[index]
        for x in project["optional-dependencies"][name]
    }


@pytest.mark.parametrize(
    ("lock", "extras"),
    [("serving", ("serving",)), ("dev", ("serving", "training", "dev"))],
)
def test_every_package_of_its_extras_is_pinned_in_the_lock(
    lock: str, extras: tuple[str, ...]
) -> None:
    named = set().union(*(extra(e) for e in extras))
    assert named - set(pins(lock)) == set()


@pytest.mark.parametrize("lock", LOCKS)
def test_every_line_of_a_lock_is_an_exact_pin_with_sha256_hashes(lock: str) -> None:
    lines = requirements(lock)
    assert lines, f"{lock}.txt pins nothing"
    for line in lines:
        assert PIN.match(line), f"{lock}.txt: not an exact pin: {line[:80]}"
        assert re.search(r"--hash=sha256:[0-9a-f]{64}", line), f"{lock}.txt: no hash: {line[:80]}"


def test_the_serving_lock_carries_none_of_the_training_or_dev_packages() -> None:
    serving = set(pins("serving"))
    assert not {"dvc", "gto", "pandas", "schemathesis", "pytest", "pip", "setuptools"} & serving
    assert (extra("training") | extra("dev")) - extra("serving") & serving == set()


def test_the_dev_lock_has_every_serving_package_at_the_images_version() -> None:
    dev, serving = pins("dev"), pins("serving")
    assert {name: dev.get(name) for name in serving} == serving


def test_the_fetch_lock_has_the_dev_locks_dvc_and_gto_and_their_dependencies() -> None:
    dev, fetch = pins("dev"), pins("fetch")
    assert {"dvc", "gto"} <= set(fetch)
    assert {name: dev.get(name) for name in fetch} == fetch


@pytest.mark.parametrize("lock", LOCKS)
def test_each_lock_says_what_it_is_for_and_how_to_regenerate_it(lock: str) -> None:
    text = (REQUIREMENTS / f"{lock}.txt").read_text()
    head = text[: text.index("\n#\n")]
    assert "make lock" in head
    assert re.search(rf"#    pip-compile .*--generate-hashes.* {lock}\.in\n", text)
    assert (REQUIREMENTS / f"{lock}.in").exists()


def test_the_committed_locks_pass_make_lock_check() -> None:
    done = subprocess.run(
        [sys.executable, str(REQUIREMENTS / "lock.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")


def copy_of_the_sources(tmp_path: Path) -> Path:
    (tmp_path / "requirements").mkdir()
    for path in REQUIREMENTS.glob("*.in"):
        shutil.copy(path, tmp_path / "requirements")
    for path in REQUIREMENTS.glob("*.txt"):
        shutil.copy(path, tmp_path / "requirements")
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{path.name} has no {old!r}"
    path.write_text(text.replace(old, new, 1))


def bump(lock: Path, name: str) -> None:
    match = re.search(rf"^{name}==(\S+) ", lock.read_text(), re.MULTILINE)
    assert match
    edit(lock, f"{name}=={match[1]} ", f"{name}=={match[1]}.post99 ")


# Each kind of drift: how to make it in a copy of the sources, and what the check must say.
DRIFTS: dict[str, tuple[Callable[[Path], object], list[str]]] = {
    "a package added to an extra": (
        lambda root: edit(root / "pyproject.toml", '"pyuwsgi",', '"pyuwsgi",\n    "waitress",'),
        [
            "requirements/serving.in: differs from pyproject.toml; run make lock",
            "requirements/dev.in: differs from pyproject.toml; run make lock",
        ],
    ),
    "a pin without its hashes": (
        lambda root: (root / "requirements" / "serving.txt").write_text(
            re.sub(
                r"^(flask==\S+) \\\n(    --hash=\S+ \\\n)*    --hash=\S+\n",
                r"\1\n",
                (root / "requirements" / "serving.txt").read_text(),
                flags=re.MULTILINE,
            )
        ),
        ["requirements/serving.txt: not a hashed pin: flask=="],
    ),
    "a package missing from its lock": (
        lambda root: edit(root / "requirements" / "fetch.in", "gto\n", "gto\nwaitress\n"),
        ["requirements/fetch.txt: lacks waitress, which fetch.in names"],
    ),
    "a dev version other than the image's": (
        lambda root: bump(root / "requirements" / "serving.txt", "numpy"),
        ["requirements/dev.txt: numpy ", "differs from serving.txt's "],
    ),
    "a training package in the image": (
        lambda root: edit(
            root / "requirements" / "serving.txt",
            "flask==",
            "dvc==3.0.0 \\\n    --hash=sha256:" + "0" * 64 + "\nflask==",
        ),
        ["requirements/serving.txt: holds dvc, a training or dev package"],
    ),
    "a pickle library of the MLServer lock other than dev's": (
        lambda root: bump(root / "requirements" / "mlserver.txt", "scikit-learn"),
        ["requirements/mlserver.txt: scikit-learn ", "differs from dev.txt's 1."],
    ),
    "a dev lock moved without regenerating mlserver.in": (
        lambda root: bump(root / "requirements" / "dev.txt", "joblib"),
        ["requirements/mlserver.in: differs from its SETS entry in requirements/lock.py"],
    ),
    "a lock without make lock's header": (
        lambda root: edit(root / "requirements" / "tools.txt", "# Regenerate every lock", "#"),
        ["requirements/tools.txt: header is not make lock's for tools.in; run make lock"],
    ),
}


@pytest.mark.parametrize("drift", DRIFTS, ids=str)
def test_the_check_names_each_kind_of_drift(tmp_path: Path, drift: str) -> None:
    lock = load_lock_module()
    root = copy_of_the_sources(tmp_path)
    assert lock.problems(root) == []
    change, expected = DRIFTS[drift]
    change(root)
    found = "\n".join(lock.problems(root))
    for text in expected:
        assert text in found


INSTALLERS = [
    ROOT / "Makefile",
    *sorted(ROOT.glob("mk/*.mk")),
    ROOT / "serving" / "Dockerfile",
    *sorted(ROOT.glob("images/*/Dockerfile")),
]
# Which lock each install reads, as its command line ends.
INSTALLED_BY = {
    "tools": ("Makefile", "-r requirements/tools.txt"),
    "dev": ("Makefile", "-r requirements/dev.txt"),
    "checkov": ("mk/deploy.mk", "-r requirements/checkov.txt"),
    "mlserver": ("mk/serving.mk", "-r requirements/mlserver.txt"),
    "fetch": ("serving/Dockerfile", "-r /build/fetch.txt"),
    "sbom": ("serving/Dockerfile", "-r /build/sbom.txt"),
    "serving": ("serving/Dockerfile", "-r /build/serving.txt"),
    "serving-sklearn": ("serving/Dockerfile", "-r /build/serving-sklearn.txt"),
}
# The one install without hashes: the project itself, without its dependencies (the dev lock has
# them), built by the dev lock's setuptools.
PROJECT_INSTALL = "pip install -q --no-deps --no-build-isolation -e ."


def pip_installs(path: Path) -> list[str]:
    """Each `pip install` command of a Makefile or Dockerfile (`pip --python PY install` too),
    continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    install = re.compile(r"\bpip3?(?: --python \S+)? install\b[^\n&;|]*")
    return [m[0].strip() for m in install.finditer(text)]


def test_every_pip_install_of_make_and_the_images_requires_hashes() -> None:
    unhashed = [
        f"{path.relative_to(ROOT)}: {command}"
        for path in INSTALLERS
        for command in pip_installs(path)
        if not ("--require-hashes" in command and re.search(r" -r \S+\.txt$", command))
        and command != PROJECT_INSTALL
    ]
    assert unhashed == []
    assert PROJECT_INSTALL in pip_installs(ROOT / "Makefile")


@pytest.mark.parametrize("lock", INSTALLED_BY)
def test_each_lock_is_what_one_install_reads(lock: str) -> None:
    path, ending = INSTALLED_BY[lock]
    assert any(c.endswith(ending) for c in pip_installs(ROOT / path)), f"{path} never reads it"


def test_the_image_build_context_holds_the_four_locks_the_dockerfile_installs() -> None:
    rules = set((ROOT / ".dockerignore").read_text().splitlines())
    locks = ("fetch", "serving", "serving-sklearn", "sbom")
    assert {f"!requirements/{name}.txt" for name in locks} <= rules
    assert not {"!constraints.txt", "!pyproject.toml"} & set(rules)


def test_dependabot_recompiles_the_locks_where_their_in_files_are() -> None:
    config = yaml.safe_load((ROOT / ".github" / "dependabot.yml").read_text())
    updates = {u["package-ecosystem"]: u for u in config["updates"]}
    assert updates["pip"]["directory"] == "/requirements"
    assert {path.stem for path in REQUIREMENTS.glob("*.txt")} == set(LOCKS)
    assert {path.stem for path in REQUIREMENTS.glob("*.in")} == set(LOCKS)
    assert {"github-actions", "pip", "docker"} <= set(updates)
    assert all(u["cooldown"]["default-days"] >= 7 for u in updates.values())


def test_ci_caches_the_venv_and_reports_training_on_the_dev_lock() -> None:
    workflows = ROOT / ".github" / "workflows"
    ci = (workflows / "ci.yml").read_text()
    assert "hashFiles('requirements/dev.txt', 'pyproject.toml')" in ci
    report = yaml.safe_load((workflows / "training-report.yml").read_text())
    assert "requirements/dev.txt" in report[True]["pull_request"]["paths"]  # `on:` loads as True
    assert not [p.name for p in workflows.glob("*.yml") if "constraints.txt" in p.read_text()]
