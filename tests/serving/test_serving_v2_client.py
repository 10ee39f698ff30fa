"""A standard Open Inference Protocol client, unchanged, against the real stack.

tritonclient's HTTP client (what Triton users, and KServe's v2 examples, reach for) talks to
Nginx → uWSGI → the app exactly as it would to Triton: health, metadata, and inference with JSON
and with binary tensor data, one ``[N, F]`` tensor or one tensor per feature.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.http as httpclient
from serving_testkit import MODEL_NAME, TinyModel
from tritonclient.utils import InferenceServerException

from devstack.stack import Stack

pytestmark = pytest.mark.e2e


@pytest.fixture
def client(stack: Stack) -> Iterator[httpclient.InferenceServerClient]:
    triton = httpclient.InferenceServerClient(url=stack.url.removeprefix("http://"))
    yield triton
    triton.close()


def test_health_and_metadata(
    client: httpclient.InferenceServerClient, tiny_model: TinyModel
) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(MODEL_NAME)
    assert client.get_server_metadata()["name"]
    metadata = client.get_model_metadata(MODEL_NAME)
    assert metadata["name"] == MODEL_NAME
    assert metadata["inputs"] == [
        {"name": "input-0", "datatype": "FP64", "shape": [-1, len(tiny_model.features)]}
    ]
    assert metadata["parameters"]["model_sha256"] == tiny_model.metadata["model_sha256"]


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("datatype", ["FP64", "FP32"])
def test_one_tensor_infer_matches_scikit_learn(
    client: httpclient.InferenceServerClient, tiny_model: TinyModel, binary: bool, datatype: str
) -> None:
    x = tiny_model.x_test[:16].astype(np.float64 if datatype == "FP64" else np.float32)
    tensor = httpclient.InferInput("input-0", list(x.shape), datatype)
    tensor.set_data_from_numpy(x, binary_data=binary)
    result = client.infer(MODEL_NAME, [tensor])
    proba = result.as_numpy("predict_proba")
    expected = tiny_model.pipeline.predict_proba(x.astype(np.float64))
    np.testing.assert_allclose(proba, expected, atol=1e-12)
    labels = [
        label.decode() if isinstance(label, bytes) else label
        for label in result.as_numpy("predict")
    ]
    assert labels == [tiny_model.metadata["classes"][i] for i in expected.argmax(axis=1)]


def test_one_tensor_per_feature(
    client: httpclient.InferenceServerClient, tiny_model: TinyModel
) -> None:
    x = tiny_model.x_test[:5]
    tensors = []
    for column, name in enumerate(tiny_model.features):
        tensor = httpclient.InferInput(name, [len(x)], "FP64")
        tensor.set_data_from_numpy(np.ascontiguousarray(x[:, column]), binary_data=column % 2 == 0)
        tensors.append(tensor)
    result = client.infer(MODEL_NAME, tensors)
    np.testing.assert_allclose(
        result.as_numpy("predict_proba"), tiny_model.pipeline.predict_proba(x), atol=1e-12
    )


def test_requested_outputs_and_errors_reach_the_client(
    client: httpclient.InferenceServerClient, tiny_model: TinyModel
) -> None:
    x = tiny_model.x_test[:2]
    tensor = httpclient.InferInput("input-0", list(x.shape), "FP64")
    tensor.set_data_from_numpy(x)
    only = [httpclient.InferRequestedOutput("predict_proba", binary_data=False)]
    result = client.infer(MODEL_NAME, [tensor], outputs=only)
    assert [output["name"] for output in result.get_response()["outputs"]] == ["predict_proba"]
    with pytest.raises(InferenceServerException) as unknown:
        client.infer("no-such-model", [tensor])
    assert unknown.value.status() == "404"
    wrong = httpclient.InferInput("input-0", [2, 3], "FP64")
    wrong.set_data_from_numpy(x[:, :3])
    with pytest.raises(InferenceServerException) as shape:
        client.infer(MODEL_NAME, [wrong])
    assert shape.value.status() == "422" and "shape" in shape.value.message()
