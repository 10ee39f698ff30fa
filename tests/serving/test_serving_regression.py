"""A regression's model served: the diabetes data trained by training's own stages (the forest:
the tree path of the graph), its artifact loaded by the server, /predict and v2 answering numbers
and no probabilities, its metadata saying so, and the drift signals counting the predictions into
the profile's bins; in process through the app's test client, and through real Nginx and uWSGI."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import joblib  # type: ignore[import-untyped]
import numpy as np
import pandas as pd
import pytest
import requests
from conftest import PROVENANCE, need_nginx
from regression_kit import FEATURES, TARGET, diabetes_workspace, run_stages, write_params
from werkzeug.test import Client

import modelcard
from devstack.stack import Stack
from serving.app import create_app
from serving.model import Model, ModelError
from serving.provenance import HEADER, provenance_id
from training import portable

NAME = "diabetes-regressor"


class Served:
    """The trained regression artifact and what the tests compare its answers with."""

    def __init__(self, root: Path, out: Path) -> None:
        self.directory = out
        self.pipeline = joblib.load(root / "random_forest/model.pkl")
        test = pd.read_csv(root / "split/test.csv")
        self.x = test.drop(columns=[TARGET]).to_numpy(dtype=np.float64)
        self.card = modelcard.load(out)
        self.profile = modelcard.read_profile(out, self.card)

    def records(self, count: int) -> list[dict[str, float]]:
        return [dict(zip(FEATURES, row, strict=True)) for row in self.x[:count].tolist()]

    def expected(self, count: int) -> np.ndarray:
        values: np.ndarray = portable.sklearn_values(self.pipeline, self.x[:count])[:, 0]
        return values


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Served:
    root = diabetes_workspace(tmp_path_factory.mktemp("diabetes"))
    params_path = write_params(root, "params", **{"train.estimator": "random_forest"})
    return Served(root, run_stages(root, params_path, root / "random_forest"))


@pytest.fixture
def client(served: Served) -> Client:
    return create_app({"MODEL_DIR": str(served.directory)}).test_client()


def score_bin(text: str, index: int) -> str:
    """modelops_score_bin_total's value for one bin in a /metrics exposition."""
    found = re.search(rf'^modelops_score_bin_total{{bin="{index}"}} (\S+)$', text, re.M)
    assert found is not None, f"no score bin {index} in /metrics"
    return found.group(1)


def predictions_of(body: dict[str, Any]) -> list[float]:
    # the model named (issue 24: no provenance in the body), no classes, labels or probabilities
    assert set(body) == {"model_name", "model_version", "predictions"}, body
    values: list[float] = body["predictions"]
    return values


def test_predict_answers_each_rows_predicted_value_one_row_or_many(
    served: Served, client: Client
) -> None:
    for count in (1, 20):  # the one-row path and the batch path
        response = client.post("/predict", json={"instances": served.records(count)})
        assert response.status_code == 200, response.get_data(as_text=True)
        got = predictions_of(response.get_json())
        np.testing.assert_allclose(got, served.expected(count), rtol=0, atol=1e-6)
    bad = client.post("/predict", json={"instances": [{**served.records(1)[0], "bmi": "fat"}]})
    assert bad.status_code == 422
    assert bad.get_json()["error"] == "instances[0].bmi must be a number, got str"


def test_v2_metadata_says_the_output_is_one_fp64_value_a_row_and_infer_answers_it(
    served: Served, client: Client
) -> None:
    metadata = client.get(f"/v2/models/{NAME}").get_json()
    assert metadata["outputs"] == [{"name": "predict", "datatype": "FP64", "shape": [-1]}]
    assert metadata["parameters"]["task"] == "regression"
    assert "classes" not in metadata["parameters"]
    x = served.x[:5]
    request = {"inputs": [{"name": "input-0", "shape": [5, 10], "datatype": "FP64",
                           "data": x.ravel().tolist()}]}  # fmt: skip
    body = client.post(f"/v2/models/{NAME}/infer", json=request).get_json()
    (output,) = body["outputs"]
    assert output["name"] == "predict" and output["datatype"] == "FP64"
    assert output["shape"] == [5]
    np.testing.assert_allclose(output["data"], served.expected(5), rtol=0, atol=1e-6)
    asked = client.post(
        f"/v2/models/{NAME}/infer", json={**request, "outputs": [{"name": "predict_proba"}]}
    )
    assert asked.status_code == 422
    assert asked.get_json()["error"] == (
        "outputs[0].name 'predict_proba' is not an output; allowed: predict"
    )


def test_the_drift_signals_count_the_predictions_into_the_profiles_bins(
    served: Served, client: Client
) -> None:
    """modelops_score_bin counts the predicted values by the profile's score edges (what the
    score-drift rules compare with modelops_score_reference_ratio); no class is counted."""
    sent = 40
    client.post("/predict", json={"instances": served.records(sent)})
    client.post("/predict", json={"instances": served.records(1)})
    values = [*served.expected(sent).tolist(), served.expected(1)[0]]
    edges = served.profile.score.edges
    bins = len(served.profile.score.ratios)
    expected = np.bincount(np.searchsorted(edges, values, side="right"), minlength=bins)
    text = client.get("/metrics").get_data(as_text=True)
    counted = [float(score_bin(text, b)) for b in range(bins)]
    assert counted == expected.tolist()
    assert re.search(r"^modelops_scored_rows_total 41\.0$", text, re.M)
    assert "modelops_predicted_class_total{" not in text
    assert "modelops_near_boundary" not in text


@pytest.mark.e2e
def test_the_stack_answers_predict_and_v2_infer_with_numbers_through_nginx(served: Served) -> None:
    need_nginx()
    with Stack(served.directory, env=PROVENANCE) as running:
        through_nginx(served, running.url)


def through_nginx(served: Served, url: str) -> None:
    """/predict and v2 infer through the Nginx at URL answer the predicted values, the model
    named and its provenance id the metadata's."""
    response = requests.post(f"{url}/predict", json={"instances": served.records(8)}, timeout=10)
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(
        predictions_of(response.json()), served.expected(8), rtol=0, atol=1e-6
    )
    metadata = requests.get(f"{url}/v2/models/{NAME}", timeout=10).json()["parameters"]
    assert metadata["model_sha256"] == served.card["model_sha256"]
    assert response.headers[HEADER] == metadata["provenance_id"] == provenance_id(metadata)
    request = {"inputs": [{"name": name, "shape": [3], "datatype": "FP64",
                           "data": served.x[:3, index].tolist()}
                          for index, name in enumerate(FEATURES)]}  # fmt: skip
    response = requests.post(f"{url}/v2/models/{NAME}/infer", json=request, timeout=10)
    assert response.status_code == 200, response.text
    (output,) = response.json()["outputs"]
    assert (output["datatype"], output["shape"]) == ("FP64", [3])
    np.testing.assert_allclose(output["data"], served.expected(3), rtol=0, atol=1e-6)
    metadata = requests.get(f"{url}/v2/models/{NAME}", timeout=10).json()
    assert metadata["outputs"] == [{"name": "predict", "datatype": "FP64", "shape": [-1]}]


def tampered_copy(served: Served, target: Path, edit: Any) -> Path:
    """A copy of the artifact whose JSON file ``edit`` names is changed by it, the card's sha256
    of that file updated (so only the tampered content can be what a loader refuses)."""
    shutil.copytree(served.directory, target)
    name, change = edit
    document = json.loads((target / name).read_text())
    change(document)
    (target / name).write_text(json.dumps(document) + "\n")
    card = json.loads((target / modelcard.METADATA_FILE).read_text())
    key = "verification" if name == modelcard.VERIFICATION_FILE else "profile"
    card[key]["sha256"] = modelcard.sha256_file(target / name)
    modelcard.write_card(target, card)
    return target


def test_the_server_repeats_the_regression_proof_and_refuses_a_value_off_by_more_than_1e6(
    served: Served, tmp_path: Path
) -> None:
    def nudge(document: dict[str, Any]) -> None:
        document["predictions"][3] += 2e-6

    directory = tampered_copy(served, tmp_path / "model", (modelcard.VERIFICATION_FILE, nudge))
    with pytest.raises(ModelError) as refused:
        Model(directory).load()
    rows = served.card["verification"]["rows"]
    assert str(refused.value).startswith(
        f"model verification failed on the sample training wrote: 1 of {rows} rows have a value "
        "off by more than 1e-06 (largest difference 2e-06"
    )
    intact = Model(served.directory)
    intact.load()
    assert intact.ready and intact.regression and intact.classes == ()


def test_a_regression_profile_with_a_class_score_is_refused_at_load(
    served: Served, tmp_path: Path
) -> None:
    def as_classifier(document: dict[str, Any]) -> None:
        document["score"]["kind"] = "top_probability"

    directory = tampered_copy(served, tmp_path / "model", (modelcard.PROFILE_FILE, as_classifier))
    with pytest.raises(ModelError, match=r"score\.kind must be .prediction. for a regression"):
        Model(directory).load()
