"""Categorical columns and missing values in training: params, prepare, the column step, the card,
the proof (tests/training/columns_table.py's table; test_training_columns_served.py serves it).

Every refusal is shown on its defect: the bad value or declaration next to the same input without
it, which passes; the proof is shown failing on a graph that does not impute and on a decoder that
takes an unseen category for a known one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from columns_table import (
    CITIES,
    CLASSES,
    COLOURS,
    DATA,
    ROOT,
    Trained,
    churn_rows,
    train_table,
    write_params,
    write_table,
)

import modelcard
from modelcard import runtime
from training import columns, params
from training import prepare as prepare_stage
from training.dataset import read_split
from training.errors import run_stage
from training.export import served_files
from training.graph import ConversionError
from training.train import build_pipeline


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """The table through the four stages (the linear family: one-hot)."""
    return train_table(tmp_path_factory.mktemp("churn"))


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


def test_the_server_refuses_such_a_model_as_a_pickle(trained: Trained, tmp_path: Path) -> None:
    """Its requests are decoded into coded rows, which a pickled pipeline does not take: the
    export never writes one (allow_scikit_learn does not apply), and the server refuses one."""
    import joblib  # type: ignore[import-untyped]

    from serving.model import Model, ModelError

    model_dir = tmp_path / "model"
    shutil.copytree(trained.model_dir, model_dir)
    assert Model(model_dir).load() is None  # as exported: loads
    (model_dir / "model.onnx").unlink()
    joblib.dump(trained.pipeline, model_dir / "model.pkl")
    card = json.loads((model_dir / "metadata.json").read_text())
    card.update(
        format="scikit-learn",
        model_file="model.pkl",
        model_sha256=modelcard.sha256_file(model_dir / "model.pkl"),
    )
    modelcard.write_card(model_dir, card)
    with pytest.raises(ModelError) as refused:
        Model(model_dir).load()
    assert str(refused.value) == (
        f"{model_dir / 'metadata.json'}: a model with categorical features or missing values is "
        "served as ONNX only (format 'scikit-learn'): requests are decoded into the graph's coded "
        "rows"
    )


# --- a regression on the same columns --------------------------------------------------------


def test_a_regression_on_categorical_and_missing_columns_is_proven_and_served(
    tmp_path: Path,
) -> None:
    """``data.task: regression`` with the table's column kinds (income as the target, the linear
    family: one-hot): the four stages pass, the card is a regression's with the categories and
    imputations, and the server answers nulls and an unseen city as scikit-learn does. The
    defect it guards against: a regression's split read without its categorical columns, which
    cannot be read as numbers."""
    import joblib  # type: ignore[import-untyped]

    from serving.model import Model
    from training import evaluate as evaluate_stage
    from training import export as export_stage
    from training import train as train_stage
    from training.dataset import read_regression_split

    write_table(tmp_path, churn_rows())
    data = {key: value for key, value in DATA.items() if key not in ("classes", "positive_class")}
    params_file = write_params(tmp_path, "ridge")  # then the data section of a regression
    document = yaml.safe_load(params_file.read_text())
    document["data"] = {
        **data,
        "task": "regression",
        "target": "income",
        "exclude": ["id", "churn"],
    }
    document["evaluate"]["thresholds"] = {"rmse": 100.0}
    params_file.write_text(yaml.safe_dump(document, sort_keys=False))
    out = tmp_path / "out"
    for main, argv in (
        (prepare_stage.main, ["--out", out, "--root", tmp_path]),
        (train_stage.main, ["--data", out / "train.csv", "--model", out / "model.pkl"]),
        (evaluate_stage.main, [
            "--test", out / "test.csv", "--model", out / "model.pkl",
            "--metrics", out / "metrics.json", "--plots", out / "plots",
        ]),
        (export_stage.main, [
            "--pipeline", out / "model.pkl", "--train", out / "train.csv",
            "--test", out / "test.csv", "--metrics", out / "metrics.json", "--out", out / "model",
        ]),
    ):  # fmt: skip
        assert run_stage(main, ["--params", str(params_file), *map(str, argv)]) == 0
    with pytest.raises(ValueError):  # the defect: the categories read as numbers
        read_regression_split(out / "train.csv", "income")
    features, _ = read_regression_split(out / "train.csv", "income", ["colour", "city"])
    assert list(features["colour"].iloc[:2]) == ["green", "red"]

    card = modelcard.load(out / "model")
    assert card["task"] == "regression" and card["classes"] == []
    kinds = {f["name"]: f for f in card["features"]}
    assert kinds["colour"]["categories"] == COLOURS and kinds["age"]["missing"]["strategy"]
    model = Model(out / "model")
    model.load()
    records = [
        {"colour": "red", "city": "oslo", "age": 40, "score": 3.25},
        {"colour": None, "city": "nowhere", "age": None, "score": None},
    ]
    rows = runtime.encode_rows(model.columns, [list(r.values()) for r in records])
    served = model.predict_proba(rows)[:, 0]
    frame = pd.DataFrame(
        [{k: (np.nan if v is None else v) for k, v in r.items()} for r in records]
    ).astype({"age": "float64", "score": "float64"})
    expected = joblib.load(out / "model.pkl").predict(frame)
    assert np.abs(served - expected).max() <= 1e-6
