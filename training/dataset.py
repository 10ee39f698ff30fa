"""The raw data file, checked against its description (the ``data`` section of params.yaml).

Role: prepare reads the raw table with :func:`load_raw`, which refuses a file that does not match
its description with one line naming the column and the problem (a missing column, a value that
is not a number, a missing value, a label not in ``data.classes``, a class with too few rows to
split); train and evaluate read the splits prepare wrote with :func:`read_split`. Nothing here
knows a particular dataset: the bundled ones are written by training/bundled.py.

Cells are read as text and converted here, so every number is parsed exactly (Python's float
parser: the float64 whose shortest text it is) and a bad cell can be named by its line.
"""

from __future__ import annotations

import csv
import hashlib
import math
from collections.abc import Collection
from pathlib import Path

import numpy as np
import pandas as pd

from training.errors import StageError
from training.params import DataParams

#: Cells read as a missing value (in any letter case): refused unless ``data.missing`` allows the
#: column one; prepare writes an allowed one as an empty cell.
MISSING = frozenset({"", "na", "n/a", "nan", "null", "none"})
FIRST_DATA_LINE = 2  # line 1 is the header


def min_rows_per_class(test_size: float) -> int:
    """The fewest rows a class needs so that a stratified split puts it in both splits."""
    return max(2, math.ceil(1 / test_size - 1e-9))


def _header(path: Path) -> list[str]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            header = next(csv.reader(handle), None)
    except FileNotFoundError:
        raise StageError(
            f"{path}: no such file (dvc pull it; a bundled one: make training-data)"
        ) from None
    except UnicodeDecodeError:
        raise StageError(f"{path}: not UTF-8 text") from None
    if not header:
        raise StageError(f"{path}: empty file (a CSV file needs a header line)")
    seen: set[str] = set()
    for column in header:
        if column in seen:
            raise StageError(f"{path}: column {column!r} appears twice in the header")
        seen.add(column)
    return header


def feature_columns(spec: DataParams, header: list[str], path: Path) -> list[str]:
    """The feature columns the description selects, in order; every named column must exist."""

    def need(column: str, key: str) -> None:
        if column not in header:
            shown = ", ".join(header[:8]) + (", ..." if len(header) > 8 else "")
            raise StageError(
                f"{path}: column {column!r} ({key}) is not in the file (columns: {shown})"
            )

    need(spec.target, "data.target")
    for column in spec.exclude:
        need(column, "data.exclude")
    if spec.features is None:
        chosen = [c for c in header if c != spec.target and c not in spec.exclude]
    else:
        for column in spec.features:
            need(column, "data.features")
        chosen = list(spec.features)
    for key, columns in (
        ("data.types", spec.types),
        ("data.categorical", spec.categorical),
        ("data.missing", spec.missing),
    ):
        for column in columns:
            if column not in chosen:
                raise StageError(f"{path}: column {column!r} ({key}) is not a selected feature")
    if not chosen:
        raise StageError(f"{path}: no feature column is left (data.features, data.exclude)")
    return chosen


def _missing(path: Path, column: str, cells: pd.Series, allowed: bool) -> np.ndarray:
    """Which cells of a column are missing; StageError naming the first one's line when the
    column does not allow a missing value."""
    text = cells.to_numpy(dtype=object)
    lowered = np.char.lower(np.char.strip(text.astype(str)))
    missing: np.ndarray = np.isin(lowered, list(MISSING))
    if missing.any() and not allowed:
        line = int(np.argmax(missing)) + FIRST_DATA_LINE
        raise StageError(
            f"{path}: column {column!r}: missing value {text[line - FIRST_DATA_LINE]!r} in line "
            f"{line} (declare the column under data.missing to allow it)"
        )
    return missing


def _categories(path: Path, column: str, cells: pd.Series, spec: DataParams) -> np.ndarray:
    """A categorical column as text, NaN where missing (as allowed); StageError naming the first
    category data.categorical does not list when its unseen rule is ``error``."""
    missing = _missing(path, column, cells, column in spec.missing)
    text = cells.to_numpy(dtype=object).copy()
    listed = spec.categorical[column].categories
    if listed is not None and spec.categorical[column].unseen == "error":
        other = ~missing & ~np.isin(text, list(listed))
        if other.any():
            index = int(np.argmax(other))
            raise StageError(
                f"{path}: column {column!r}: category {text[index]!r} in line "
                f"{index + FIRST_DATA_LINE} is not in data.categorical.{column}.categories "
                f"({', '.join(listed)}; unseen: error)"
            )
    text[missing] = np.nan
    categories: np.ndarray = text
    return categories


def unseen_in_test(spec: DataParams, train: pd.DataFrame, test: pd.DataFrame, path: Path) -> None:
    """StageError naming the first test row whose category of a column learned from the train
    split (``categories: learn``, ``unseen: error``) the train split does not hold: evaluate
    could not score it. Lines are the raw file's (the frames keep its row order as index)."""
    for column, kind in spec.categorical.items():
        if kind.categories is not None or kind.unseen != "error":
            continue
        known = set(train[column].dropna())
        for index, value in test[column].items():
            if not pd.isna(value) and value not in known:
                raise StageError(
                    f"{path}: column {column!r}: category {value!r} in line "
                    f"{int(index) + FIRST_DATA_LINE} is in the test split only (categories: learn "
                    "takes the train split's; list the categories or set unseen: ignore)"
                )


def _numbers(
    path: Path, column: str, cells: pd.Series, dtype: str, allow_missing: bool = False
) -> np.ndarray:
    """One feature column as DTYPE (float64 with NaN where a value is missing, when the column
    allows it), or StageError naming the first bad cell and its line."""
    text = cells.to_numpy(dtype=object)
    missing = _missing(path, column, cells, allow_missing)
    if missing.any():
        text = np.where(missing, "nan", text)
    try:
        values = text.astype(np.float64)
    except ValueError:
        for index, cell in enumerate(text):
            try:
                float(cell)
            except ValueError:
                raise StageError(
                    f"{path}: column {column!r}: non-numeric value {cell!r} in line "
                    f"{index + FIRST_DATA_LINE}"
                ) from None
        raise  # pragma: no cover  (astype and float agree)
    finite = np.isfinite(values) | missing
    if not finite.all():
        index = int(np.argmin(finite))
        raise StageError(
            f"{path}: column {column!r}: non-finite value {text[index]!r} in line "
            f"{index + FIRST_DATA_LINE}"
        )
    if dtype == "int64":
        whole = (values == np.round(values)) | missing
        if not whole.all():
            index = int(np.argmin(whole))
            raise StageError(
                f"{path}: column {column!r}: {text[index]!r} in line {index + FIRST_DATA_LINE} "
                "is not a whole number (declared int64)"
            )
        if missing.any():  # int64 holds no NaN: whole numbers as float64, NaN where missing
            gapped: np.ndarray = values
            return gapped
        integers: np.ndarray = values.astype(np.int64)
        return integers
    floats: np.ndarray = values
    return floats


def load_raw(spec: DataParams, root: Path, test_size: float) -> pd.DataFrame:
    """The raw file checked against SPEC: the selected features (as declared) then the target
    (text), one row per line. TEST_SIZE is the split's held-out fraction (rows per class)."""
    path = root / spec.file
    header = _header(path)
    features = feature_columns(spec, header, path)
    try:
        cells = pd.read_csv(
            path, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8"
        )
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StageError(f"{path}: not a readable CSV file ({first})") from None
    if cells.empty:
        raise StageError(f"{path}: no data rows below the header")

    if spec.regression:
        target = _regression_target(path, spec.target, cells[spec.target])
    else:
        target = _class_labels(path, spec, cells[spec.target], test_size)
    frame = pd.DataFrame(
        {
            column: _categories(path, column, cells[column], spec)
            if column in spec.categorical
            else _numbers(path, column, cells[column], spec.type_of(column), column in spec.missing)
            for column in features
        }
    )
    frame[spec.target] = target
    return frame


def _regression_target(path: Path, column: str, cells: pd.Series) -> np.ndarray:
    """A regression's target column (``data.task: regression``) as float64: every cell a finite
    number; StageError naming the first other one and its line."""
    text = cells.to_numpy(dtype=object)
    for index, cell in enumerate(text):
        try:
            value = float(cell)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            what = "missing target" if str(cell).strip().lower() in MISSING else repr(cell)
            raise StageError(
                f"{path}: column {column!r}: {what} in line {index + FIRST_DATA_LINE} is not a "
                "finite number (data.task is regression)"
            )
    values: np.ndarray = text.astype(np.float64)
    return values


def _class_labels(path: Path, spec: DataParams, labels: pd.Series, test_size: float) -> np.ndarray:
    """A classification's labels (text), each one of ``data.classes``, each class with enough
    rows for a stratified split; StageError naming the first problem."""
    allowed = set(spec.classes)
    unknown = ~labels.isin(allowed)
    if unknown.any():
        index = int(np.argmax(unknown.to_numpy()))
        label = labels.iloc[index]
        what = "missing label" if label.strip() == "" else f"label {label!r}"
        raise StageError(
            f"{path}: column {spec.target!r}: {what} in line {index + FIRST_DATA_LINE} is not "
            f"in data.classes ({', '.join(spec.classes)})"
        )
    needed = min_rows_per_class(test_size)
    counts = labels.value_counts()
    for label in spec.classes:
        rows = int(counts.get(label, 0))
        if rows < needed:
            raise StageError(
                f"{path}: column {spec.target!r}: class {label!r} has {rows} rows; a split with "
                f"prepare.test_size {test_size:g} needs at least {needed} of each class"
            )
    texts: np.ndarray = labels.to_numpy(dtype=object)
    return texts


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Write a split so that reading it back gives the same values (and the same bytes each run)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, lineterminator="\n")


def write_splits(splits: dict[str, pd.DataFrame], out: Path) -> None:
    """Write every split (file name -> frame) into OUT, all or none: each goes to a temporary
    file first, and only when all are written do they take their names."""
    out.mkdir(parents=True, exist_ok=True)
    partial = {name: out / f".{name}.partial" for name in splits}
    try:
        for name, frame in splits.items():
            write_csv(frame, partial[name])
        for name, temporary in partial.items():
            temporary.replace(out / name)
    finally:
        for temporary in partial.values():
            temporary.unlink(missing_ok=True)


def read_split(
    path: Path, target: str, categorical: Collection[str] = ()
) -> tuple[pd.DataFrame, pd.Series]:
    """Features (file order) and target (text) of a split written by prepare: the columns named
    in ``categorical`` as text, every other as float64; an empty cell (a missing value prepare
    allowed) is NaN in either."""
    dtypes = {target: str, **dict.fromkeys(categorical, str)}
    frame = pd.read_csv(path, dtype=dtypes, keep_default_na=False, na_values=[""])
    if target not in frame.columns:
        raise StageError(f"{path}: no {target!r} column (data.target)")
    labels = frame.pop(target).astype(str)
    numeric = [c for c in frame.columns if c not in set(categorical)]
    if len(numeric) == len(frame.columns):
        return frame.astype("float64"), labels
    frame[numeric] = frame[numeric].astype("float64")
    return frame, labels


def read_regression_split(
    path: Path, target: str, categorical: Collection[str] = ()
) -> tuple[pd.DataFrame, pd.Series]:
    """A regression's split (``data.task: regression``): features as :func:`read_split` reads
    them, the target as float64 (prepare wrote each value so that it reads back exactly)."""
    features, target_text = read_split(path, target, categorical)
    return features, target_text.astype("float64")


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
