"""The Open Inference Protocol ("v2": KServe, Triton, MLServer) over REST.

Health (``/v2/health/live``, ``/v2/health/ready``), server metadata (``/v2``, ``/v2/``), model
metadata and readiness, and inference, each with and without ``/versions/<version>``. The
protocol's own document (vendored in tests/serving/fixtures/oip/, walked by
tests/serving/test_serving_conformance.py) says what each answers.

Inputs: one ``[N, F]`` tensor with the features in model order, or one ``[N]`` tensor per feature
named after it; any numeric datatype (a model with a categorical feature or one that may be
missing: one tensor per feature, BYTES for a category, null for a missing value,
:func:`coded_tensors`); data flat (row-major) or nested; the binary tensor data
extension for inputs. Outputs: ``predict`` (BYTES, the labels) and ``predict_proba`` (FP64,
``[N, classes]``), always as JSON; a regression's model has one output, ``predict`` (FP64,
``[N]``: the predicted values), and no probabilities (:data:`REGRESSION_OUTPUTS`).

Tensor data goes in two ways, like records (``serving.protocols.records``):

- **fast** (``fast_values``): flat float data in one ``array('d')`` pass (it refuses strings,
  null, lists and objects), booleans (which it takes as 0 and 1) sought only among the 0s and 1s;
  nested or integer data by numpy's type discovery, complete only when the body has no ``true``,
  ``false`` or ``null`` token (that scan runs only then). It answers None, never an error.
- **careful** (``careful_values``): flattened and checked value by value, naming the first
  problem.

tests/serving/test_serving_v2_tensors.py: whatever the fast path takes, the careful path takes
too, with the same values bit for bit, on generated tensors.
"""

from __future__ import annotations

import array
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from modelcard.runtime import CATEGORY, InputError, Matrix, encode_column
from serving.errors import ApiError, invalid
from serving.model import Model
from serving.protocols.common import (
    NUMBER_TYPES,
    bad_value,
    check_rows,
    finite,
    parse_json,
    score,
    score_one,
)
from serving.provenance import HEADER
from serving.state import Answer, Call, ServerState

SERVER_NAME = "modelops"
SERVER_VERSION = "0.1.0"
OUTPUTS = ("predict", "predict_proba")
#: A regression's outputs (``Model.regression``): the predicted value alone.
REGRESSION_OUTPUTS = ("predict",)
BINARY_HEADER = "Inference-Header-Content-Length"
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


def _range(datatype: str) -> tuple[float, float]:
    """The smallest and largest value DATATYPE holds."""
    name = np.dtype(V2_NUMERIC[datatype]).name
    info = np.iinfo(name) if datatype.startswith(("INT", "UINT")) else np.finfo(name)
    return float(info.min), float(info.max)


#: The values each datatype narrower than FP64 can hold: JSON data outside them is not of that
#: datatype (INT8 1000, UINT8 -1, FP16 1e308) and is refused, never cast or wrapped silently.
V2_RANGE = {name: _range(name) for name in V2_NUMERIC if name != "FP64"}

# --- health and metadata ---------------------------------------------------------------------


def live(server: ServerState, call: Call) -> Answer:
    """``GET /v2/health/live``: the process answers (the liveness probe)."""
    return Answer({"live": True})


def ready(server: ServerState, call: Call) -> Answer:
    """``GET /v2/health/ready``: 200 once the model is loaded and verified, else 503."""
    if not server.model.ready:
        raise ApiError(503, "model is not loaded yet")
    return Answer({"ready": True})


def server_metadata(server: ServerState, call: Call) -> Answer:
    """``GET /v2`` (and ``/v2/``, the spelling of the protocol's document)."""
    return Answer({"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": []})


def model_metadata(server: ServerState, call: Call) -> Answer:
    """``GET /v2/models/<name>[/versions/<version>]``; ``parameters`` carries the provenance and
    its id (``serving.provenance``), the feature names in order, the classes and the inference
    path."""
    model = server.require_model(call.args["name"], call.args.get("version"))
    return Answer(_metadata(model))


def model_ready(server: ServerState, call: Call) -> Answer:
    """``GET /v2/models/<name>[/versions/<version>]/ready``."""
    model = server.require_model(call.args["name"], call.args.get("version"))
    return Answer({"name": model.name, "ready": model.ready})


def metadata_inputs(model: Model) -> list[dict[str, Any]]:
    """The model's inputs as metadata lists them: a plain model (every feature a number that may
    not be missing) one ``[-1, F]`` FP64 tensor, features in model order; any other one tensor
    per feature, named after it, ``[-1]``: BYTES for a categorical feature, FP64 for a number
    (the layout :func:`coded_tensors` reads)."""
    if model.plain:
        return [{"name": "input-0", "datatype": "FP64", "shape": [-1, len(model.features)]}]
    return [
        {
            "name": column["name"],
            "datatype": "BYTES" if column["dtype"] == CATEGORY else "FP64",
            "shape": [-1],
        }
        for column in model.columns
    ]


def _columns_parameters(model: Model) -> dict[str, Any]:
    """What a model that is not plain adds to its metadata's parameters: each categorical
    feature's categories and unseen rule, and the features that may be missing."""
    if model.plain:
        return {}
    return {
        "categories": {
            c["name"]: {"categories": list(c["categories"]), "unseen": c["unseen"]}
            for c in model.columns
            if c["dtype"] == CATEGORY
        },
        "missing": [c["name"] for c in model.columns if c.get("missing")],
    }


def _metadata(model: Model) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": model.name}
    if model.provenance.version:
        metadata["versions"] = [model.provenance.version]
    metadata.update(
        {
            "platform": "scikit-learn",
            "inputs": metadata_inputs(model),
            "outputs": _output_metadata(model),
            "parameters": {
                **model.provenance.as_dict(),
                "provenance_id": model.provenance_id,
                "features": list(model.feature_names),
                **_task_parameters(model),
                "inference_path": model.inference_path,
                **_columns_parameters(model),
            },
        }
    )
    return metadata


def _output_metadata(model: Model) -> list[dict[str, Any]]:
    """Each output's name, datatype and shape: a regression answers FP64 values."""
    if model.regression:
        return [{"name": "predict", "datatype": "FP64", "shape": [-1]}]
    return [
        {"name": "predict", "datatype": "BYTES", "shape": [-1]},
        {"name": "predict_proba", "datatype": "FP64", "shape": [-1, len(model.classes)]},
    ]


def _task_parameters(model: Model) -> dict[str, Any]:
    """What the model predicts: its classes, or ``task: regression``."""
    if model.regression:
        return {"task": "regression"}
    return {"classes": list(model.classes)}


# --- inference -------------------------------------------------------------------------------


def infer(server: ServerState, call: Call) -> Answer:
    """``POST /v2/models/<name>[/versions/<version>]/infer``; raises ``ApiError``."""
    return infer_body(
        server, call.args["name"], call.args.get("version"), call.body(), call.header(BINARY_HEADER)
    )


def infer_body(
    server: ServerState, name: str, version: str | None, raw: bytes, binary_header: str | None
) -> Answer:
    """The answer to one infer body. ``binary_header``: the Inference-Header-Content-Length
    header, if sent (the binary tensor data extension)."""
    model = server.require_model(name, version)
    raw, binary, body = _split_binary(raw, binary_header)
    if body is None:
        body = parse_json(raw)
    if type(body) is not dict or "inputs" not in body:
        raise invalid(
            'the body must be an object {"inputs": [{"name", "shape", "datatype", "data"}]}',
            "inputs",
        )
    if "id" in body and not isinstance(body["id"], str):
        raise invalid("'id' must be a string", "id")
    outputs = _requested_outputs(body, REGRESSION_OUTPUTS if model.regression else OUTPUTS)
    if model.plain:
        x = tensors(
            body["inputs"], model.feature_names, server.max_rows, binary, literal_free=_Scan(raw)
        )
    else:
        x = coded_tensors(body["inputs"], model.columns, server.max_rows, binary)
    rows = x.shape[0]
    # One row: the one-row path both protocols share (score_one: the bound ONNX buffers and the
    # row's drift signals in plain Python), as /predict's one row; else the batch path.
    one = score_one(server, model, x[0].tolist()) if rows == 1 else None
    if one is not None:
        row, best = one
        proba: Any = row
        labels: Any = [model.classes[best]] if not model.regression else None
        width = len(row)
    else:
        matrix = score(server, model, x, lambda row: "inputs")
        proba = matrix.ravel()
        labels = None if model.regression else model.labels(matrix)
        width = matrix.shape[1]
    answered: list[dict[str, Any]] = []
    for output in outputs:
        if model.regression:
            answered.append({"name": output, "shape": [rows], "datatype": "FP64", "data": proba})
        elif output == "predict":
            answered.append({"name": output, "shape": [rows], "datatype": "BYTES", "data": labels})
        else:
            answered.append(
                {"name": output, "shape": [rows, width], "datatype": "FP64", "data": proba}
            )
    payload: dict[str, Any] = {"model_name": model.name}
    if model.provenance.version:
        payload["model_version"] = model.provenance.version
    if "id" in body:
        payload["id"] = body["id"]
    payload["outputs"] = answered
    return Answer(payload, {HEADER: model.provenance_id})


def _split_binary(raw: bytes, length_text: str | None) -> tuple[bytes, dict[int, bytes], Any]:
    """Separate the JSON header from binary tensor data (the protocol's binary extension)."""
    if length_text is None:
        return raw, {}, None
    try:
        length = int(length_text)
    except ValueError:
        raise ApiError(400, f"{BINARY_HEADER} must be an integer") from None
    if not 0 < length <= len(raw):
        raise ApiError(400, f"{BINARY_HEADER} {length} does not fit the {len(raw)}-byte body")
    body = parse_json(raw[:length])
    binary: dict[int, bytes] = {}
    offset = length
    inputs = body.get("inputs") if isinstance(body, dict) else None
    for index, tensor in enumerate(inputs if isinstance(inputs, list) else []):
        params = tensor.get("parameters") if isinstance(tensor, dict) else None
        size = params.get("binary_data_size") if isinstance(params, dict) else None
        if size is None:
            continue
        if type(size) is not int or size < 0 or offset + size > len(raw):
            raise invalid(
                f"inputs[{index}].parameters.binary_data_size {size!r} overruns the body",
                f"inputs[{index}].parameters.binary_data_size",
            )
        binary[index] = raw[offset : offset + size]
        offset += size
    if offset != len(raw):
        raise invalid(f"{len(raw) - offset} bytes of binary data belong to no input", "inputs")
    return raw[:length], binary, body


def _requested_outputs(body: dict[str, Any], known: tuple[str, ...]) -> tuple[str, ...]:
    """The outputs the body asks for, each one of ``known`` (the model's), all when none."""
    requested = body.get("outputs")
    if requested is None:
        return known
    if not isinstance(requested, list):
        raise invalid("'outputs' must be a list of {\"name\": ...}", "outputs")
    names = []
    for index, item in enumerate(requested):
        name = item.get("name") if isinstance(item, dict) else None
        if name not in known:
            raise invalid(
                f"outputs[{index}].name {name!r} is not an output; allowed: {', '.join(known)}",
                f"outputs[{index}].name",
            )
        names.append(name)
    return tuple(names)


# --- tensors: the fast path ------------------------------------------------------------------


def _literal_free(raw: bytes) -> bool:
    """No ``true``, ``false`` or ``null`` anywhere in the body, not even inside a string.

    Then numpy's own type discovery is a complete check: a list it turns into an integer or float
    array held only numbers (strings give a text array, big integers an object array).
    """
    return b"true" not in raw and b"false" not in raw and b"null" not in raw


class _Scan:
    """:func:`_literal_free` of one body, computed at the first call and kept (the scan costs
    about a nanosecond a byte, and only nested or integer data needs it)."""

    __slots__ = ("_raw", "_result")

    def __init__(self, raw: bytes) -> None:
        self._raw = raw
        self._result: bool | None = None

    def __call__(self) -> bool:
        if self._result is None:
            self._result = _literal_free(self._raw)
        return self._result


def fast_values(data: list[Any], datatype: str, literal_free: Callable[[], bool]) -> Matrix | None:
    """Tensor data as a flat float64 array when every value is a number (an integer for the
    integer datatypes); None to let ``careful_values`` look at it. Never raises."""
    integral = datatype.startswith(("INT", "UINT"))
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


def _numeric(values: Any, integral: bool) -> Matrix | None:
    """``values`` as a float64 array when numpy finds only numbers (integers if ``integral``)."""
    try:
        found = np.array(values)
    except (ValueError, TypeError, OverflowError):
        return None
    if found.dtype.kind not in ("iu" if integral else "fiu"):
        return None
    result: Matrix = found.astype(np.float64, copy=False)
    return result


#: Up to this many values, :func:`_holds_bool` looks at every value's type: one pass in C,
#: cheaper than the numpy calls that find the 0s and 1s (a one-row tensor: 1 µs against 10).
FEW_VALUES = 256


def _holds_bool(flat: Matrix, values: list[Any]) -> bool:
    """Whether a boolean hides among ``values`` (``flat`` is them as float64)."""
    if len(values) <= FEW_VALUES:
        return bool in set(map(type, values))
    suspects = np.flatnonzero((flat == 0.0) | (flat == 1.0)).tolist()
    return bool in set(map(type, map(values.__getitem__, suspects)))


# --- tensors: the careful path ---------------------------------------------------------------


def careful_values(data: Any, datatype: str, shape: list[int], where: str) -> Matrix:
    """Tensor data (flat or nested) checked value by value: as many numbers as ``shape`` holds,
    integers for the integer datatypes; the flat float64 array, or a 422 naming the first
    problem (``where`` is the tensor's place: ``inputs[0]``)."""
    flat = _flatten(data, f"{where}.data")
    size = math.prod(shape)
    if len(flat) != size:
        raise invalid(
            f"{where}.data has {len(flat)} values, shape {shape} needs {size}", f"{where}.data"
        )
    if not NUMBER_TYPES.issuperset(map(type, flat)):
        position = next(i for i, v in enumerate(flat) if type(v) not in NUMBER_TYPES)
        raise bad_value(flat[position], f"{where}.data[{position}]")
    if datatype.startswith(("INT", "UINT")) and float in set(map(type, flat)):
        position = next(i for i, v in enumerate(flat) if type(v) is float)
        raise invalid(
            f"{where}.data[{position}] is not an integer but the datatype is {datatype}",
            f"{where}.data[{position}]",
        )
    try:
        return np.asarray(flat, dtype=np.float64)
    except OverflowError as exc:
        raise invalid(f"a value is out of the float64 range: {exc}", "inputs") from exc


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


# --- tensors: layout -------------------------------------------------------------------------


def _tensor_fields(tensor: Any, where: str) -> tuple[Any, Any, Any]:
    """The name, shape and datatype of the input tensor at WHERE, not yet checked; a 422 when it
    is not an object holding all three. Callers: both input decoders (:func:`_tensor`,
    :func:`coded_tensors`)."""
    if not isinstance(tensor, dict):
        raise invalid(f"{where} must be an object with name, shape, datatype and data", where)
    for key in ("name", "shape", "datatype"):
        if key not in tensor:
            raise invalid(f"{where} lacks {key!r}", f"{where}.{key}")
    return tensor["name"], tensor["shape"], tensor["datatype"]


def _tensor(
    tensor: Any, index: int, binary: dict[int, bytes], literal_free: Callable[[], bool]
) -> tuple[str, list[int], Matrix]:
    """Validate one input tensor; answer its name, shape and flat float64 data."""
    where = f"inputs[{index}]"
    name, shape, datatype = _tensor_fields(tensor, where)
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
    data = tensor["data"]
    values = fast_values(data, datatype, literal_free) if isinstance(data, list) else None
    if values is None or values.size != size:
        values = careful_values(data, datatype, shape, where)
    if datatype in V2_RANGE:
        _within(values, datatype, where)
    return name, shape, values


def _within(values: Matrix, datatype: str, where: str) -> None:
    """A 422 naming the first JSON value outside DATATYPE's range (V2_RANGE)."""
    low, high = V2_RANGE[datatype]
    outside = np.flatnonzero((values < low) | (values > high))
    if outside.size:
        position = int(outside[0])
        raise invalid(
            f"{where}.data[{position}] is {values[position]:g}, outside the range of {datatype} "
            f"({low:g} to {high:g})",
            f"{where}.data[{position}]",
        )


def tensors(
    inputs: Any,
    features: tuple[str, ...],
    max_rows: int,
    binary: dict[int, bytes],
    *,
    literal_free: Callable[[], bool] = lambda: False,
) -> Matrix:
    """Open Inference Protocol inputs → matrix in model order.

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
        matrix = flat.reshape(shape[0], width)
        return finite(matrix, lambda r, c: f"inputs[0].data[{r * width + c}]")
    by_name: dict[str, tuple[int, list[int], Matrix]] = {}
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
    matrix = np.stack([by_name[name][2] for name in features], axis=1)
    return finite(matrix, lambda r, c: f"inputs[{by_name[features[c]][0]}].data[{r}]")


# --- tensors of a model with categorical or missing values -------------------------------------


def _bytes_elements(raw: bytes, where: str) -> list[Any]:
    """BYTES binary data: each element a 4-byte little-endian length, then its bytes (the binary
    tensor data extension), decoded as UTF-8 text."""
    values: list[Any] = []
    offset = 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise invalid(f"{where} has a truncated BYTES length prefix", f"{where}.parameters")
        length = int.from_bytes(raw[offset : offset + 4], "little")
        chunk = raw[offset + 4 : offset + 4 + length]
        if len(chunk) != length:
            raise invalid(f"{where} has a BYTES element that overruns its data", where)
        try:
            values.append(chunk.decode("utf-8"))
        except UnicodeDecodeError:
            raise invalid(f"{where} has a BYTES element that is not UTF-8", where) from None
        offset += 4 + length
    return values


def coded_tensors(
    inputs: Any, columns: tuple[dict[str, Any], ...], max_rows: int, binary: dict[int, bytes]
) -> Matrix:
    """Open Inference Protocol inputs of a model that is not plain (a categorical feature, or one
    that may be missing) → the graph's coded rows: one tensor per feature, named after it, shape
    ``[N]`` or ``[N, 1]``. A categorical feature's tensor is BYTES (its categories as strings,
    JSON or the binary extension's length-prefixed elements), a number's any numeric datatype. A
    missing value is JSON null in any tensor, NaN in FP binary data, and "" in BYTES (the
    convention MLServer's codecs follow: SeldonIO/MLServer#1346); each value is decoded by its
    feature's rule (modelcard.runtime.encode_column). A wrong datatype or value is a 422 naming
    the input."""
    features = tuple(c["name"] for c in columns)
    if not isinstance(inputs, list) or not inputs:
        raise invalid("'inputs' must be a non-empty list of tensors", "inputs")
    by_name: dict[str, tuple[int, list[int], Matrix]] = {}
    for index, tensor in enumerate(inputs):
        where = f"inputs[{index}]"
        name, shape, datatype = _tensor_fields(tensor, where)
        if not isinstance(name, str) or name not in features:
            raise invalid(
                f"{where}.name {name!r} is not a feature; this model takes one tensor per "
                f"feature: {', '.join(features)}",
                f"{where}.name",
            )
        if name in by_name:
            raise invalid(f"feature {name!r} sent twice", f"{where}.name")
        if not (
            isinstance(shape, list)
            and all(type(d) is int and d >= 0 for d in shape)
            and (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1))
        ):
            raise invalid(
                f"{where}.shape is {shape}; a per-feature tensor is [N] or [N, 1]",
                f"{where}.shape",
            )
        column = columns[features.index(name)]
        if column["dtype"] == CATEGORY and datatype != "BYTES":
            raise invalid(
                f"{where}.datatype is {datatype!r}; {name} is categorical: send BYTES (its "
                "categories as strings)",
                f"{where}.datatype",
            )
        if column["dtype"] != CATEGORY and datatype not in V2_NUMERIC:
            raise invalid(
                f"{where}.datatype is {datatype!r}; {name} is a number: send one of "
                f"{', '.join(V2_NUMERIC)}",
                f"{where}.datatype",
            )
        values: Any
        if index in binary:
            if datatype == "BYTES":
                values = _bytes_elements(binary[index], where)
            else:
                dtype = np.dtype(V2_NUMERIC[datatype]).newbyteorder("<")
                if len(binary[index]) % dtype.itemsize:
                    raise invalid(
                        f"{where} has {len(binary[index])} bytes of binary data, not a whole "
                        f"number of {datatype} values",
                        f"{where}.parameters.binary_data_size",
                    )
                values = np.frombuffer(binary[index], dtype=dtype).astype(np.float64).tolist()
        elif "data" not in tensor:
            raise invalid(f"{where} lacks 'data'", f"{where}.data")
        else:
            values = _flatten(tensor["data"], f"{where}.data")
        if len(values) != math.prod(shape):
            raise invalid(
                f"{where}.data has {len(values)} values, shape {shape} needs {math.prod(shape)}",
                f"{where}.data",
            )
        if datatype.startswith(("INT", "UINT")):
            position = next((i for i, v in enumerate(values) if type(v) is float), None)
            if position is not None:
                raise invalid(
                    f"{where}.data[{position}] is not an integer but the datatype is {datatype}",
                    f"{where}.data[{position}]",
                )
        try:
            coded = encode_column(column, values)
        except InputError as exc:
            field = f"{where}.data[{exc.row}]"
            raise invalid(f"{field} ({name}) {exc.message}", field) from None
        if datatype in V2_RANGE:
            present = np.nan_to_num(coded, nan=0.0)
            _within(present, datatype, where)
        by_name[name] = (index, shape, coded)
    missing = [name for name in features if name not in by_name]
    if missing:
        raise invalid(
            f"no input tensor for the feature {missing[0]!r} ({len(missing)} missing); this "
            f"model takes one tensor per feature: {', '.join(features)}",
            "inputs",
        )
    counts = {shape[0] for _, shape, _ in by_name.values()}
    if len(counts) != 1:
        raise invalid("per-feature tensors have different row counts", "inputs")
    check_rows(counts.pop(), max_rows)
    return np.stack([by_name[name][2] for name in features], axis=1)
