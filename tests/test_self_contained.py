"""Nothing make, the scripts or the tests run reads a path outside the repository.

The rule: every git-tracked file refers only to locations inside the checkout, so a fork's clone
works on its own. Exempt are `.ci/run`, the one place allowed to point a documented variable at an
offline copy of something the project otherwise downloads by pinned checksum, and Markdown, which
nothing runs. The scanner reports, as `file:line: what: text`:

- a reference to a sibling of the checkout (the `shared` directory beside it);
- a relative path with `..` that climbs above the repository root, resolved against the file's
  own directory, or against the root for files run from it (Makefile, mk/*.mk, the workflows)
  and for paths written as `ROOT / "..."`; `Path(__file__)` ancestors above the root;
- the home directory used as a location (make's and the shell's HOME variable, a tilde path,
  Python's home() and expand-user helpers, the HOME environment variable read from Python);
- absolute paths into a machine's user areas (the top-level work, home and root directories);
- a tracked symlink whose target lies outside the repository.

ALLOWED lists the few lines that match a pattern without reading outside the repository, each
with its reason; a test fails when one of them no longer exists.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXEMPT_FILES = {".ci/run"}
RUN_FROM_ROOT = re.compile(r"(Makefile|mk/[^/]+\.mk|\.github/workflows/[^/]+\.ya?ml)")

# (file, a substring of the line) -> why the match reads nothing outside the repository.
ALLOWED: dict[tuple[str, str], str] = {
    ("serving/Dockerfile", "rm -rf /build"): "a path inside the image being built",
    (
        "scripts/render-chart-readme.py",
        "[docs/deployment.md](",
    ): "a link written into charts/model/README.md, relative to that file",
}

BEFORE = r"(?:^|(?<=[\s\"'=:(,\[]))"  # a path starts here: line start, blank, quote, = : ( , [
PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("a sibling of the checkout", re.compile(r"\.\./+shared\b")),
    ("the home directory", re.compile(r"\$(?:\(HOME\)|\{HOME\}|HOME\b)")),
    ("the home directory", re.compile(BEFORE + r"~[/]")),
    ("the home directory", re.compile(r"\bPath\.home\(\)|\bexpand[u]ser\b")),
    (
        "the home directory",
        re.compile(r"""(?:environ\.get\(|getenv\(|environ\[)\s*["']HOME["']\s*[,)\]](?!\s*=)"""),
    ),
    (
        "an absolute path of a machine",
        re.compile(BEFORE + r"/(?:work|home|root)(?=[/\s\"'),\]]|$)"),
    ),
]
DOTS = re.compile(r"""(?<![\w.$}/\\-])\.\.(?=/|[\s"'`)\],;]|$)(?:/[^\s"'`<>()\[\]{},;]*)?""")
FROM_FILE = re.compile(
    r"Path\(__file__\)(?:\.resolve\(\))?(?:\.parents\[(\d+)\]|((?:\.parent\b)+))"
)
ROOT_JOIN = re.compile(r"""\bROOT\s*/\s*["']$""")


@dataclass(frozen=True)
class Finding:
    """One reference outside the repository: where, what kind, the line."""

    path: str
    line: int
    what: str
    text: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}: {self.text.strip()}"


def climbs_out(path: str, token: str, line_before: str) -> bool:
    """Whether TOKEN, a relative path with `..`, in file PATH leaves the repository root."""
    from_root = RUN_FROM_ROOT.fullmatch(path) or ROOT_JOIN.search(line_before)
    depth = 0 if from_root else len(PurePosixPath(path).parts) - 1
    for part in PurePosixPath(token).parts:
        depth += -1 if part == ".." else 0 if part == "." else 1
        if depth < 0:
            return True
    return False


def ancestor_out(path: str, match: re.Match[str]) -> bool:
    """Whether `Path(__file__)`'s ancestor in MATCH lies above the repository root."""
    index = int(match[1]) if match[1] is not None else match[2].count(".parent") - 1
    return index >= len(PurePosixPath(path).parts)  # parents[len - 1] is the root


def scan_line(path: str, number: int, text: str) -> Iterable[Finding]:
    for what, pattern in PATTERNS:
        if pattern.search(text):
            yield Finding(path, number, what, text)
    for token in DOTS.finditer(text):
        if climbs_out(path, token[0], text[: token.start()]):
            yield Finding(path, number, "a relative path above the repository root", text)
    for match in FROM_FILE.finditer(text):
        if ancestor_out(path, match):
            yield Finding(path, number, "an ancestor of the file above the repository root", text)


def scan(root: Path, paths: Iterable[str]) -> list[Finding]:
    """The references outside the repository in PATHS (relative to ROOT), minus ALLOWED."""
    findings: list[Finding] = []
    for path in paths:
        if path in EXEMPT_FILES or path.endswith(".md"):
            continue
        file = root / path
        if file.is_symlink():
            target = (file.parent / file.readlink()).resolve()
            if not target.is_relative_to(root.resolve()):
                findings.append(Finding(path, 0, "a symlink out of the repository", str(target)))
            continue
        try:
            text = file.read_text(encoding="utf-8")
        except (FileNotFoundError, IsADirectoryError, UnicodeDecodeError):
            continue  # deleted in the work tree, a submodule, or binary
        for number, line in enumerate(text.splitlines(), start=1):
            allowed = any(f == path and part in line for f, part in ALLOWED)
            if not allowed:
                findings.extend(scan_line(path, number, line))
    return findings


def tracked_files(root: Path) -> list[str]:
    result = subprocess.run(
        ["git", "ls-files", "-z"], cwd=root, capture_output=True, text=True, check=True
    )
    return [path for path in result.stdout.split("\0") if path]


# --- the rule, on the repository ---------------------------------------------------------------


def test_no_tracked_file_reads_a_path_outside_the_repository() -> None:
    findings = scan(ROOT, tracked_files(ROOT))
    assert not findings, "references outside the repository:\n" + "\n".join(map(str, findings))


def test_every_allowed_line_still_exists_so_the_allow_list_does_not_rot() -> None:
    for (path, part), reason in ALLOWED.items():
        assert part in (ROOT / path).read_text(), f"{path}: no line contains {part!r} ({reason})"


# --- the scanner, on synthetic files -----------------------------------------------------------

# Written in parts so that this file does not match its own patterns.
UP = "." + "."
HERE = "Path(__file" + "__).resolve()"


def write(root: Path, files: dict[str, str]) -> list[str]:
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    return list(files)


def findings_in(tmp_path: Path, files: dict[str, str]) -> list[str]:
    return [str(f) for f in scan(tmp_path, write(tmp_path, files))]


def test_the_scanner_reports_a_sibling_of_the_checkout_with_file_and_line(tmp_path: Path) -> None:
    found = findings_in(tmp_path, {"mk/x.mk": f"# data\nSCHEMAS ?= {UP}/shared/schemas\n"})
    assert found[0] == f"mk/x.mk:2: a sibling of the checkout: SCHEMAS ?= {UP}/shared/schemas"


@pytest.mark.parametrize(
    ("path", "line"),
    [
        ("mk/x.mk", "DVC_REMOTE_DIR ?= $" + "(HOME)/.cache/x"),
        ("scripts/x.sh", 'cache="$' + 'HOME/.cache/x"'),
        ("scripts/x.sh", 'cache="$' + '{HOME}/.cache/x"'),
        ("scripts/x.sh", "cp model ~" + "/models/"),
        ("scripts/x.py", "CACHE = Path." + "home() / '.cache'"),
        ("scripts/x.py", "CACHE = os.path.expand" + "user('x')"),
        ("scripts/x.py", 'CACHE = os.environ.get("' + 'HOME", "/tmp")'),
    ],
)
def test_the_scanner_reports_the_home_directory_as_a_location(
    tmp_path: Path, path: str, line: str
) -> None:
    assert f"{path}:1: the home directory: {line}" in findings_in(tmp_path, {path: line + "\n"})


@pytest.mark.parametrize("area", ["work", "home", "root"])
def test_the_scanner_reports_absolute_paths_of_a_machine(tmp_path: Path, area: str) -> None:
    line = f'DATA = Path("/{area}/someone/data")'
    found = findings_in(tmp_path, {"tests/test_x.py": line + "\n"})
    assert found == [f"tests/test_x.py:1: an absolute path of a machine: {line}"]


def test_the_scanner_reports_a_relative_path_that_climbs_above_the_root_only(
    tmp_path: Path,
) -> None:
    files = {
        "kustomize/overlays/dev/kustomization.yaml": f"resources:\n- {UP}/{UP}/base\n",
        "kustomize/overlays/prod/kustomization.yaml": f"resources:\n- {UP}/{UP}/{UP}/{UP}/x\n",
        "Makefile": f"DATA ?= {UP}/data\n",
        "tests/test_x.py": f'A = ROOT / "{UP}/outside"\nB = HERE / "{UP}/inside"\n',
    }
    assert sorted(findings_in(tmp_path, files)) == [
        f"Makefile:1: a relative path above the repository root: DATA ?= {UP}/data",
        "kustomize/overlays/prod/kustomization.yaml:2: a relative path above the repository "
        f"root: - {UP}/{UP}/{UP}/{UP}/x",
        f'tests/test_x.py:1: a relative path above the repository root: A = ROOT / "{UP}/outside"',
    ]


def test_the_scanner_reports_an_ancestor_of_the_file_above_the_root(tmp_path: Path) -> None:
    files = {
        "scripts/a.py": f"ROOT = {HERE}.parent.parent\n",
        "scripts/b.py": f"ROOT = {HERE}.parents[2]\n",
        "scripts/c.py": f"ROOT = {HERE}.parent.parent.parent\n",
        "tests/deploy/d.py": f"ROOT = {HERE}.parents[2]\n",
    }
    assert findings_in(tmp_path, files) == [
        "scripts/b.py:1: an ancestor of the file above the repository root: "
        f"ROOT = {HERE}.parents[2]",
        "scripts/c.py:1: an ancestor of the file above the repository root: "
        f"ROOT = {HERE}.parent.parent.parent",
    ]


def test_the_scanner_reports_a_symlink_out_of_the_repository(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "charts").mkdir(parents=True)
    (tmp_path / "outside.conf").write_text("x\n")
    (repo / "inside.conf").write_text("x\n")
    (repo / "charts" / "out.conf").symlink_to(Path(UP, UP, "outside.conf"))
    (repo / "charts" / "in.conf").symlink_to(Path(UP, "inside.conf"))
    found = [str(f) for f in scan(repo, ["charts/out.conf", "charts/in.conf"])]
    assert found == [f"charts/out.conf:0: a symlink out of the repository: {tmp_path}/outside.conf"]


def test_the_scanner_exempts_only_ci_run_and_markdown(tmp_path: Path) -> None:
    line = f"SCHEMAS={UP}/shared/schemas\n"
    files = {".ci/run": line, "docs/x.md": line, ".ci/other": line, "docs/x.txt": line}
    assert sorted(f.split(":")[0] for f in findings_in(tmp_path, files)) == [
        ".ci/other",
        "docs/x.txt",
    ]
