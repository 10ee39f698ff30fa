"""The bundled datasets: tabular data scikit-learn ships (and one generated table), written to CSV
files byte for byte.

    python -m training.bundled write wine training/data/wine.csv  # a bundled set, to any path
    python -m training.bundled restore  # each missing bundled file a training/data/*.dvc names
    python -m training.bundled check    # regenerate each in memory: the bytes its .dvc records?

Role: the raw data of the pipeline is a DVC-tracked file (``training/data/breast_cancer.csv`` by
default, its ``.dvc`` file committed). A clone whose DVC remote does not hold it (a fresh clone on
another machine, the demo sandbox, the tests) gets it back here: ``restore`` writes the file, checks
that its md5 is the one the ``.dvc`` file records, and puts it in the DVC cache (``dvc commit``), so
``dvc push`` sends it on like any other version. A file already present is left alone (it may be a
new data version). Callers: ``make training-data`` (mk/training.mk), training.demo, the tests.

The bytes are pinned, not left to a library's formatting: the header, then one line per row, cells
joined by ``,``, ``\\n`` line ends, every number written as Python's ``repr`` of the float64
scikit-learn loads (the shortest text that reads back as exactly that float, the same on every
platform), labels as their names (a regression's target, diabetes', as its number's ``repr``).
The same scikit-learn data gives the same file everywhere. ``churn`` is not scikit-learn's: it is
generated, seeded, by training/churn.py (a classification table with categorical columns and
missing cells, the example of training/examples/churn/), and written by its own rule.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from training.errors import StageError, run_stage

DATA_DIR = Path("training/data")


@dataclass(frozen=True)
class Bundled:
    """One dataset scikit-learn ships: its loader and the name of the label column."""

    loader: Callable[[], Any]
    target: str
    summary: str
    #: The target is a number (``data.task: regression``), written as the float it is.
    regression: bool = False
    #: A generated table: ``loader`` returns its CSV bytes (not a scikit-learn bunch).
    generated: bool = False


def _breast_cancer() -> Any:
    from sklearn.datasets import load_breast_cancer

    return load_breast_cancer()


def _wine() -> Any:
    from sklearn.datasets import load_wine

    return load_wine()


def _diabetes() -> Any:
    from sklearn.datasets import load_diabetes

    return load_diabetes(scaled=False)  # the measurements as taken, not mean-centred


def _churn() -> bytes:
    from training import churn

    return churn.csv_bytes()


#: ``<name>.csv`` under training/data is the bundled dataset ``name``.
BUNDLED = {
    "breast_cancer": Bundled(
        _breast_cancer, "diagnosis", "569 rows, 30 features, benign/malignant (the default)"
    ),
    "wine": Bundled(_wine, "cultivar", "178 rows, 13 features, class_0/class_1/class_2"),
    "diabetes": Bundled(
        _diabetes,
        "progression",
        "442 rows, 10 features, a number: disease progression a year on (data.task: regression)",
        regression=True,
    ),
    "churn": Bundled(
        _churn,
        "churned",
        "1000 rows, 6 features (3 categorical, 4 with missing cells), yes/no; generated, seeded",
        generated=True,
    ),
}


def snake_case(name: str) -> str:
    """``'worst concave points'`` -> ``'worst_concave_points'``."""
    return re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_")


def csv_bytes(name: str) -> bytes:
    """The bundled dataset NAME as CSV: snake_case feature columns in scikit-learn's order, then
    the label column holding the class names (a regression's: the target's numbers)."""
    spec = BUNDLED[name]
    if spec.generated:
        data: bytes = spec.loader()
        return data
    bunch = spec.loader()
    header = [snake_case(str(column)) for column in bunch.feature_names] + [spec.target]
    if spec.regression:
        lines = [",".join(header)]
        for row, value in zip(bunch.data.tolist(), bunch.target.tolist(), strict=True):
            lines.append(",".join(repr(float(cell)) for cell in [*row, value]))
        return ("\n".join(lines) + "\n").encode("ascii")
    labels = [str(label) for label in bunch.target_names]
    for cell in [*header, *labels]:
        if not re.fullmatch(r"[0-9A-Za-z_]+", cell):
            raise StageError(f"bundled {name}: {cell!r} would need CSV quoting")
    lines = [",".join(header)]
    for row, label in zip(bunch.data.tolist(), bunch.target.tolist(), strict=True):
        lines.append(",".join([*(repr(float(value)) for value in row), labels[label]]))
    return ("\n".join(lines) + "\n").encode("ascii")


def md5_bytes(data: bytes) -> str:
    """DVC 3's hash of a file: the md5 of its bytes."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def recorded_md5(dvc_file: Path) -> tuple[Path, str]:
    """The data file a ``.dvc`` file tracks (its path) and the md5 it records."""
    try:
        document = yaml.safe_load(dvc_file.read_text(encoding="utf-8"))
        (out,) = document["outs"]
        return dvc_file.parent / str(out["path"]), str(out["md5"])
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError):
        raise StageError(f"{dvc_file}: not a .dvc file tracking one file") from None


def bundled_dvc_files(data_dir: Path) -> list[tuple[str, Path]]:
    """(bundled name, .dvc file) for every ``<bundled name>.csv.dvc`` in DATA_DIR."""
    return [
        (name, data_dir / f"{name}.csv.dvc")
        for name in sorted(BUNDLED)
        if (data_dir / f"{name}.csv.dvc").is_file()
    ]


def write(name: str, path: Path) -> str:
    """Write the bundled dataset NAME to PATH (atomically); return its md5."""
    if name not in BUNDLED:
        raise StageError(f"no bundled dataset {name!r} (bundled: {', '.join(sorted(BUNDLED))})")
    data = csv_bytes(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    partial.replace(path)
    return md5_bytes(data)


def check(data_dir: Path) -> list[str]:
    """Regenerate every bundled file a .dvc in DATA_DIR names, in memory; one line per file."""
    lines = []
    for name, dvc_file in bundled_dvc_files(data_dir):
        path, expected = recorded_md5(dvc_file)
        actual = md5_bytes(csv_bytes(name))
        if actual != expected:
            raise StageError(mismatch(path, dvc_file, actual, expected))
        lines.append(f"{path}: regenerates byte for byte (md5 {expected})")
    return lines


def mismatch(path: Path, dvc_file: Path, actual: str, expected: str) -> str:
    import sklearn

    return (
        f"{path}: scikit-learn {sklearn.__version__} writes md5 {actual}, {dvc_file.name} "
        f"records {expected}: dvc pull it from the remote that holds it"
    )


def restore(data_dir: Path, repo: Path) -> list[str]:
    """Write each missing bundled file a .dvc in DATA_DIR names, check its md5 against the .dvc
    before it takes the file's place, and add it to REPO's DVC cache; one line per file."""
    lines = []
    for name, dvc_file in bundled_dvc_files(data_dir):
        path, expected = recorded_md5(dvc_file)
        if path.exists():
            lines.append(f"{path}: present, left as it is")
            continue
        data = csv_bytes(name)
        actual = md5_bytes(data)
        if actual != expected:
            raise StageError(mismatch(path, dvc_file, actual, expected))
        partial = path.with_name(f".{path.name}.partial")
        partial.write_bytes(data)
        partial.replace(path)
        dvc(repo, "commit", "--force", "--quiet", str(dvc_file.resolve()))
        lines.append(f"{path}: written from scikit-learn (md5 {expected}, as {dvc_file.name})")
    return lines


def dvc(repo: Path, *args: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=repo, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        raise StageError(
            f"dvc {' '.join(args)} failed: {lines[-1] if lines else result.returncode}"
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    put = commands.add_parser("write", help="write one bundled dataset to a CSV file")
    put.add_argument("name", choices=sorted(BUNDLED))
    put.add_argument("path", type=Path)
    for command, text in (
        ("restore", "write each missing bundled file a .dvc names, checked against it"),
        ("check", "regenerate each bundled file a .dvc names in memory and compare"),
    ):
        sub = commands.add_parser(command, help=text)
        sub.add_argument("--data-dir", type=Path, default=DATA_DIR, help=f"default {DATA_DIR}")
        sub.add_argument("--repo", type=Path, default=Path(), help="repository root (default .)")
    args = parser.parse_args(argv)
    if args.command == "write":
        print(f"{args.path}: {BUNDLED[args.name].summary}, md5 {write(args.name, args.path)}")
        return
    data_dir = args.data_dir if args.data_dir.is_absolute() else args.repo / args.data_dir
    lines = restore(data_dir, args.repo) if args.command == "restore" else check(data_dir)
    print("\n".join(lines) or f"no bundled dataset's .dvc file in {data_dir}")


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
