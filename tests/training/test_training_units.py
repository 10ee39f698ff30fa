"""Pure logic of the training package: params validation, the raw data's checks, the bundled
data's bytes, the estimators, the gate and its metrics, the verified model loader."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.datasets import load_breast_cancer, load_wine
from training_helpers import ROOT

from training import bundled, families, params, prepare
from training.dataset import load_raw, min_rows_per_class, read_split, write_csv
from training.errors import StageError
from training.evaluate import curve_inputs, gate_failures, score
from training.train import build_pipeline

#: The data keys of a classification only (a regression's params drop them).
CLASS_KEYS = ("classes", "positive_class")

DATA = """\
data:
  file: data/table.csv
  target: label
  classes: [stay, leave]
  positive_class: leave
  features: all
  exclude: []
  feature_type: float64
  types: {}
"""
VALID = (
    DATA
    + """\
prepare: {seed: 1, test_size: 0.25}
train:
  estimator: logistic_regression
  logistic_regression: {C: 2, max_iter: 50, tol: 0.001, solver: newton-cg, fit_intercept: false}
  random_forest: {n_estimators: 5, max_depth: null, min_samples_leaf: 1, max_features: sqrt,
                  bootstrap: true, random_state: 0}
  hist_gradient_boosting: {max_iter: 5, learning_rate: 0.1, max_leaf_nodes: 31, max_depth: null,
                           min_samples_leaf: 20, l2_regularization: 0, early_stopping: false,
                           random_state: 0}
evaluate: {thresholds: {accuracy: 0.5, roc_auc: 0.6}}
export: {allow_scikit_learn: false, profile_bins: 10, boundary_margin: 0.1}
artifact: {name: churn-model, description: Who leaves}
"""
)
LOADERS = (
    params.load_data,
    params.load_prepare,
    params.load_train,
    params.load_evaluate,
    params.load_export,
    params.load_artifact,
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def test_the_committed_params_file_is_valid_for_every_stage() -> None:
    path = ROOT / "training/params.yaml"
    assert params.load_prepare(path).test_size == pytest.approx(0.2)
    train = params.load_train(path)
    assert train.estimator == "logistic_regression"
    assert train.as_dict() == {
        "C": 1.0, "max_iter": 1000, "tol": 0.0001, "solver": "lbfgs", "fit_intercept": True,
    }  # fmt: skip
    assert set(params.load_evaluate(path).thresholds) == set(params.METRIC_NAMES)
    data = params.load_data(path)
    assert (data.file, data.target, data.positive_class) == (
        "training/data/breast_cancer.csv", "diagnosis", "malignant",
    )  # fmt: skip
    artifact = yaml.safe_load(path.read_text())["artifact"]
    assert params.load_artifact(path) == params.ArtifactParams(
        artifact["name"], artifact["description"]
    )  # whatever a fork renames it to (make render)
    assert params.load_export(path) == params.ExportParams(False, 10, 0.1)


def test_every_estimator_section_of_the_committed_file_is_valid(tmp_path: Path) -> None:
    """Each family's section, chosen for a task the family trains (a regression-only family's
    with data.task: regression, which drops the classes)."""
    text = (ROOT / "training/params.yaml").read_text()
    for name in families.names():
        chosen = text.replace("estimator: logistic_regression", f"estimator: {name}", 1)
        if "classification" not in families.get(name).tasks:
            document = yaml.safe_load(chosen)
            document["data"] = {
                **{k: v for k, v in document["data"].items() if k not in CLASS_KEYS},
                "task": "regression",
            }
            chosen = yaml.safe_dump(document)
        assert params.load_train(write(tmp_path, chosen)).estimator == name


def test_a_valid_file_gives_typed_values(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    assert params.load_prepare(path) == params.PrepareParams(seed=1, test_size=0.25)
    train = params.load_train(path)
    assert train.estimator == "logistic_regression"
    assert train.hyper["C"] == 2.0 and isinstance(train.hyper["C"], float)
    assert train.as_dict() == {
        "C": 2.0, "max_iter": 50, "tol": 0.001, "solver": "newton-cg", "fit_intercept": False,
    }  # fmt: skip
    assert params.load_evaluate(path).thresholds == {"accuracy": 0.5, "roc_auc": 0.6}
    data = params.load_data(path)
    assert data.classes == ("stay", "leave") and data.binary and data.features is None
    assert params.load_artifact(path) == params.ArtifactParams("churn-model", "Who leaves")
    forest = params.load_train(
        write(tmp_path, VALID.replace("tor: logistic_regression", "tor: random_forest"))
    )
    assert forest.as_dict()["max_depth"] is None


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("C: 2,", "C: '2',", "train.logistic_regression.C must be a number, got '2'"),
        ("C: 2,", "C: true,", "train.logistic_regression.C must be a number, got True"),
        ("C: 2,", "C: -1,", "train.logistic_regression.C must be in (0, inf], got -1"),
        ("C: 2,", "", "train.logistic_regression.C is missing"),
        ("max_iter: 50", "max_iter: 5.5", "train.logistic_regression.max_iter must be an integer"),
        ("fit_intercept: false", "fit_intercept: 'no'", "fit_intercept must be true or"),
        ("solver: newton-cg", "solver: saga", "train.logistic_regression.solver must be one of"),
        ("tol: 0.001", "tol: .nan", "train.logistic_regression.tol must be in (0, inf], got nan"),
        (
            "estimator: logistic_regression",
            "estimator: svm",
            "train.estimator must be one of hist_gradient_boosting, logistic_regression, "
            "random_forest, ridge, got 'svm'",
        ),
        (
            "n_estimators: 5,",
            "n_estimators: 5, n_jobs: 4,",
            "train.random_forest.n_jobs is not a known key (known: n_estimators, max_depth,",
        ),
        ("max_features: sqrt", "max_features: 0.5", "train.random_forest.max_features must be one"),
        (
            "learning_rate: 0.1",
            "learning_rate: 0",
            "hist_gradient_boosting.learning_rate must be in",
        ),
        ("early_stopping: false", "early_stopping: auto", "early_stopping must be true or false"),
        ("  random_forest: {", "  random_forst: {", "train.random_forst is not a known key"),
        ("test_size: 0.25", "test_size: 0.9", "prepare.test_size must be in (0, 0.5], got 0.9"),
        ("seed: 1,", "seed: 1, sed: 2,", "prepare.sed is not a known key"),
        ("accuracy: 0.5", "acuracy: 0.5", "evaluate.thresholds.acuracy is not a known key"),
        ("name: churn-model", "name: Churn_Model", "artifact.name must be lowercase letters"),
        ("profile_bins: 10", "profile_bins: 1", "export.profile_bins must be >= 2, got 1"),
        ("profile_bins: 10", "profile_bins: 101", "export.profile_bins must be at most 100"),
        ("boundary_margin: 0.1", "boundary_margin: 1.5", "export.boundary_margin must be in"),
        ("allow_scikit_learn: false,", "", "export.allow_scikit_learn is missing"),
        (
            "positive_class: leave",
            "positive_class: maybe",
            "data.positive_class must be one of stay, leave",
        ),
        ("positive_class: leave", "", "data.positive_class is missing"),
        ("classes: [stay, leave]", "classes: [stay]", "data.classes must list at least 2, got 1"),
        ("classes: [stay, leave]", "classes: [a, a]", "data.classes lists 'a' twice"),
        ("classes: [stay, leave]", "classes: [no, yes]", "data.classes reads False: quote the"),
        ("features: all", "features: some", "data.features must be 'all' or a list of column"),
        ("feature_type: float64", "feature_type: str", "data.feature_type must be one of float64"),
        ("file: data/table.csv", "file: ../table.csv", "data.file must be a .csv file inside"),
        ("file: data/table.csv", "file: data/table.xlsx", "data.file must be a .csv file inside"),
        (
            "exclude: []",
            "exclude: [label]",
            "data.target 'label' is also listed among the features",
        ),
        ("types: {}", "types: {a: float16}", "data.types.a must be one of float64, int64"),
        ("target: label", "target: label\n  labels: [a]", "data.labels is not a known key"),
    ],
)
def test_a_bad_value_is_named_in_one_line(tmp_path: Path, old: str, new: str, message: str) -> None:
    text = VALID.replace(old, new, 1)
    assert text != VALID
    path = write(tmp_path, text)
    with pytest.raises(params.ParamsError) as caught:
        for load in LOADERS:
            load(path)
    assert message in str(caught.value)
    assert str(caught.value).startswith(f"{path}: ")
    assert "\n" not in str(caught.value)


def test_positive_class_is_for_two_classes_only_and_the_chosen_estimator_needs_its_section(
    tmp_path: Path,
) -> None:
    three = write(tmp_path, VALID.replace("classes: [stay, leave]", "classes: [a, b, c]"))
    with pytest.raises(params.ParamsError, match=r"data.positive_class is for two classes only"):
        params.load_data(three)
    text = VALID.replace("  positive_class: leave\n", "").replace(
        "classes: [stay, leave]", "classes: [a, b, c]"
    )
    assert params.load_data(write(tmp_path, text)).positive_class is None
    without = VALID.replace("estimator: logistic_regression", "estimator: random_forest")
    without = without.split("  random_forest:")[0] + "evaluate:" + without.split("evaluate:")[1]
    with pytest.raises(params.ParamsError, match=r"train.random_forest is missing \(the hyper"):
        params.load_train(write(tmp_path, without))


def test_a_missing_section_and_bad_yaml_are_named(tmp_path: Path) -> None:
    path = write(tmp_path, "prepare: {seed: 1, test_size: 0.2}\n")
    with pytest.raises(params.ParamsError, match=r"params.yaml: missing key train$"):
        params.load_train(path)
    path = write(tmp_path, "train: [C\n")
    with pytest.raises(params.ParamsError, match=r"not valid YAML at line 2"):
        params.load_train(path)


# --- the raw data file -------------------------------------------------------------------------

TABLE = "a,b,label\n" + "".join(
    f"{i * 0.5},{i % 3},{'leave' if i % 2 else 'stay'}\n" for i in range(20)
)


def raw(tmp_path: Path, table: str = TABLE, extra: str = "") -> tuple[params.DataParams, Path]:
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data/table.csv").write_text(table)
    return params.load_data(write(tmp_path, DATA + extra)), tmp_path


def test_a_valid_file_reads_as_declared(tmp_path: Path) -> None:
    spec, root = raw(tmp_path)
    frame = load_raw(spec, root, 0.25)
    assert list(frame.columns) == ["a", "b", "label"]
    assert frame["a"].dtype == np.float64 and frame["label"].tolist()[:2] == ["stay", "leave"]
    text = DATA.replace("types: {}", "types: {b: int64}").replace("exclude: []", "exclude: [a]")
    frame = load_raw(params.load_data(write(tmp_path, text)), root, 0.25)
    assert list(frame.columns) == ["b", "label"] and frame["b"].dtype == np.int64


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda t: t.replace(",label\n", ",diagnosis\n", 1),
            "column 'label' (data.target) is not in the file (columns: a, b, diagnosis)",
        ),
        (lambda t: t.replace("a,b,", "a,a,", 1), "column 'a' appears twice in the header"),
        (
            lambda t: t.replace("\n1.0,", "\n1.0x,", 1),
            "column 'a': non-numeric value '1.0x' in line 4",
        ),
        (
            lambda t: t.replace("\n1.0,", "\n,", 1),
            "column 'a': missing value '' in line 4 (declare the column under data.missing "
            "to allow it)",
        ),
        (
            lambda t: t.replace("\n1.0,", "\nNaN,", 1),
            "column 'a': missing value 'NaN' in line 4 (declare the column under data.missing "
            "to allow it)",
        ),
        (
            lambda t: t.replace("\n1.0,", "\ninf,", 1),
            "column 'a': non-finite value 'inf' in line 4",
        ),
        (
            lambda t: t.replace(",stay\n", ",maybe\n", 1),
            "column 'label': label 'maybe' in line 2 is not in data.classes (stay, leave)",
        ),
        (
            lambda t: t.replace(",stay\n", ",\n", 1),
            "column 'label': missing label in line 2 is not in data.classes (stay, leave)",
        ),
        (
            lambda t: "a,b,label\n" + "".join(t.splitlines(True)[1:18:2]) + "1,1,leave\n" * 3,
            "column 'label': class 'leave' has 3 rows; a split with prepare.test_size 0.25 "
            "needs at least 4 of each class",
        ),
        (lambda t: "a,b,label\n", "no data rows below the header"),
        (lambda t: "", "empty file (a CSV file needs a header line)"),
    ],
    ids=[
        "no-target",
        "twice",
        "non-numeric",
        "empty-cell",
        "nan",
        "inf",
        "unknown-label",
        "no-label",
        "too-few",
        "no-rows",
        "empty",
    ],
)
def test_bad_data_is_refused_in_one_line_naming_the_column(
    tmp_path: Path, change: object, message: str
) -> None:
    spec, root = raw(tmp_path, change(TABLE))  # type: ignore[operator]
    with pytest.raises(StageError) as caught:
        load_raw(spec, root, 0.25)
    assert str(caught.value) == f"{root / 'data/table.csv'}: {message}"


def test_a_declared_integer_column_must_hold_whole_numbers_and_listed_features_must_exist(
    tmp_path: Path,
) -> None:
    _, root = raw(tmp_path)
    typed = params.load_data(write(tmp_path, DATA.replace("types: {}", "types: {a: int64}")))
    with pytest.raises(StageError, match=r"column 'a': '0.5' in line 3 is not a whole number"):
        load_raw(typed, root, 0.25)
    listed = params.load_data(write(tmp_path, DATA.replace("features: all", "features: [a, c]")))
    with pytest.raises(StageError, match=r"column 'c' \(data.features\) is not in the file"):
        load_raw(listed, root, 0.25)


def test_a_missing_data_file_says_how_to_get_it(tmp_path: Path) -> None:
    spec = params.load_data(write(tmp_path, DATA))
    with pytest.raises(StageError, match=r"table.csv: no such file \(dvc pull it; a bundled"):
        load_raw(spec, tmp_path, 0.25)


def test_prepare_refusing_bad_data_writes_no_split(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, root = raw(tmp_path, TABLE.replace(",stay\n", ",maybe\n", 1))
    (tmp_path / "params.yaml").write_text(VALID)
    out = tmp_path / "splits"
    argv = ["--params", str(tmp_path / "params.yaml"), "--out", str(out), "--root", str(root)]
    assert prepare.run_stage(prepare.main, argv) == 1
    assert capsys.readouterr().err.count("\n") == 1
    assert not out.exists() or list(out.iterdir()) == []
    (root / "data/table.csv").write_text(TABLE)
    assert prepare.run_stage(prepare.main, argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["test.csv", "train.csv"]


def test_min_rows_per_class_puts_every_class_in_both_splits() -> None:
    assert [min_rows_per_class(t) for t in (0.5, 0.25, 0.2, 0.3, 0.1)] == [2, 4, 5, 4, 10]


# --- the bundled data --------------------------------------------------------------------------


def test_the_default_data_regenerates_the_bytes_its_committed_dvc_file_records() -> None:
    lines = bundled.check(ROOT / "training/data")
    assert lines == [
        f"{ROOT / 'training/data/breast_cancer.csv'}: regenerates byte for byte (md5 "
        f"{bundled.recorded_md5(ROOT / 'training/data/breast_cancer.csv.dvc')[1]})"
    ]


@pytest.mark.parametrize(
    ("name", "loader"), [("breast_cancer", load_breast_cancer), ("wine", load_wine)]
)
def test_a_bundled_file_reads_back_as_exactly_the_floats_scikit_learn_ships(
    tmp_path: Path, name: str, loader: object
) -> None:
    path = tmp_path / "data/table.csv"
    bundled.write(name, path)
    bunch = loader()  # type: ignore[operator]
    target = bundled.BUNDLED[name].target
    classes = "[" + ", ".join(str(c) for c in bunch.target_names) + "]"
    text = DATA.replace("target: label", f"target: {target}").replace("[stay, leave]", classes)
    if len(bunch.target_names) == 2:
        text = text.replace("positive_class: leave", f"positive_class: {bunch.target_names[0]}")
    else:
        text = text.replace("  positive_class: leave\n", "")
    frame = load_raw(params.load_data(write(tmp_path, text)), tmp_path, 0.2)
    assert frame.shape == (len(bunch.data), bunch.data.shape[1] + 1)
    assert np.array_equal(frame.drop(columns=target).to_numpy(), bunch.data)  # bit for bit
    assert frame[target].tolist() == [str(bunch.target_names[i]) for i in bunch.target]


def test_restore_writes_only_a_missing_file_and_refuses_other_bytes(tmp_path: Path) -> None:
    data = tmp_path / "training/data"
    data.mkdir(parents=True)
    (data / "wine.csv.dvc").write_text(
        "outs:\n- md5: 0123abcd\n  size: 1\n  hash: md5\n  path: wine.csv\n"
    )
    with pytest.raises(
        StageError,
        match=r"wine.csv: scikit-learn .* md5 02bf.*, wine.csv.dvc records 0123abcd: dvc pull",
    ):
        bundled.restore(data, tmp_path)
    assert not (data / "wine.csv").exists()
    (data / "wine.csv").write_text("mine\n")
    assert bundled.restore(data, tmp_path) == [f"{data / 'wine.csv'}: present, left as it is"]
    assert (data / "wine.csv").read_text() == "mine\n"


# --- estimators, metrics, gate -----------------------------------------------------------------


def train_params(directory: Path, estimator: str) -> params.TrainParams:
    text = VALID.replace("estimator: logistic_regression", f"estimator: {estimator}")
    return params.load_train(write(directory, text))


@pytest.mark.parametrize("estimator", families.for_task("classification"))
def test_each_estimator_trains_reproducibly_and_only_logistic_regression_is_scaled(
    tmp_path: Path, estimator: str
) -> None:
    bunch = load_wine(as_frame=True)
    features, target = bunch.data, bunch.target.astype(str)
    first = build_pipeline(train_params(tmp_path, estimator)).fit(features, target)
    second = build_pipeline(train_params(tmp_path, estimator)).fit(features, target)
    assert pickle.dumps(first) == pickle.dumps(second)
    assert [name for name, _ in first.steps] == (
        ["scale", "classify"] if estimator == "logistic_regression" else ["classify"]
    )
    classifier = first.named_steps["classify"]
    if estimator == "random_forest":
        assert classifier.n_jobs == 1 and classifier.random_state == 0
    assert first.predict_proba(features.head(2)).shape == (2, 3)


def test_the_gate_names_each_metric_below_its_threshold() -> None:
    metrics = {"accuracy": 0.9, "precision": 0.8, "recall": 0.95, "f1": 0.85, "roc_auc": 0.99}
    assert gate_failures(metrics, {"accuracy": 0.9, "roc_auc": 0.98}) == []
    assert gate_failures(metrics, {"precision": 0.85, "recall": 0.96, "f1": 0.5}) == [
        "precision 0.8000 < 0.85 (evaluate.thresholds.precision)",
        "recall 0.9500 < 0.96 (evaluate.thresholds.recall)",
    ]


def test_binary_metrics_are_the_positive_class_and_multiclass_ones_macro_averages() -> None:
    y_true = pd.Series(["a", "a", "b", "b", "c", "c"])
    y_pred = np.array(["a", "a", "b", "a", "c", "c"])
    proba = np.array([[0.8, 0.1, 0.1], [0.7, 0.2, 0.1], [0.2, 0.7, 0.1],
                      [0.6, 0.3, 0.1], [0.1, 0.1, 0.8], [0.2, 0.1, 0.7]])  # fmt: skip
    macro = score(y_true, y_pred, proba, ["a", "b", "c"], None)
    # recall per class 1, 1/2, 1; precision 2/3, 1, 1
    assert macro["recall"] == round((1 + 0.5 + 1) / 3, 6)
    assert macro["precision"] == round((2 / 3 + 1 + 1) / 3, 6)
    assert macro["accuracy"] == round(5 / 6, 6) and 0 < macro["roc_auc"] <= 1
    truth, scores = curve_inputs(y_true, proba, ["a", "b", "c"], None)
    assert truth.shape == scores.shape == (18,) and truth.sum() == 6  # micro-averaged pairs
    y2 = pd.Series(["no", "yes", "yes", "no"])
    binary = score(
        y2,
        np.array(["no", "yes", "no", "no"]),
        np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]]),
        ["no", "yes"],
        "yes",
    )
    assert (binary["precision"], binary["recall"], binary["roc_auc"]) == (1.0, 0.5, 1.0)


def test_pandas_reads_back_what_prepare_writes(tmp_path: Path) -> None:
    bunch = load_breast_cancer(as_frame=True)
    frame = bunch.data.copy()
    frame["diagnosis"] = bunch.target.map(dict(enumerate(bunch.target_names)))
    write_csv(frame, tmp_path / "all.csv")
    features, target = read_split(tmp_path / "all.csv", "diagnosis")
    pd.testing.assert_frame_equal(features, frame.drop(columns="diagnosis"))
    assert list(target) == list(frame["diagnosis"])
