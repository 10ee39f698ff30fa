"""Turn request JSON into a validated float64 matrix in the model's feature order.

Plain Python and numpy, no pandas. v2 tensors: the happy path is a few C-level passes over the
values; the slow path only runs to name the offending field once a request is known to be bad.
Records: the careful path behind ``serving.records``, row by row, naming the first problem.
"""

from __future__ import annotations

import array
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from serving.compiled import Matrix
from serving.errors import ApiError, invalid

NUMBER_TYPES = frozenset({int, float})
V2_NUMERIC = {
    "FP64": np.float64,
    "FP32": np.float32,
    "FP16": np.float16,
    "INT64": np.int64,
    "INT32": np.int32,
    "INT16": np.int16,
    "INT8": np.int8,
    "UINT64": np.uint64,
    "UINT32": np.uint32,
    "UINT16": np.uint16,
    "UINT8": np.uint8,
}


def check_rows(count: int, max_rows: int) -> None:
    if count == 0:
        raise invalid("empty batch: send at least one row", "instances")
    if count > max_rows:
        raise ApiError(
            413, f"{count} rows in one request; at most {max_rows} allowed", code="too_many_rows"
        )


def _describe(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _bad_value(value: Any, field: str) -> ApiError:
    if type(value) is float and not math.isfinite(value):
        return invalid(f"{field} is {value}; only finite numbers are allowed", field)
    return invalid(f"{field} must be a number, got {_describe(value)}", field)


def literal_free(raw: bytes) -> bool:
    """No ``true``, ``false`` or ``null`` anywhere in the body, not even inside a string.

    Then numpy's own type discovery is a complete check: a list it turns into an integer or float
    array held only numbers (strings give a text array, big integers an object array).
    """
    return b"true" not in raw and b"false" not in raw and b"null" not in raw


def _numeric(values: Any, integral: bool = False) -> Matrix | None:
    """``values`` as a float64 array when numpy finds only numbers (integers if ``integral``)."""
    try:
        array = np.array(values)
    except (ValueError, TypeError, OverflowError):
        return None
    if array.dtype.kind not in ("iu" if integral else "fiu"):
        return None
    result: Matrix = array.astype(np.float64, copy=False)
    return result


def _flat_floats(
    data: list[Any], integral: bool, literal_free: Callable[[], bool]
) -> Matrix | None:
    """Tensor data as a flat float64 array when every value is a number; else None.

    Flat float data: one ``array('d')`` pass (it refuses strings, null, lists and objects),
    booleans (which it takes as 0 and 1) sought among the 0s and 1s. Nested or integer data:
    numpy's type discovery, complete only when the body is ``literal_free`` (asked only then).
    """
    if integral or (data and type(data[0]) is list):
        if not literal_free():
            return None
        found = _numeric(data, integral)
        return None if found is None else found.reshape(-1)
    try:
        result: Matrix = np.frombuffer(array.array("d", data), dtype=np.float64)
    except (TypeError, OverflowError):
        return None
    return None if _holds_bool(result, data) else result


def _holds_bool(flat: Matrix, values: list[Any]) -> bool:
    """Whether a boolean hides among ``values`` (``flat`` is them as float64)."""
    suspects = np.flatnonzero((flat == 0.0) | (flat == 1.0)).tolist()
    return bool in set(map(type, map(values.__getitem__, suspects)))


def records(instances: Any, features: tuple[str, ...], max_rows: int) -> Matrix:
    """``[{feature: number, ...}, ...]`` → matrix; every feature present, no others.

    The careful path, row by row, naming the first problem it meets; well-formed bodies mostly
    never get here (``serving.records`` decodes them in one pass).
    """
    if not isinstance(instances, list):
        raise invalid("'instances' must be a list of objects, one per row", "instances")
    check_rows(len(instances), max_rows)
    expected = frozenset(features)
    rows: list[list[Any]] = []
    for index, row in enumerate(instances):
        if type(row) is not dict or row.keys() != expected:
            raise _record_error(row, index, features)
        values = [row[name] for name in features]
        if not NUMBER_TYPES.issuperset(map(type, values)):
            name = next(n for n in features if type(row[n]) not in NUMBER_TYPES)
            raise _bad_value(row[name], f"instances[{index}].{name}")
        rows.append(values)
    try:
        matrix = np.array(rows, dtype=np.float64)
    except OverflowError as exc:
        raise invalid(f"a value is out of the float64 range: {exc}", "instances") from exc
    return finite_records(matrix, features)


def finite_records(matrix: Matrix, features: tuple[str, ...]) -> Matrix:
    """``matrix`` (rows of records) when every value is finite; else a 422 naming the first."""
    return _checked(matrix, lambda r, c: f"instances[{r}].{features[c]}")


def _record_error(row: Any, index: int, features: tuple[str, ...]) -> ApiError:
    where = f"instances[{index}]"
    if not isinstance(row, dict):
        return invalid(f"{where} must be an object of feature: number, got {_describe(row)}", where)
    missing = [name for name in features if name not in row]
    if missing:
        return invalid(
            f"{where} lacks the feature {missing[0]!r} ({len(missing)} missing); "
            f"expected features: {', '.join(features)}",
            f"{where}.{missing[0]}",
        )
    unknown = sorted(str(key) for key in row if key not in set(features))
    return invalid(
        f"{where} has the unknown feature {unknown[0]!r}; expected features: {', '.join(features)}",
        f"{where}.{unknown[0]}",
    )


def _flatten(data: Any, field: str) -> list[Any]:
    """Row-major flat data from a flat or a nested JSON array (the protocol allows both)."""
    if not isinstance(data, list):
        raise invalid(f"{field} must be an array", field)
    if data and type(data[0]) is list:
        flat: list[Any] = []
        _nested_extend(data, flat)
        return flat
    return data


def _nested_extend(data: list[Any], out: list[Any]) -> None:
    for item in data:
        if type(item) is list:
            _nested_extend(item, out)
        else:
            out.append(item)


def _tensor(
    tensor: Any, index: int, binary: dict[int, bytes], literal_free: Callable[[], bool]
) -> tuple[str, list[int], Any]:
    """Validate one v2 input tensor; answer its name, shape and flat data (list or ndarray)."""
    where = f"inputs[{index}]"
    if not isinstance(tensor, dict):
        raise invalid(f"{where} must be an object with name, shape, datatype and data", where)
    for key in ("name", "shape", "datatype"):
        if key not in tensor:
            raise invalid(f"{where} lacks {key!r}", f"{where}.{key}")
    name, shape, datatype = tensor["name"], tensor["shape"], tensor["datatype"]
    if not isinstance(name, str):
        raise invalid(f"{where}.name must be a string", f"{where}.name")
    if not isinstance(shape, list) or not shape or any(type(d) is not int or d < 0 for d in shape):
        raise invalid(f"{where}.shape must be a list of non-negative integers", f"{where}.shape")
    if datatype not in V2_NUMERIC:
        raise invalid(
            f"{where}.datatype {datatype!r} is not supported; allowed: {', '.join(V2_NUMERIC)}",
            f"{where}.datatype",
        )
    size = math.prod(shape)
    if index in binary:
        dtype = np.dtype(V2_NUMERIC[datatype]).newbyteorder("<")
        raw = binary[index]
        if len(raw) != size * dtype.itemsize:
            raise invalid(
                f"{where} has {len(raw)} bytes of binary data; shape {shape} of {datatype} "
                f"needs {size * dtype.itemsize}",
                f"{where}.parameters.binary_data_size",
            )
        return name, shape, np.frombuffer(raw, dtype=dtype).astype(np.float64)
    if "data" not in tensor:
        raise invalid(f"{where} lacks 'data'", f"{where}.data")
    if isinstance(tensor["data"], list):
        integral = datatype.startswith(("INT", "UINT"))
        values = _flat_floats(tensor["data"], integral, literal_free)
        if values is not None and values.size == size:
            return name, shape, values
    flat = _flatten(tensor["data"], f"{where}.data")
    if len(flat) != size:
        raise invalid(
            f"{where}.data has {len(flat)} values, shape {shape} needs {size}", f"{where}.data"
        )
    if not NUMBER_TYPES.issuperset(map(type, flat)):
        position = next(i for i, v in enumerate(flat) if type(v) not in NUMBER_TYPES)
        raise _bad_value(flat[position], f"{where}.data[{position}]")
    if datatype.startswith(("INT", "UINT")) and float in set(map(type, flat)):
        position = next(i for i, v in enumerate(flat) if type(v) is float)
        raise invalid(
            f"{where}.data[{position}] is not an integer but the datatype is {datatype}",
            f"{where}.data[{position}]",
        )
    return name, shape, flat


def v2_tensors(
    inputs: Any,
    features: tuple[str, ...],
    max_rows: int,
    binary: dict[int, bytes],
    *,
    literal_free: Callable[[], bool] = lambda: False,
) -> Matrix:
    """Open Inference Protocol inputs → matrix.

    Two layouts: one tensor of shape ``[N, F]`` (or ``[F]`` for one row) holding the features in
    model order, whatever its name; or one tensor per feature, each named after it, shape ``[N]``
    or ``[N, 1]`` (the "pandas" layout MLServer's codecs send). ``literal_free`` tells
    (lazily: the scan costs) whether the body has no ``true``, ``false`` or ``null`` token.
    """
    if not isinstance(inputs, list) or not inputs:
        raise invalid("'inputs' must be a non-empty list of tensors", "inputs")
    width = len(features)
    if len(inputs) == 1:
        _, shape, flat = _tensor(inputs[0], 0, binary, literal_free)
        if len(shape) == 1 and shape[0] == width:
            shape = [1, width]
        if len(shape) != 2 or shape[1] != width:
            raise invalid(
                f"inputs[0].shape is {shape}; send [N, {width}] with the features in model "
                f"order ({', '.join(features)}), or one [N] tensor per feature",
                "inputs[0].shape",
            )
        check_rows(shape[0], max_rows)
        matrix = _as_matrix(flat, shape[0], width)
        return _checked(matrix, lambda r, c: f"inputs[0].data[{r * width + c}]")
    by_name: dict[str, tuple[int, list[int], Any]] = {}
    for index, tensor in enumerate(inputs):
        name, shape, flat = _tensor(tensor, index, binary, literal_free)
        if name not in features:
            raise invalid(
                f"inputs[{index}].name {name!r} is not a feature; expected one tensor per "
                f"feature: {', '.join(features)}",
                f"inputs[{index}].name",
            )
        if name in by_name:
            raise invalid(f"feature {name!r} sent twice", f"inputs[{index}].name")
        if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
            raise invalid(
                f"inputs[{index}].shape is {shape}; a per-feature tensor is [N] or [N, 1]",
                f"inputs[{index}].shape",
            )
        by_name[name] = (index, shape, flat)
    missing = [name for name in features if name not in by_name]
    if missing:
        raise invalid(
            f"no input tensor for the feature {missing[0]!r} ({len(missing)} missing)", "inputs"
        )
    counts = {shape[0] for _, shape, _ in by_name.values()}
    if len(counts) != 1:
        raise invalid("per-feature tensors have different row counts", "inputs")
    rows = counts.pop()
    check_rows(rows, max_rows)
    columns = [by_name[name][2] for name in features]
    matrix = _as_matrix(columns, width, rows).T.copy()
    return _checked(matrix, lambda r, c: f"inputs[{by_name[features[c]][0]}].data[{r}]")


def _as_matrix(flat: Any, rows: int, cols: int) -> Matrix:
    try:
        return np.asarray(flat, dtype=np.float64).reshape(rows, cols)
    except OverflowError as exc:
        raise invalid(f"a value is out of the float64 range: {exc}", "inputs") from exc


def _checked(matrix: Matrix, field_of: Any) -> Matrix:
    if not np.isfinite(matrix).all():
        row, col = np.argwhere(~np.isfinite(matrix))[0].tolist()
        field = field_of(row, col)
        raise invalid(f"{field} is {matrix[row, col]}; only finite numbers are allowed", field)
    return matrix
