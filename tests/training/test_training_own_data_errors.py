"""docs/training.md's "Using your own data" quotes the one-line errors a user meets: each is the
code's own line, produced here by running the bad case.

Every case starts from an example of training/examples/ (``churn``: categorical columns and
missing cells, a classification; ``diabetes``: a regression) in a workspace laid out like the
repository (run from it, so messages name ``training/data/churn.csv`` and
``training/params.yaml`` as a user sees them), changes one thing (a cell of the data file or a
key of params.yaml) and runs the stage that refuses it in this process; the server's 422s come
from the churn model trained there and the app's test client. Each line must appear verbatim in
the section; each case's input without its defect passes (prepare) or is answered (server).
"""

from __future__ import annotations

import csv
import io
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from training_helpers import ROOT
from werkzeug.test import Client

from serving.app import create_app
from training import bundled, evaluate, export, prepare, train
from training.errors import run_stage

DOC = ROOT / "docs" / "training.md"
SECTION = "## Using your own data"
EXAMPLES = ROOT / "training" / "examples"


def own_data_section(text: str) -> str:
    """The "Using your own data" section of docs/training.md's TEXT (to the next ``## ``)."""
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    return text[start : end if end != -1 else len(text)]


def not_quoted(section: str, lines: list[str]) -> list[str]:
    """The LINES the SECTION does not hold as a whole line (inside its code blocks or not)."""
    held = {line.strip() for line in section.splitlines()}
    return [line for line in lines if line not in held]


@dataclass
class Workspace:
    root: Path

    def reset(self, name: str) -> None:
        """The example NAME's params.yaml and data file, as a user switches to it."""
        params = self.root / "training/params.yaml"
        params.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(EXAMPLES / name / "params.yaml", params)
        data = self.root / "training/data" / f"{name}.csv"
        bundled.write(name, data)

    def edit_params(self, dotted: str, value: Any) -> None:
        path = self.root / "training/params.yaml"
        document = yaml.safe_load(path.read_text())
        *parents, leaf = dotted.split(".")
        node = document
        for key in parents:
            node = node[key]
        node[leaf] = value
        path.write_text(yaml.safe_dump(document, sort_keys=False))

    def edit_cell(self, name: str, line: int, column: str, value: str) -> None:
        """Set COLUMN's cell in LINE (1: the header) of the example's data file."""
        path = self.root / "training/data" / f"{name}.csv"
        rows = list(csv.reader(io.StringIO(path.read_text())))
        rows[line - 1][rows[0].index(column)] = value
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(rows)
        path.write_text(out.getvalue())


def stage_error(main: Callable[..., None], argv: list[str], capsys: Any) -> str:
    """MAIN run by the stage runner: its one stderr line ("" when it passed)."""
    capsys.readouterr()
    code = run_stage(main, argv)
    lines = capsys.readouterr().err.strip().splitlines()
    assert (code == 0) == (not lines), lines
    assert len(lines) <= 1, lines
    return lines[0] if lines else ""


PREPARE = ["--params", "training/params.yaml", "--out", "split", "--root", "."]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    root = tmp_path_factory.mktemp("own-data")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        yield Workspace(root)


#: Each case: (the example, its one change); prepare refuses it (params are checked first).
DATA_CASES: dict[str, tuple[str, Callable[[Workspace], None]]] = {
    "missing-not-declared": (
        "churn",
        lambda w: w.edit_params(
            "data.missing",
            {"plan": "most_frequent", "region": {"constant": "unknown"}, "tenure_months": "median"},
        ),
    ),
    "unseen-listed-category": ("churn", lambda w: w.edit_cell("churn", 6, "plan", "gold")),
    "text-in-a-number": ("churn", lambda w: w.edit_cell("churn", 6, "tenure_months", "ten")),
    "fraction-in-int64": ("churn", lambda w: w.edit_cell("churn", 6, "support_calls", "2.5")),
    "label-not-a-class": ("churn", lambda w: w.edit_cell("churn", 6, "churned", "maybe")),
    "categorical-excluded": (
        "churn",
        lambda w: w.edit_params("data.exclude", ["customer_id", "plan"]),
    ),
    "regression-target-text": (
        "diabetes",
        lambda w: w.edit_cell("diabetes", 6, "progression", "high"),
    ),
    "imputation-for-category": ("churn", lambda w: w.edit_params("data.missing.plan", "mean")),
    "imputation-for-number": (
        "churn",
        lambda w: w.edit_params("data.missing.tenure_months", "mode"),
    ),
    "unseen-rule": ("churn", lambda w: w.edit_params("data.categorical.plan.unseen", "skip")),
    "type-of-category": ("churn", lambda w: w.edit_params("data.types.plan", "int64")),
    "task": ("churn", lambda w: w.edit_params("data.task", "forecast")),
    "classes-in-regression": ("diabetes", lambda w: w.edit_params("data.classes", ["low", "high"])),
}


def data_errors(workspace: Workspace, capsys: Any) -> dict[str, str]:
    errors = {}
    for case, (example, change) in DATA_CASES.items():
        workspace.reset(example)
        assert stage_error(prepare.main, PREPARE, capsys) == "", f"{case}: the example itself"
        change(workspace)
        errors[case] = stage_error(prepare.main, PREPARE, capsys)
    return errors


@pytest.fixture(scope="module")
def churn_server(workspace: Workspace) -> Client:
    """The churn example trained in the workspace, served by the app (in process)."""
    workspace.reset("churn")
    p = ["--params", "training/params.yaml"]
    prepare.main([*PREPARE])
    train.main([*p, "--data", "split/train.csv", "--model", "model.pkl"])
    evaluate.main([*p, "--test", "split/test.csv", "--model", "model.pkl",
                   "--metrics", "metrics.json", "--plots", "plots"])  # fmt: skip
    export.main([*p, "--pipeline", "model.pkl", "--train", "split/train.csv",
                 "--test", "split/test.csv", "--metrics", "metrics.json",
                 "--out", "model"])  # fmt: skip
    return create_app({"MODEL_DIR": str(workspace.root / "model")}).test_client()


RECORD = {
    "plan": "plus",
    "region": "south",
    "contract": "monthly",
    "tenure_months": 12,
    "monthly_charges": 55.5,
    "support_calls": 2,
}
#: What each line names, one at least: a column of an example, or a key of params.yaml.
NAMED = {*RECORD, "churned", "progression", "task", "classes"}
PREDICT_CASES = {
    "unseen-category": {"plan": "gold"},
    "null-not-allowed": {"support_calls": None},
    "number-for-category": {"plan": 1.0},
    "text-for-number": {"tenure_months": "ten"},
}
V2_CASES: dict[str, tuple[dict[str, str], dict[str, Any]]] = {
    "fp64-for-category": ({"plan": "FP64"}, {}),
    "null-not-allowed": ({}, {"support_calls": None}),
}


def tensors(records: list[dict[str, Any]], **datatypes: str) -> list[dict[str, Any]]:
    kinds = {name: "BYTES" if isinstance(v, str) else "FP64" for name, v in RECORD.items()}
    kinds.update(datatypes)
    return [
        {"name": name, "shape": [len(records)], "datatype": kinds[name],
         "data": [r[name] for r in records]}
        for name in RECORD
    ]  # fmt: skip


def server_errors(client: Client) -> dict[str, str]:
    errors = {}
    assert client.post("/predict", json={"instances": [RECORD, RECORD]}).status_code == 200
    for case, change in PREDICT_CASES.items():
        answer = client.post("/predict", json={"instances": [RECORD, {**RECORD, **change}]})
        assert answer.status_code == 422, case
        errors[f"predict-{case}"] = answer.get_json()["error"]
    name = client.post("/predict", json={"instances": [RECORD]}).get_json()["model_name"]
    url = f"/v2/models/{name}/infer"
    assert client.post(url, json={"inputs": tensors([RECORD, RECORD])}).status_code == 200
    for case, (datatypes, change) in V2_CASES.items():
        body = {"inputs": tensors([RECORD, {**RECORD, **change}], **datatypes)}
        answer = client.post(url, json=body)
        assert answer.status_code == 422, case
        errors[f"v2-{case}"] = answer.get_json()["error"]
    return errors


def test_each_one_line_error_the_section_quotes_is_the_codes_own(
    workspace: Workspace, churn_server: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    produced = {**data_errors(workspace, capsys), **server_errors(churn_server)}
    for case, line in produced.items():
        assert line and "\n" not in line, case
        named = re.findall(r"\w+", line)
        assert set(named) & NAMED, f"{case}: names no column or key: {line}"
    section = own_data_section(DOC.read_text(encoding="utf-8"))
    print("\n".join(produced.values()))
    assert not_quoted(section, list(produced.values())) == [], "docs/training.md is stale"


def test_the_check_sees_a_quoted_line_that_is_not_the_codes() -> None:
    section = own_data_section(DOC.read_text(encoding="utf-8"))
    quoted = next(line for line in section.splitlines() if line.startswith("error: "))
    assert not_quoted(section, [quoted]) == []
    assert not_quoted(section, [quoted.replace("error:", "error: prepare:")]) != []
