"""The regression tests' diabetes workspace, shared by tests/training and tests/serving (tests/
is on the test path): scikit-learn's bundled diabetes data written by training.bundled (the same
bytes on every run), a fork's params.yaml for it (``data.task: regression``), and the training
stages run in process on it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from training import bundled, evaluate, export, prepare, train

#: The regression families the issue asks for (a linear model, a forest, histogram boosting).
REGRESSORS = ("ridge", "random_forest", "hist_gradient_boosting")
#: Where the workspace holds the data (data.file) and its target column (bundled's name).
DATA_FILE = "data/diabetes.csv"
TARGET = bundled.BUNDLED["diabetes"].target
#: The features of scikit-learn's bundled diabetes data (442 rows, a numeric target).
FEATURES = ("age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6")


def diabetes_workspace(root: Path) -> Path:
    """ROOT with the diabetes CSV at DATA_FILE."""
    bundled.write("diabetes", root / DATA_FILE)
    return root


def diabetes_params(**changes: Any) -> dict[str, Any]:
    """A fork's params.yaml for the diabetes CSV: data.task regression, no classes, each
    regression family's section (a forest of 30 trees: the test's time), a gate every family
    passes on this split, and ``changes`` (dotted keys) on top."""
    document: dict[str, Any] = {
        "data": {
            "file": DATA_FILE,
            "task": "regression",
            "target": TARGET,
            "features": "all",
            "exclude": [],
            "feature_type": "float64",
            "types": {},
        },
        "prepare": {"seed": 42, "test_size": 0.2},
        "train": {
            "estimator": "ridge",
            "ridge": {"alpha": 1.0, "solver": "cholesky", "fit_intercept": True},
            "random_forest": {
                "n_estimators": 30,
                "max_depth": None,
                "min_samples_leaf": 2,
                "max_features": "sqrt",
                "bootstrap": True,
                "random_state": 42,
            },
            "hist_gradient_boosting": {
                "max_iter": 50,
                "learning_rate": 0.1,
                "max_leaf_nodes": 15,
                "max_depth": None,
                "min_samples_leaf": 20,
                "l2_regularization": 0.0,
                "early_stopping": False,
                "random_state": 42,
            },
        },
        "evaluate": {"thresholds": {"rmse": 65.0, "mae": 55.0, "r2": 0.3}},
        "export": {"allow_scikit_learn": False, "profile_bins": 10, "boundary_margin": 0.1},
        "artifact": {"name": "diabetes-regressor", "description": "Diabetes progression"},
        "promotion": {"regression_tolerance": 0.01},
    }
    for dotted, value in changes.items():
        *path, last = dotted.split(".")
        node = document
        for key in path:
            node = node[key]
        if value is None and last in node and dotted.startswith("data."):
            del node[last]
        else:
            node[last] = value
    return document


def write_params(root: Path, name: str, **changes: Any) -> Path:
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(diabetes_params(**changes), sort_keys=False))
    return path


def run_stages(root: Path, params_path: Path, work: Path) -> Path:
    """prepare, train, evaluate and export in process; the artifact directory."""
    split = root / "split"
    prepare.main(["--params", str(params_path), "--out", str(split), "--root", str(root)])
    model = work / "model.pkl"
    train.main(["--params", str(params_path), "--data", str(split / "train.csv"),
                "--model", str(model)])  # fmt: skip
    evaluate.main(["--params", str(params_path), "--test", str(split / "test.csv"),
                   "--model", str(model), "--metrics", str(work / "metrics.json"),
                   "--plots", str(work / "plots")])  # fmt: skip
    out = work / "model"
    export.main(["--params", str(params_path), "--pipeline", str(model),
                 "--train", str(split / "train.csv"), "--test", str(split / "test.csv"),
                 "--metrics", str(work / "metrics.json"), "--out", str(out)])  # fmt: skip
    return out
