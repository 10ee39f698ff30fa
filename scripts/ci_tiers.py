#!/usr/bin/env python3
"""Which heavy test tiers a change needs: the path filters of the CI workflow, in one table.

usage: scripts/ci_tiers.py [--all] [FILE ...]      (or the changed files on stdin, one a line)
       scripts/ci_tiers.py --check                 (the table covers what the tests exercise)

Prints ``integration=true|false`` and ``e2e=true|false``, the lines .github/workflows/ci.yml
appends to $GITHUB_OUTPUT; the unit tier always runs. A file that needs a tier is one under a
prefix of that tier in TIERS; a file under EVERY_TIER needs both; a file under UNIT_ONLY needs
neither; any other file needs both, so a new directory is tested fully until it gets a rule.
``--all`` (a push to an environment branch) needs every tier.

The table is checked, not trusted: ``--check`` (and tests/test_ci_tiers.py, in the unit tier of
every pull request) derives what each heavy tier's test modules exercise and fails on any such
path the table does not send to that tier. A module belongs to a tier when it uses the tier's
pytest marker (``pytest.mark.e2e``: on the module, a test or a parameter); what it exercises is
itself, its conftest.py files, the suite plugins they load, what it imports within the
repository (transitively), the files and directories it names in string literals or
``ROOT / "a" / "b"`` chains, the modules it names as ``"pkg.module"`` (``python -m``), and what
the workflow files it names run. Only test and repository code is read (ast), never imported.
"""

from __future__ import annotations

import argparse
import ast
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath

#: The prefixes whose changes each heavy tier tests (mk/tests.mk says what a tier runs).
TIERS: dict[str, tuple[str, ...]] = {
    "integration": (
        # the workflows themselves: their act walks (tests/workflows) run in this tier
        ".github/workflows/", ".dvc/", ".dvcignore", "argocd/", "charts/", "environments.toml",
        "evidence.toml", "gitops/", "kustomize/", "retraining/",
        "modelcard/", "rendered/", "scripts/", "tests/deploy/", "tests/gitops/", "tests/training/",
        "tests/retraining/", "tests/workflows/", "training/",
        # the suite plugin every tier loads (tests/conftest.py: image.builds) and what it reads;
        # tests/deploy/conftest.py names the server configuration the checkov scan reads
        "images/", "tests/image/", "serving/__init__.py", "serving/readiness.py",
        "serving/config/",
        # the provenance id gitops.smoke, gitops.demo and images/pod.py check answers against
        "serving/provenance.py",
        # what the image ships of gitops/ and retraining/ (tests/retraining/test_relay.py)
        "serving/Dockerfile",
        # the drift alert loop's plugin (tests/conftest.py: alert_loop.fixtures) and its imports
        "devstack/", "tests/alert_loop/", "tests/serving/serving_testkit.py",
        # the regression tests' diabetes workspace (tests/training and tests/serving import it)
        "tests/regression_kit.py",
        # the stand-in images and CI's signing the promotion tests' image gate reads back
        "tests/registry_kit.py",
    ),
    "e2e": (
        # every workflow: promote.yml and the act walks that build and push the image run here
        ".github/workflows/", "environments.toml", "evidence.toml", "gitops/", "retraining/",
        "tests/workflows/",
        "bench/", "charts/", "devstack/", "images/", "kustomize/", "modelcard/", "rendered/",
        "scripts/", "serving/",
        "tests/deploy/",
        "tests/image/", "tests/serving/",
        # the drift alert loop, whose dispatch the retrain walk is fed, and the relay server it runs
        "tests/alert_loop/", "tests/retraining/relay_server.py",
        # what the pipeline trains is served: the second dataset's walk ends in a real stack
        "training/", "tests/training/test_training_second_dataset.py",
        "tests/training/test_training_columns_served.py", "tests/training/columns_table.py",
        # the example datasets, switched to, trained and served from an image in a pod
        "tests/training/test_training_examples_served.py",
        "tests/training/conftest.py", "tests/training/training_helpers.py",
        "tests/regression_kit.py", "tests/registry_kit.py",
        # the rename walk (tests/image/test_image_rename_walk.py): its make render writes the
        # AppProject's description from the renamed params.yaml; the image walk renders argocd/
        "argocd/",
    ),
}  # fmt: skip
#: Paths a file names without exercising them (naming file, path): why --check does not count them.
NAMED_NOT_EXERCISED: dict[tuple[str, str], str] = {
    ("tests/workflows/test_act_walks.py", "README.md"): "committed to in a sandbox clone",
    ("tests/workflows/test_register.py", "README.md"): "committed to in a sandbox clone",
    ("tests/workflows/test_act_walks.py", "serving/app.py"): "committed to in a sandbox clone",
    ("gitops/check_pr_order.py", "serving/Dockerfile"): "a pattern of changed paths it orders",
    ("gitops/doctor.py", ".github/CODEOWNERS"): "read on GitHub, through its API, not here",
    ("scripts/render-chart-readme.py", "README.md"): "the chart's README.md, under --chart",
}
#: What every tier is built from: the toolchain, the test harness, this table.
EVERY_TIER = (
    ".ci/", ".dockerignore", ".github/workflows/ci.yml", "Makefile", "mk/", "pyproject.toml",
    "requirements/", "tests/conftest.py", "tests/xdist_groups.py",
)  # fmt: skip
#: What only the unit tier checks (docs, repository metadata such as CODEOWNERS and Dependabot).
UNIT_ONLY = (
    ".github/", ".gitignore", ".pre-commit-config.yaml", ".yamllint.yaml", "LICENSE", "README.md",
    "docs/", "tests/test_",
)  # fmt: skip


def tiers_for(
    paths: Iterable[str], tiers: Mapping[str, tuple[str, ...]] = TIERS
) -> dict[str, bool]:
    """Each heavy tier, and whether any of PATHS needs it under TIERS (its prefixes)."""
    needed = dict.fromkeys(tiers, False)
    for path in paths:
        if path.startswith(EVERY_TIER):
            return dict.fromkeys(tiers, True)
        hits = [tier for tier, prefixes in tiers.items() if path.startswith(prefixes)]
        if not hits and not path.startswith(UNIT_ONLY):
            return dict.fromkeys(tiers, True)  # no rule for it: test it fully
        needed.update(dict.fromkeys(hits, True))
    return needed


# --- what the heavy tiers' test modules exercise (--check) -------------------------------------

#: A string that may be a path: no spaces, no quotes, no wildcards.
_PATHLIKE = re.compile(r"[\w.-]+(?:/[\w.-]+)*/?")
_DOTTED = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+")
#: This file: its table names paths, it runs none of them.
_SELF = "scripts/ci_tiers.py"


def _normalize(path: str) -> str:
    parts: list[str] = []
    for part in path.split("/"):
        if part == "..":
            if not parts:
                return ""
            parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return "/".join(parts)


def _docstring_nodes(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        scopes = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
        if isinstance(node, scopes) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def _path_chain(node: ast.expr) -> list[ast.expr]:
    """The operands of ``a / b / c``, in order."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        return _path_chain(node.left) + _path_chain(node.right)
    return [node]


def string_literals(tree: ast.AST) -> set[str]:
    """The strings a module may name paths with: its literals that hold a ``/`` or a dot (not
    docstrings), and the string runs of its ``ROOT / "images" / "upstream"`` chains joined."""
    skip = _docstring_nodes(tree)
    inner = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            skip.update(id(leaf) for leaf in _path_chain(node))
            inner.add(id(node.left))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            if "/" in node.value or "." in node.value[1:]:
                found.add(node.value)
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and id(node) not in inner:
            run: list[str] = []
            for leaf in [*_path_chain(node), None]:
                if isinstance(leaf, ast.Constant) and isinstance(leaf.value, str):
                    run.append(leaf.value)
                elif run:
                    found.add("/".join(run))
                    run = []
    return found


def tracked(root: Path) -> list[str]:
    """The repository's files, as git lists them."""
    listed = subprocess.run(
        ["git", "ls-files"], cwd=root, capture_output=True, text=True, check=True
    ).stdout
    return listed.splitlines()


class Exercised:
    """What test modules exercise in a repository of FILES (paths relative to ROOT): the role of
    --check. ``of(module)`` is the closure of one test module, sorted by nothing."""

    def __init__(self, root: Path, files: Iterable[str]) -> None:
        self.root = root
        self.files = set(files)
        self.members: dict[str, set[str]] = {}
        self._followed: dict[str, tuple[set[str], set[str]]] = {}
        for path in self.files:
            for parent in PurePosixPath(path).parents:
                if str(parent) != ".":
                    self.members.setdefault(str(parent), set()).add(path)

    def named(self, text: str, here: str) -> tuple[set[str], set[str]]:
        """The files TEXT names from the root or from directory HERE, and those of a directory it
        names (a unique file name or tail, ``promote.yml``, also counts)."""
        text = text.strip()
        if len(text) < 2 or not _PATHLIKE.fullmatch(text):
            return set(), set()
        files: set[str] = set()
        in_dirs: set[str] = set()
        for base in ("", here):
            candidate = _normalize(f"{base}/{text}")
            if candidate in self.files:
                files.add(candidate)
            elif candidate in self.members and candidate != "tests":
                in_dirs |= self.members[candidate]
        tail = text.strip("/")
        if not files and not in_dirs and ("/" in tail or "." in tail[1:]):
            ends = {path for path in self.files if path.endswith("/" + tail)}
            if len(ends) == 1 or "/" in tail:
                files |= ends
        return files, in_dirs

    def _import_base(self, path: str) -> str:
        """Where pytest's rootdir-relative import puts PATH's top package (or PATH's directory)."""
        directory = PurePosixPath(path).parent
        while str(directory) != "." and str(directory / "__init__.py") in self.files:
            directory = directory.parent
        return "" if str(directory) == "." else str(directory)

    def module(self, name: str, bases: Sequence[str]) -> set[str]:
        """The files of module NAME (and its packages' __init__.py) under the first of BASES."""
        parts = name.split(".")
        for base in bases:
            stem = _normalize("/".join([base, *parts]))
            for candidate in (stem + ".py", stem + "/__init__.py"):
                if candidate in self.files:
                    inits = {
                        _normalize("/".join([base, *parts[:i], "__init__.py"]))
                        for i in range(1, len(parts))
                    }
                    return {candidate} | (inits & self.files)
        return set()

    def python(self, path: str) -> tuple[set[str], set[str]]:
        """What the Python file PATH imports, loads as plugins and names."""
        tree = ast.parse((self.root / path).read_text(encoding="utf-8"), path)
        here = str(PurePosixPath(path).parent)
        bases = ("", self._import_base(path))
        files: set[str] = set()
        in_dirs: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    files |= self.module(alias.name, bases)
            elif isinstance(node, ast.ImportFrom) and node.level:
                package = _normalize(
                    f"{PurePosixPath(path).parents[node.level - 1]}/"
                    + (node.module or "").replace(".", "/")
                )
                for stem in [package, *(f"{package}/{alias.name}" for alias in node.names)]:
                    files |= {stem + ".py", stem + "/__init__.py"} & self.files
            elif isinstance(node, ast.ImportFrom) and node.module:
                files |= self.module(node.module, bases)
                for alias in node.names:
                    files |= self.module(f"{node.module}.{alias.name}", bases)
            elif isinstance(node, ast.Assign) and any(
                isinstance(target, ast.Name) and target.id == "pytest_plugins"
                for target in node.targets
            ):
                for plugin in ast.literal_eval(node.value):
                    files |= self.module(plugin, bases)
        if path != _SELF:
            for text in string_literals(tree):
                if _DOTTED.fullmatch(text):
                    files |= self.module(text, ("",))
                named, named_dirs = self.named(text, here)
                files |= named
                in_dirs |= named_dirs
        return self._counted(path, files), self._counted(path, in_dirs)

    @staticmethod
    def _counted(namer: str, paths: set[str]) -> set[str]:
        return {path for path in paths if (namer, path) not in NAMED_NOT_EXERCISED}

    def workflow(self, path: str) -> tuple[set[str], set[str]]:
        """What the workflow file PATH runs: the repository paths and ``-m`` modules its steps'
        ``run`` scripts, ``uses`` and ``with`` values name (not its comments or step names)."""
        import yaml  # only --check reads workflows; ci.yml runs the table with a bare python3

        document = yaml.safe_load((self.root / path).read_text(encoding="utf-8")) or {}
        texts: list[str] = []
        for job in (document.get("jobs") or {}).values():
            for step in job.get("steps") or []:
                texts += [str(step.get("run", "")), str(step.get("uses", ""))]
                texts += [str(value) for value in (step.get("with") or {}).values()]
        # not comments, nor the messages of ::error:: annotations
        text = re.sub(r"(^|\s)#.*|::(?:error|warning|notice)::.*", "", "\n".join(texts))
        files: set[str] = set()
        in_dirs: set[str] = set()
        for token in re.findall(r"[\w./-]+", text):
            if "/" in token:
                named, named_dirs = self.named(token, "")
                files |= named
                in_dirs |= named_dirs
        for name in re.findall(r"-m\s+([\w.]+)", text):
            files |= self.module(name, ("",))
        return files, in_dirs

    def of(self, test: str) -> set[str]:
        """Every file test module TEST exercises: itself, its conftest.py files and what they all
        import, load and name, followed through the Python and workflow files among them (the
        files of a named directory count, but are not followed)."""
        todo = [test] + [
            f"{parent}/conftest.py"
            for parent in PurePosixPath(test).parents
            if str(parent) != "." and f"{parent}/conftest.py" in self.files
        ]
        followed: set[str] = set()
        found: set[str] = set(todo)
        while todo:
            path = todo.pop()
            if path in followed:
                continue
            followed.add(path)
            if path not in self._followed and path.endswith(".py"):
                self._followed[path] = self.python(path)
            elif path not in self._followed and path.startswith(".github/workflows/"):
                self._followed[path] = self.workflow(path)
            files, in_dirs = self._followed.get(path, (set(), set()))
            found |= files | in_dirs
            todo.extend(files - followed)
        return found


def tier_modules(root: Path, files: Iterable[str], tiers: Iterable[str]) -> dict[str, list[str]]:
    """The test modules (tests/**/test_*.py) of each of TIERS: those that use its marker."""
    wanted = set(tiers)
    modules: dict[str, list[str]] = {tier: [] for tier in wanted}
    for path in sorted(files):
        name = PurePosixPath(path).name
        if not (path.startswith("tests/") and name.startswith("test_") and name.endswith(".py")):
            continue
        tree = ast.parse((root / path).read_text(encoding="utf-8"), path)
        marks = {
            node.attr
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "mark"
        }
        for tier in sorted(marks & wanted):
            modules[tier].append(path)
    return modules


def uncovered(
    root: Path, files: Iterable[str], tiers: Mapping[str, tuple[str, ...]] = TIERS
) -> dict[str, dict[str, list[str]]]:
    """For each heavy tier, the exercised paths a change to which would not run it under TIERS,
    each with the test modules that exercise it (empty: the table is complete)."""
    files = list(files)
    exercised = Exercised(root, files)
    gaps: dict[str, dict[str, list[str]]] = {}
    for tier, modules in tier_modules(root, files, tiers).items():
        gaps[tier] = {}
        for module in modules:
            for path in sorted(exercised.of(module)):
                if not tiers_for([path], tiers)[tier]:
                    gaps[tier].setdefault(path, []).append(module)
    return gaps


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="scripts/ci_tiers.py", description=__doc__)
    parser.add_argument("files", nargs="*", metavar="FILE", help="changed files (else stdin)")
    parser.add_argument("--all", action="store_true", help="every tier, whatever changed")
    parser.add_argument(
        "--check", action="store_true", help="fail on exercised paths the table does not cover"
    )
    args = parser.parse_args(argv)
    if args.check:
        root = Path(__file__).resolve().parents[1]
        gaps = uncovered(root, tracked(root))
        for tier, paths in gaps.items():
            for path, modules in paths.items():
                print(f"{path}: exercised by {', '.join(modules)}; does not run {tier} (TIERS)")
        return 1 if any(gaps.values()) else 0
    files = args.files or [line.strip() for line in sys.stdin if line.strip()]
    needed = dict.fromkeys(TIERS, True) if args.all else tiers_for(files)
    for tier, value in needed.items():
        print(f"{tier}={str(value).lower()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
