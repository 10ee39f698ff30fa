"""Categorical columns and missing values, from the data file to an answer through Nginx.

A small churn-like table is generated here, deterministically (seeded), into a temp directory:
``colour`` (categories listed, unseen ones refused, missing ones imputed with the most frequent),
``city`` (categories learned from the train split, unseen ones ignored, missing ones imputed with
the constant ``unknown``), ``age`` (int64, median), ``income`` (float64, no value may be missing)
and ``score`` (float64, mean). It runs through the real stages (``python -m training prepare``,
``train``, ``evaluate``, ``export``) and is served by a devstack Stack (uWSGI behind Nginx), which
answers every category, an unseen one, nulls where allowed, and refuses nulls where not and
wrong types, each in one line naming the value's place. Every refusal is shown on its defect: the
bad value next to a good one that passes. The other two families are proven in-process on the
same table.
"""

from __future__ import annotations

import csv
import json
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib  # type: ignore[import-untyped]
import numpy as np
import pandas as pd
import pytest
import requests
import yaml
from training_helpers import ROOT, run

import modelcard
from devstack.stack import Stack, missing_servers
from modelcard import runtime
from training import columns, params
from training import prepare as prepare_stage
from training.dataset import read_split
from training.errors import run_stage
from training.export import served_files
from training.graph import ConversionError
from training.train import build_pipeline

COLOURS = ["red", "green", "blue"]
CITIES = ["kiev", "lima", "oslo", "pune"]
CLASSES = ["no", "yes"]
DATA = {
    "file": "training/data/churn.csv",
    "target": "churn",
    "classes": CLASSES,
    "positive_class": "yes",
    "features": "all",
    "exclude": ["id"],
    "feature_type": "float64",
    "types": {"age": "int64"},
    "categorical": {
        "colour": {"categories": COLOURS, "unseen": "error"},
        "city": {"categories": "learn", "unseen": "ignore"},
    },
    "missing": {
        "colour": "most_frequent",
        "city": {"constant": "unknown"},
        "age": "median",
        "score": "mean",
    },
}


def churn_rows(count: int = 600, seed: int = 7) -> list[list[str]]:
    """The table's rows as CSV cells (header first): the label follows the features with noise;
    colour misses every 11th value, city every 13th (as ``NA``), age every 7th, score every 17th."""
    rng = random.Random(seed)  # noqa: S311  (test data, not secrets)
    rows = [["id", "colour", "city", "age", "income", "score", "churn"]]
    for i in range(count):
        colour, city = COLOURS[i % 3], CITIES[rng.randrange(4)]
        age, income, score = rng.randint(18, 80), round(rng.gauss(50, 15), 3), rng.random() * 10
        z = {"red": 1.5, "green": 0.0, "blue": -0.5}[colour] + (0.8 if city == "oslo" else 0.0)
        z += (age - 50) / 15 - (income - 50) / 20 + (score - 5) / 3
        label = CLASSES[int(z + rng.gauss(0, 0.7) > 0)]
        cells = [str(i), colour, city, str(age), repr(income), repr(round(score, 4)), label]
        for column, every, offset, blank in ((1, 11, 3, ""), (2, 13, 5, "NA"), (3, 7, 2, "")):
            if i % every == offset:
                cells[column] = blank
        if i % 17 == 6:
            cells[5] = ""
        rows.append(cells)
    return rows


def write_table(root: Path, rows: list[list[str]]) -> None:
    path = root / DATA["file"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, lineterminator="\n").writerows(rows)


def write_params(root: Path, estimator: str, **data: Any) -> Path:
    """The committed params.yaml with this table's data section (and ``data`` overrides), a low
    gate and a small forest."""
    document = yaml.safe_load((ROOT / "training/params.yaml").read_text())
    document["data"] = {**DATA, **data}
    document["train"]["estimator"] = estimator
    document["train"]["random_forest"]["n_estimators"] = 20
    document["train"]["hist_gradient_boosting"]["max_iter"] = 20
    document["evaluate"]["thresholds"] = {"accuracy": 0.7, "roc_auc": 0.8}
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def stage(root: Path, *args: str | Path, check: bool = True) -> Any:
    return run("python", "-m", "training", *args, cwd=root, check=check)


def prepare(root: Path, params_file: Path, check: bool = True) -> Any:
    return stage(
        root, "prepare", "--params", params_file, "--out", root / "out", "--root", root,
        check=check,
    )  # fmt: skip


def prepare_here(root: Path, params_file: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """prepare in this process (the stage runner's one-line failure): its stderr lines, empty
    when it passed."""
    capsys.readouterr()
    code = run_stage(
        prepare_stage.main,
        ["--params", str(params_file), "--out", str(root / "out"), "--root", str(root)],
    )
    lines = capsys.readouterr().err.strip().splitlines()
    assert (code == 0) == (not lines)
    return lines


@dataclass
class Trained:
    root: Path
    model_dir: Path
    card: dict[str, Any]
    pipeline: Any
    test: pd.DataFrame


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """The table through prepare, train, evaluate and export (the linear family: one-hot)."""
    root = tmp_path_factory.mktemp("churn")
    write_table(root, churn_rows())
    p = write_params(root, "logistic_regression")
    out = root / "out"
    prepare(root, p)
    stage(root, "train", "--params", p, "--data", out / "train.csv", "--model", out / "model.pkl")
    stage(
        root, "evaluate", "--params", p, "--test", out / "test.csv", "--model", out / "model.pkl",
        "--metrics", out / "metrics.json", "--plots", out / "plots",
    )  # fmt: skip
    stage(
        root, "export", "--params", p, "--pipeline", out / "model.pkl", "--train",
        out / "train.csv", "--test", out / "test.csv", "--metrics", out / "metrics.json",
        "--out", out / "model",
    )  # fmt: skip
    test, _ = read_split(out / "test.csv", "churn", ["colour", "city"])
    pipeline = joblib.load(out / "model.pkl")
    return Trained(root, out / "model", modelcard.load(out / "model"), pipeline, test)


# --- training --------------------------------------------------------------------------------


def test_the_card_lists_each_columns_kind_categories_and_imputation(trained: Trained) -> None:
    features = {f["name"]: f for f in trained.card["features"]}
    assert list(features) == ["colour", "city", "age", "income", "score"]
    assert features["colour"] == {
        "name": "colour",
        "dtype": "category",
        "categories": COLOURS,  # listed: their order is the codes'
        "unseen": "error",
        "missing": {"strategy": "most_frequent", "fill": features["colour"]["missing"]["fill"]},
    }
    assert features["colour"]["missing"]["fill"] in COLOURS
    # learned from the train split, sorted, with the imputation's constant added
    assert features["city"]["categories"] == [*CITIES, "unknown"]
    assert features["city"]["unseen"] == "ignore"
    assert features["city"]["missing"] == {"strategy": "constant", "fill": "unknown"}
    assert (
        features["age"]["dtype"] == "int64" and features["age"]["missing"]["strategy"] == "median"
    )
    assert features["income"] == {"name": "income", "dtype": "float64"}
    step = trained.pipeline.steps[0][1]
    assert type(step).__name__ == "ColumnTransformer"
    assert type(step.named_transformers_["colour"].steps[-1][1]).__name__ == "OneHotEncoder"
    assert trained.card["proof"]["generated_rows"] >= 10_000


def test_the_verification_sample_holds_text_categories_an_unseen_one_and_nulls(
    trained: Trained,
) -> None:
    rows = json.loads((trained.model_dir / "verification.json").read_text())["rows"]
    colours = {row[0] for row in rows}
    cities = {row[1] for row in rows}
    assert set(COLOURS) | {None} <= colours
    assert {*CITIES, "unknown", "<unseen>", None} <= cities
    assert any(row[2] is None for row in rows) and any(row[4] is None for row in rows)
    assert all(isinstance(row[3], float) for row in rows)  # income may not be missing


@pytest.mark.parametrize("family", ["random_forest", "hist_gradient_boosting"])
def test_the_tree_families_are_proven_on_ordinal_codes(
    trained: Trained, family: str, tmp_path: Path
) -> None:
    p = write_params(tmp_path, family)
    data, train_params = params.load_data(p), params.load_train(p)
    train, labels = read_split(trained.root / "out/train.csv", "churn", data.categorical)
    model = build_pipeline(train_params, data, train).fit(train, labels)
    encoder = model.steps[0][1].named_transformers_["colour"].steps[-1][1]
    assert type(encoder).__name__ == "OrdinalEncoder"
    names = [str(c) for c in train.columns]
    card = columns.card_features(model, names, {"age": "int64"})
    served = served_files(
        model, CLASSES, train, trained.test, tmp_path / "model", features=names,
        allow_scikit_learn=False, positive_class="yes", columns=card,
    )  # fmt: skip
    assert served["format"] == "onnx"
    assert served["proof"]["generated_rows"] >= 10_000
    assert served["proof"]["largest_difference"] <= 1e-6


def test_the_generated_rows_hold_every_category_an_unseen_one_and_missing_values(
    trained: Trained,
) -> None:
    specs = trained.card["features"]
    base = np.zeros((10_000, 5))
    rows = columns.decorate(base, specs, 1)
    assert set(np.unique(rows[~np.isnan(rows[:, 0]), 0])) == {0.0, 1.0, 2.0}  # no unseen: error
    assert set(np.unique(rows[~np.isnan(rows[:, 1]), 1])) == {-1.0, 0.0, 1.0, 2.0, 3.0, 4.0}
    for index in (0, 1, 2, 4):  # the columns that allow a missing value have some
        assert np.isnan(rows[:, index]).any(), index
    assert not np.isnan(rows[:, 3]).any()  # income does not
    assert np.isnan(rows[:, [0, 1, 2, 4]]).all(axis=1).any()  # and a row missing all of them
    assert (rows[:5_000] == base[:5_000]).all(axis=1).sum() > 4_900  # the resampled half stays


def test_the_proof_fails_when_the_graph_does_not_impute(
    trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The defect the proof guards against: a graph that leaves missing values as NaN."""
    monkeypatch.setattr(columns, "fitted_columns", _without_imputation(columns.fitted_columns))
    train, _ = read_split(trained.root / "out/train.csv", "churn", ["colour", "city"])
    with pytest.raises(ConversionError) as refused:
        served_files(
            trained.pipeline, CLASSES, train, trained.test, tmp_path / "model",
            features=list(train.columns), allow_scikit_learn=False, positive_class="yes",
            columns=trained.card["features"],
        )  # fmt: skip
    assert str(refused.value).startswith(
        "the ONNX graph differs from scikit-learn on the test split: "
    )
    assert "probabilities are not finite" in str(refused.value)


def _without_imputation(real: Any) -> Any:
    def fitted(step: Any) -> Any:
        return [
            columns.Fitted(c.name, c.categories, c.unseen, c.encoding, None, None)
            for c in real(step)
        ]

    return fitted


def test_the_proof_fails_when_an_unseen_category_is_taken_for_the_first(
    trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The defect the unseen rows guard against: a request decoder that maps an unseen category
    onto a known one (scikit-learn's one-hot gives it all zeros)."""
    monkeypatch.setattr(runtime, "UNSEEN_CODE", 0.0)
    train, _ = read_split(trained.root / "out/train.csv", "churn", ["colour", "city"])
    with pytest.raises(ConversionError) as refused:
        served_files(
            trained.pipeline, CLASSES, train, trained.test, tmp_path / "model",
            features=list(train.columns), allow_scikit_learn=False, positive_class="yes",
            columns=trained.card["features"],
        )  # fmt: skip
    # caught where the generated rows (decoded to text, '<unseen>' among them) are encoded again
    assert str(refused.value) == "the generated rows do not encode back to their codes"


@pytest.mark.parametrize(
    ("cells", "data", "message"),
    [
        (
            {4: ""}, {},
            "column 'income': missing value '' in line 9 (declare the column under data.missing "
            "to allow it)",
        ),
        (
            {1: "purple"}, {},
            "column 'colour': category 'purple' in line 9 is not in "
            "data.categorical.colour.categories (red, green, blue; unseen: error)",
        ),
        (
            {}, {"missing": {"age": "median", "score": "mean", "city": "most_frequent"}},
            "column 'colour': missing value '' in line 5 (declare the column under data.missing "
            "to allow it)",
        ),
    ],
    ids=["null-in-income", "unlisted-colour", "null-in-colour-not-allowed"],
)  # fmt: skip
def test_prepare_refuses_a_value_the_column_does_not_take_in_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    cells: dict[int, str],
    data: dict[str, Any],
    message: str,
) -> None:
    """The file and params without the defect pass; with it (a cell in line 9, or colour no
    longer allowed to miss values), prepare refuses in one line naming the column and line."""
    rows = churn_rows()
    write_table(tmp_path, rows)
    assert prepare_here(tmp_path, write_params(tmp_path, "logistic_regression"), capsys) == []
    for column, value in cells.items():
        rows[8][column] = value
    write_table(tmp_path, rows)
    refused = prepare_here(tmp_path, write_params(tmp_path, "logistic_regression", **data), capsys)
    assert refused == [f"error: {tmp_path / DATA['file']}: {message}"]


def test_prepare_refuses_a_learned_category_only_the_test_split_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = churn_rows()
    strict = {"categories": "learn", "unseen": "error"}
    categorical = {**DATA["categorical"], "city": strict}  # type: ignore[dict-item]
    p = write_params(tmp_path, "logistic_regression", categorical=categorical)
    write_table(tmp_path, rows)
    assert prepare_here(tmp_path, p, capsys) == []
    test = pd.read_csv(tmp_path / "out/test.csv", dtype=str, keep_default_na=False)
    line = next(i for i, row in enumerate(rows) if row[4] == test["income"].iloc[0]) + 1
    rows[line - 1][2] = "quito"  # a city no train row has, in a row of the test split
    write_table(tmp_path, rows)
    assert prepare_here(tmp_path, p, capsys) == [
        f"error: {tmp_path / DATA['file']}: column 'city': category 'quito' in line {line} "
        "is in the test split only (categories: learn takes the train split's; list the "
        "categories or set unseen: ignore)"
    ]
    p = write_params(tmp_path, "logistic_regression")  # unseen: ignore takes it
    assert prepare_here(tmp_path, p, capsys) == []


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"missing": {"colour": "mean"}}, "data.missing.colour must be one of most_frequent or "
         "{constant: value} for a categorical column, got 'mean'"),
        ({"missing": {"age": "mode"}}, "data.missing.age must be one of mean, median, "
         "most_frequent or {constant: value} for a numeric column, got 'mode'"),
        ({"categorical": {"colour": {"categories": COLOURS, "unseen": "skip"}}},
         "data.categorical.colour.unseen must be one of error, ignore, got 'skip'"),
        ({"types": {"colour": "int64"}}, "data.types 'colour' is categorical (data.categorical): "
         "it has no number type"),
    ],
    ids=["mean-of-categories", "unknown-imputation", "unknown-unseen-rule", "typed-category"],
)  # fmt: skip
def test_a_bad_column_declaration_is_refused_in_one_line(
    tmp_path: Path, data: dict[str, Any], message: str
) -> None:
    assert params.load_data(write_params(tmp_path, "logistic_regression")).categorical
    with pytest.raises(params.ParamsError) as refused:
        params.load_data(write_params(tmp_path, "logistic_regression", **data))
    assert str(refused.value) == f"{tmp_path / 'params.yaml'}: {message}"


def test_the_default_dataset_declares_no_column_kinds() -> None:
    data = params.load_data(ROOT / "training/params.yaml")
    assert data.categorical == {} and data.missing == {}
    assert not columns.needed(data.categorical, data.missing)


# --- serving through Nginx -------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(trained: Trained) -> Iterator[Stack]:
    missing = missing_servers()
    if missing is not None:
        pytest.skip(missing)
    with Stack(trained.model_dir, env={"MODELOPS_MODEL_NAME": "churn"}) as running:
        yield running


RECORD = {"colour": "red", "city": "oslo", "age": 40, "income": 52.5, "score": 3.25}


def frame_of(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Records as scikit-learn takes them (what read_split gives): NaN where a value is missing."""
    frame = pd.DataFrame(
        [{k: (math.nan if v in (None, "") else v) for k, v in r.items()} for r in records]
    )
    frame[["age", "income", "score"]] = frame[["age", "income", "score"]].astype("float64")
    return frame


def expected_proba(trained: Trained, records: list[dict[str, Any]]) -> np.ndarray:
    return np.asarray(trained.pipeline.predict_proba(frame_of(records)))


def predict(stack: Stack, records: list[dict[str, Any]]) -> requests.Response:
    return requests.post(f"{stack.url}/predict", json={"instances": records}, timeout=30)


@pytest.mark.e2e
def test_predict_answers_every_category_an_unseen_one_and_nulls_as_scikit_learn(
    trained: Trained, stack: Stack
) -> None:
    records = [{**RECORD, "colour": c, "city": city} for c in COLOURS for city in CITIES]
    records += [
        {**RECORD, "city": "quito"},  # unseen, ignored
        {**RECORD, "colour": None, "city": None, "age": None, "score": None},
        {**RECORD, "colour": "", "city": ""},  # "" is a missing category too
    ]
    response = predict(stack, records)
    assert response.status_code == 200, response.text
    served = np.asarray(response.json()["probabilities"])
    assert np.abs(served - expected_proba(trained, records)).max() <= 1e-6
    assert response.json()["labels"] == list(trained.pipeline.predict(frame_of(records)))


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"income": None}, "instances[1].income",
         "instances[1].income is missing; income does not allow missing values"),
        ({"colour": "purple"}, "instances[1].colour",
         "instances[1].colour is 'purple', not a category of colour (categories: red, green, "
         "blue; unseen ones are refused)"),
        ({"colour": 1.0}, "instances[1].colour",
         "instances[1].colour must be a string (a category of colour), got float"),
        ({"age": "forty"}, "instances[1].age", "instances[1].age must be a number, got str"),
        ({"score": True}, "instances[1].score", "instances[1].score must be a number, got bool"),
    ],
    ids=["null-in-income", "unseen-colour", "number-for-category", "text-for-number", "bool"],
)  # fmt: skip
def test_predict_refuses_a_value_its_feature_does_not_take_in_one_line(
    stack: Stack, change: dict[str, Any], field: str, message: str
) -> None:
    assert predict(stack, [RECORD, RECORD]).status_code == 200  # without the defect: answered
    response = predict(stack, [RECORD, {**RECORD, **change}])
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == message and "\n" not in body["error"]
    assert body.get("field", field) == field


def tensors(records: list[dict[str, Any]], **datatypes: str) -> list[dict[str, Any]]:
    kinds = {"colour": "BYTES", "city": "BYTES", "age": "INT64", "income": "FP64", "score": "FP64"}
    kinds.update(datatypes)
    return [
        {"name": name, "shape": [len(records)], "datatype": kinds[name],
         "data": [r[name] for r in records]}
        for name in RECORD
    ]  # fmt: skip


def infer(stack: Stack, inputs: list[dict[str, Any]]) -> requests.Response:
    return requests.post(f"{stack.url}/v2/models/churn/infer", json={"inputs": inputs}, timeout=30)


@pytest.mark.e2e
def test_v2_takes_bytes_tensors_and_nulls_and_lists_each_input(
    trained: Trained, stack: Stack
) -> None:
    records = [{**RECORD, "colour": c} for c in COLOURS]
    records += [{**RECORD, "city": "quito", "age": None, "score": None, "colour": ""}]
    response = infer(stack, tensors(records))
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    served = np.asarray(outputs["predict_proba"]["data"]).reshape(len(records), 2)
    assert np.abs(served - expected_proba(trained, records)).max() <= 1e-6
    metadata = requests.get(f"{stack.url}/v2/models/churn", timeout=30).json()
    assert metadata["inputs"] == [
        {"name": "colour", "datatype": "BYTES", "shape": [-1]},
        {"name": "city", "datatype": "BYTES", "shape": [-1]},
        {"name": "age", "datatype": "FP64", "shape": [-1]},
        {"name": "income", "datatype": "FP64", "shape": [-1]},
        {"name": "score", "datatype": "FP64", "shape": [-1]},
    ]
    assert metadata["parameters"]["categories"]["colour"] == {
        "categories": COLOURS,
        "unseen": "error",
    }
    assert metadata["parameters"]["missing"] == ["colour", "city", "age", "score"]


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("datatypes", "change", "field", "message"),
    [
        ({"colour": "FP64"}, {}, "inputs[0].datatype",
         "inputs[0].datatype is 'FP64'; colour is categorical: send BYTES (its categories as "
         "strings)"),
        ({"income": "BYTES"}, {}, "inputs[3].datatype",
         "inputs[3].datatype is 'BYTES'; income is a number: send one of FP64, FP32, FP16, "
         "INT64, INT32, INT16, INT8, UINT64, UINT32, UINT16, UINT8"),
        ({}, {"income": None}, "inputs[3].data[1]",
         "inputs[3].data[1] (income) is missing; income does not allow missing values"),
        ({}, {"colour": "purple"}, "inputs[0].data[1]",
         "inputs[0].data[1] (colour) is 'purple', not a category of colour (categories: red, "
         "green, blue; unseen ones are refused)"),
        ({}, {"colour": 3}, "inputs[0].data[1]",
         "inputs[0].data[1] (colour) must be a string (a category of colour), got int"),
    ],
    ids=[
        "fp64-for-category", "bytes-for-number", "null-in-income", "unseen-colour",
        "number-in-bytes",
    ],
)  # fmt: skip
def test_v2_refuses_a_wrong_datatype_or_value_in_one_line_naming_the_input(
    stack: Stack,
    datatypes: dict[str, str],
    change: dict[str, Any],
    field: str,
    message: str,
) -> None:
    assert infer(stack, tensors([RECORD, RECORD])).status_code == 200  # without the defect
    response = infer(stack, tensors([RECORD, {**RECORD, **change}], **datatypes))
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == message and "\n" not in body["error"]
    assert body.get("field", field) == field


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"categories": []}, "feature 'colour' (category) needs categories: distinct non-empty"),
        ({"categories": ["red", "red"]}, "feature 'colour' (category) needs categories"),
        ({"unseen": "drop"}, "feature 'colour' (category) needs unseen: error or ignore"),
        ({"missing": {"strategy": "guess"}}, "feature 'colour': missing must be {strategy: "),
    ],
    ids=["no-categories", "twice", "unseen-rule", "imputation"],
)
def test_the_contract_refuses_a_card_whose_category_the_server_could_not_decode(
    trained: Trained, tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    card = json.loads((trained.model_dir / "metadata.json").read_text())
    modelcard.check_card(card, tmp_path / "metadata.json")  # as written: accepted
    card["features"][0].update(change)
    with pytest.raises(modelcard.ContractError) as refused:
        modelcard.check_card(card, tmp_path / "metadata.json")
    assert str(refused.value).startswith(f"{tmp_path / 'metadata.json'}: {message}")


def binary_body(records: list[dict[str, Any]]) -> tuple[bytes, int]:
    """An infer body in the binary tensor data extension: BYTES as 4-byte little-endian length
    prefixed UTF-8 elements ("" where missing), numbers as little-endian FP64 (NaN where
    missing); the JSON header's length."""
    inputs, chunks = [], []
    for name in RECORD:
        values = [r[name] for r in records]
        if name in ("colour", "city"):
            chunk = b"".join(
                len(v.encode()).to_bytes(4, "little") + v.encode()
                for v in (x or "" for x in values)
            )
            datatype = "BYTES"
        else:
            chunk = np.asarray([math.nan if v is None else v for v in values], "<f8").tobytes()
            datatype = "FP64"
        chunks.append(chunk)
        inputs.append(
            {"name": name, "shape": [len(records)], "datatype": datatype,
             "parameters": {"binary_data_size": len(chunk)}}
        )  # fmt: skip
    header = json.dumps({"inputs": inputs}).encode()
    return header + b"".join(chunks), len(header)


@pytest.mark.e2e
def test_v2_binary_tensors_carry_bytes_categories_and_nan_as_missing(
    trained: Trained, stack: Stack
) -> None:
    records = [
        {**RECORD, "colour": "blue", "city": "pune"},
        {**RECORD, "colour": None, "city": "quito", "age": None, "score": None},
    ]
    body, length = binary_body(records)
    response = requests.post(
        f"{stack.url}/v2/models/churn/infer",
        data=body,
        headers={"Inference-Header-Content-Length": str(length)},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    served = np.asarray(outputs["predict_proba"]["data"]).reshape(2, 2)
    assert np.abs(served - expected_proba(trained, records)).max() <= 1e-6
    refused, length = binary_body([{**RECORD, "income": None}])  # NaN where none may be missing
    response = requests.post(
        f"{stack.url}/v2/models/churn/infer",
        data=refused,
        headers={"Inference-Header-Content-Length": str(length)},
        timeout=30,
    )
    assert response.status_code == 422
    assert response.json()["error"] == (
        "inputs[3].data[0] (income) is missing; income does not allow missing values"
    )
