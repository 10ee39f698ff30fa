"""A family in one file: a family defined here registers through training.families' API, and
params validation, the stages, the export's proof, the docs table and the server take it from
there with no other change; the registry refuses what would make a family ambiguous."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import joblib  # type: ignore[import-untyped]
import numpy as np
import pandas as pd
import pytest
import yaml
from onnx import helper
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.pipeline import Pipeline
from training_helpers import ROOT

from training import bundled, evaluate, export, families, familydocs, params, prepare, train
from training.errors import StageError
from training.families import Family, Number
from training.graph import OUTPUT, Graph


def gaussian_nb_pipeline(hyper: Mapping[str, Any]) -> Pipeline:
    return Pipeline([("classify", GaussianNB(**hyper))])


def gaussian_nb_graph(model: GaussianNB, g: Graph, current: str, *, prior: bool = True) -> None:
    """scikit-learn's joint log-likelihood per class, then its softmax (predict_proba):
    ``log prior - 1/2 sum log(2 pi var) - 1/2 sum (x - theta)^2 / var``. ``prior=False`` leaves
    out the class prior: the defect the proof must catch."""
    columns = []
    for c in range(len(model.classes_)):
        diff, squared, summed = g.name(), g.name(), g.name()
        g.nodes.append(helper.make_node("Sub", [current, g.constant(model.theta_[c])], [diff]))
        g.nodes.append(helper.make_node("Mul", [diff, diff], [squared]))
        inverse = g.constant((1.0 / model.var_[c])[:, None])
        g.nodes.append(helper.make_node("MatMul", [squared, inverse], [summed]))
        columns.append(summed)
    stacked, scaled, joint = g.name(), g.name(), g.name()
    g.nodes.append(helper.make_node("Concat", columns, [stacked], axis=1))
    g.nodes.append(helper.make_node("Mul", [stacked, g.constant([-0.5])], [scaled]))
    bias = -0.5 * np.log(2.0 * np.pi * model.var_).sum(axis=1)
    if prior:
        bias = bias + np.log(model.class_prior_)
    g.nodes.append(helper.make_node("Add", [scaled, g.constant(bias)], [joint]))
    g.nodes.append(helper.make_node("Softmax", [joint], [OUTPUT], axis=1))


def gaussian_nb(*, prior: bool = True) -> Family:
    """The whole family, as its module in training/families/ would define it."""

    def to_onnx(model: GaussianNB, g: Graph, current: str) -> None:
        gaussian_nb_graph(model, g, current, prior=prior)

    return Family(
        name="gaussian_nb",
        summary="`GaussianNB`",
        params=(Number("var_smoothing", note="of the largest variance, added to each", low=0),),
        pipeline=gaussian_nb_pipeline,
        estimators=(GaussianNB,),
        to_onnx=to_onnx,
    )


@pytest.fixture
def registered() -> Iterator[Family]:
    family = families.register(gaussian_nb())
    yield family
    families.unregister(family.name)


@pytest.fixture
def broken() -> Iterator[Family]:
    family = families.register(gaussian_nb(prior=False))
    yield family
    families.unregister(family.name)


def workspace(tmp_path: Path, **section: Any) -> Path:
    """The committed params.yaml choosing gaussian_nb (its own section added: the only change a
    new family asks of params), a gate this family passes, and the bundled raw data file."""
    document = yaml.safe_load((ROOT / "training/params.yaml").read_text())
    document["train"]["estimator"] = "gaussian_nb"
    document["train"]["gaussian_nb"] = section or {"var_smoothing": 1.0e-9}
    document["evaluate"]["thresholds"] = {"accuracy": 0.85, "roc_auc": 0.9}
    path = tmp_path / "training/params.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    bundled.write("breast_cancer", tmp_path / document["data"]["file"])
    return path


def run_stages(tmp_path: Path, params_path: Path) -> Path:
    """prepare, train, evaluate and export, in process (the stage runner's main functions, so the
    family registered in this process is the one they see); the artifact directory."""
    split, work = tmp_path / "split", tmp_path / "work"
    prepare.main(["--params", str(params_path), "--out", str(split), "--root", str(tmp_path)])
    model = work / "model.pkl"
    train.main(["--params", str(params_path), "--data", str(split / "train.csv"),
                "--model", str(model)])  # fmt: skip
    metrics = work / "metrics.json"
    evaluate.main(["--params", str(params_path), "--test", str(split / "test.csv"),
                   "--model", str(model), "--metrics", str(metrics),
                   "--plots", str(work / "plots")])  # fmt: skip
    out = tmp_path / "model"
    export.main(["--params", str(params_path), "--pipeline", str(model),
                 "--train", str(split / "train.csv"), "--test", str(split / "test.csv"),
                 "--metrics", str(metrics), "--out", str(out)])  # fmt: skip
    return out


def test_a_family_defined_in_a_test_trains_exports_a_proven_graph_and_is_served(
    registered: Family, tmp_path: Path
) -> None:
    from serving.app import create_app

    out = run_stages(tmp_path, workspace(tmp_path))
    card = json.loads((out / "metadata.json").read_text())
    assert card["estimator"] == "gaussian_nb"
    assert card["params"] == {"var_smoothing": 1.0e-9}
    assert card["format"] == "onnx"
    assert card["proof"]["generated_rows"] >= 10_000
    assert card["proof"]["largest_difference"] <= 1e-6
    model = joblib.load(tmp_path / "work/model.pkl")
    assert type(model.steps[-1][1]) is GaussianNB

    test = pd.read_csv(tmp_path / "split/test.csv")
    features = test.drop(columns=["diagnosis"])
    records = features.head(20).to_dict(orient="records")
    client = create_app({"MODEL_DIR": str(out)}).test_client()
    response = client.post("/predict", json={"instances": records})
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["classes"] == [str(c) for c in model.classes_]
    np.testing.assert_allclose(
        body["probabilities"], model.predict_proba(features.head(20)), rtol=0, atol=1e-6
    )
    assert body["labels"] == [str(label) for label in model.predict(features.head(20))]


def test_a_family_whose_graph_differs_from_its_pipeline_fails_the_export_in_one_line(
    broken: Family, tmp_path: Path
) -> None:
    with pytest.raises(StageError) as caught:
        run_stages(tmp_path, workspace(tmp_path))
    message = str(caught.value)
    assert message.startswith("export: the ONNX graph differs from scikit-learn on the test split")
    assert "\n" not in message
    assert not (tmp_path / "model").exists()


def test_params_check_a_registered_familys_section_by_its_own_schema(
    registered: Family, tmp_path: Path
) -> None:
    path = workspace(tmp_path)
    assert params.load_train(path) == params.TrainParams("gaussian_nb", {"var_smoothing": 1e-9})
    for number, (section, message) in enumerate(
        [
            ({"var_smoothing": "x"}, "train.gaussian_nb.var_smoothing must be a number, got 'x'"),
            ({"var_smoothing": 0}, "train.gaussian_nb.var_smoothing must be in (0, inf], got 0"),
            ({"var_smoothing": 1, "priors": None}, "train.gaussian_nb.priors is not a known key"),
        ]
    ):
        bad = workspace(tmp_path / str(number), **section)
        with pytest.raises(params.ParamsError, match=r"^\S+ " + message.replace("(", r"\(")):
            params.load_train(bad)


def test_without_its_module_the_family_and_its_section_are_refused(tmp_path: Path) -> None:
    path = workspace(tmp_path)
    with pytest.raises(params.ParamsError, match=r"train.gaussian_nb is not a known key"):
        params.load_train(path)


def test_the_docs_table_lists_every_registered_family_and_check_fails_when_it_is_stale(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert familydocs.main(["--check"]) == 0
    doc = tmp_path / "training.md"
    doc.write_text(familydocs.DOC.read_text())
    family = families.register(gaussian_nb())
    try:
        assert familydocs.main(["--check", "--doc", str(doc)]) == 1
        assert "the families table differs from training/families/" in capsys.readouterr().err
        assert familydocs.main(["--doc", str(doc)]) == 0
        assert (
            "| `gaussian_nb` | classification | `GaussianNB` | `var_smoothing` (> 0; of the largest"
            in (doc.read_text())
        )
        assert familydocs.main(["--check", "--doc", str(doc)]) == 0
    finally:
        families.unregister(family.name)
    assert familydocs.main(["--check", "--doc", str(doc)]) == 1
    doc.write_text("# no table here\n")
    assert familydocs.main(["--check", "--doc", str(doc)]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"error: {doc}: must hold the line '<!-- families: generated")


def test_each_built_in_family_is_a_module_of_the_package_and_the_registry_lists_them() -> None:
    modules = sorted(
        p.stem for p in (ROOT / "training/families").glob("*.py") if not p.stem.startswith("_")
    )
    assert list(families.names()) == modules
    for name in modules:
        section = yaml.safe_load((ROOT / "training/params.yaml").read_text())["train"][name]
        assert [param.key for param in families.get(name).params] == list(section)


@pytest.mark.parametrize(
    ("family", "message"),
    [
        (
            Family("Gaussian-NB", "", (), gaussian_nb_pipeline, (GaussianNB,), gaussian_nb_graph),
            "family name 'Gaussian-NB' must be lowercase words joined by '_'",
        ),
        (
            Family("estimator", "", (), gaussian_nb_pipeline, (GaussianNB,), gaussian_nb_graph),
            "family name 'estimator' must be",
        ),
        (
            Family(
                "logistic_regression",
                "",
                (),
                gaussian_nb_pipeline,
                (GaussianNB,),
                gaussian_nb_graph,
            ),
            "family 'logistic_regression' is already registered",
        ),
        (
            Family(
                "linear", "", (), gaussian_nb_pipeline, (LogisticRegression,), gaussian_nb_graph
            ),
            "family 'linear': LogisticRegression is already converted by family "
            "'logistic_regression'",
        ),
        (
            Family("nothing", "", (), gaussian_nb_pipeline, (), gaussian_nb_graph),
            "family 'nothing' must list the estimator classes it converts",
        ),
    ],
)
def test_the_registry_refuses_a_family_it_could_not_tell_apart(
    family: Family, message: str
) -> None:
    before = families.names()
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        families.register(family)
    assert families.names() == before
