"""Stage export: write the served model artifact, proven equal to the pipeline, with its card.

    python -m training export --params training/params.yaml --pipeline training/pipeline/model.pkl \
        --train training/data/train.csv --test training/data/test.csv \
        --metrics training/metrics.json --out training/model

Runs after evaluate, so only a model that passed the quality gate gets an artifact (and export
checks the gate again against metrics.json, for a run by hand). ``--out`` (the GTO artifact's
directory) then holds exactly the served files (docs/contracts.md): ``model.onnx`` (the pipeline
as an ONNX graph, training/portable.py), ``verification.json`` (the sample the server repeats at
load), ``profile.json`` (the reference profile the server's drift signals are read
against, training/profile.py) and ``metadata.json`` (the model card). A model the export cannot
convert fails the stage with one line, unless ``export.allow_scikit_learn`` lets the pickle be
served instead, which the card states. The directory is written beside ``--out`` and renamed
into place: a failed export leaves no half-written artifact.

:func:`served_files` is also the serving tests' model builder (tests/serving/serving_testkit.py),
so a test model is written by the same code as a trained one.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import joblib  # type: ignore[import-untyped]  # no stubs; not in pyproject overrides
import numpy as np

import modelcard
from modelcard import runtime
from training import columns as column_kinds
from training.artifact import model_card
from training.dataset import read_regression_split, read_split
from training.errors import StageError, run_stage
from training.params import (
    load_artifact,
    load_data,
    load_evaluate,
    load_export,
    load_train,
    meets,
)
from training.portable import (
    GENERATED_SEED,
    ConversionError,
    Proof,
    generated_rows,
    prove,
    sample,
    sklearn_labels,
    sklearn_proba,
    sklearn_values,
    to_onnx,
)
from training.profile import (
    BINS,
    BOUNDARY_MARGIN,
    reference_profile,
    regression_profile,
    write_profile,
)


def served_files(
    model: Any,
    classes: list[str],
    train: Any,
    test: Any,
    out_dir: Path,
    *,
    features: Sequence[str],
    allow_scikit_learn: bool,
    positive_class: str | None = None,
    train_labels: Sequence[str] | None = None,
    profile_bins: int = BINS,
    boundary_margin: float = BOUNDARY_MARGIN,
    tolerance: float = modelcard.PROBABILITY_TOLERANCE,
    columns: Sequence[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Write the model file, verification.json and profile.json into ``out_dir``; return their
    card keys. ``train_labels`` (the train split's labels) give the profile its class balance;
    ``profile_bins`` and ``boundary_margin`` are the export stage's params (training/params.yaml),
    the profile's defaults for the other callers.

    ``train`` and ``test`` are float64 matrices in feature order (``features`` names the
    columns): the generated rows follow the training data, the proof runs on both, the profile
    bins the train split's features and the test split's scores (of ``positive_class`` for two
    classes; training/profile.py). ``columns`` are the card's feature entries
    (training.columns.card_features); when one is categorical or may be missing, ``train`` and
    ``test`` are DataFrames of the values as read (text categories, NaN where missing), the proof
    and the verification sample hold those values and the profile bins their codes. A model the
    export cannot convert raises ConversionError unless ``allow_scikit_learn``: then the pickle
    is what the server runs, and the card says so (``format: scikit-learn``; never for a model
    with a column step, whose requests the server decodes into coded rows).

    ``classes`` empty: the model is a regressor (``data.task: regression``): the proof compares
    its predicted values, verification.json holds ``predictions`` (one number a row) instead of
    probabilities and labels, and the profile's score is the prediction (training/profile.py).
    """
    specs = list(columns or [{"name": name, "dtype": "float64"} for name in features])
    plain = runtime.plain(specs)
    if plain:  # scikit-learn takes the float64 matrix, as the graph does
        train_raw = train_coded = np.asarray(train, dtype=np.float64)
        test_raw = test_coded = np.asarray(test, dtype=np.float64)
        generated = generated_raw = generated_rows(train_coded)
    else:  # scikit-learn takes the values a user sends, the graph their encoding
        train_raw, test_raw = train, test
        train_coded, test_coded = _encoded(specs, train), _encoded(specs, test)
        generated = column_kinds.decorate(generated_rows(train_coded), specs, GENERATED_SEED)
        generated_raw = column_kinds.decode(generated, specs)
        recoded = _encoded(specs, generated_raw)
        if not np.array_equal(recoded, generated, equal_nan=True):
            raise ConversionError("the generated rows do not encode back to their codes")
    try:
        graph = to_onnx(model, train_coded.shape[1])
        proof = prove(
            model,
            graph,
            classes,
            test_raw,
            generated_raw,
            tolerance,
            coded=None if plain else (test_coded, generated),
        )
        fmt, payload = "onnx", graph
    except ConversionError as exc:
        if not allow_scikit_learn:
            raise ConversionError(
                f"{exc} (set export.allow_scikit_learn: true in params.yaml to serve the "
                "scikit-learn pickle instead)"
            ) from None
        if not plain:
            raise ConversionError(
                f"{exc} (a model with categorical columns or missing values is served as ONNX "
                "only: the server decodes its requests into the graph's coded rows)"
            ) from None
        fmt, payload = "scikit-learn", b""
        proof = Proof(0, 0, 0.0, tolerance)
    out_dir.mkdir(parents=True, exist_ok=True)
    model_file = out_dir / modelcard.FORMATS[fmt]
    if fmt == "onnx":
        model_file.write_bytes(payload)
    else:
        joblib.dump(model, model_file)
    rows = sample(test_coded, generated)
    shown: Any = rows.tolist()
    fed: Any = rows
    if not plain:  # the values a user sends: text categories, null where missing
        fed = column_kinds.decode(rows, specs)
        shown = [
            [None if isinstance(v, float) and math.isnan(v) else v for v in row]
            for row in fed.itertuples(index=False, name=None)
        ]
    verification: dict[str, Any]
    if classes:
        verification = {
            "rows": shown,
            "probabilities": sklearn_proba(model, fed).tolist(),
            "labels": sklearn_labels(model, fed, classes),
            "tolerance": tolerance,
        }
    else:
        verification = {
            "rows": shown,
            "predictions": sklearn_values(model, fed)[:, 0].tolist(),
            "tolerance": tolerance,
        }
    sample_path = out_dir / modelcard.VERIFICATION_FILE
    sample_path.write_text(json.dumps(verification) + "\n", encoding="utf-8")
    profile = (
        regression_profile(
            features,
            train_coded,
            sklearn_values(model, test_raw),
            bins=profile_bins,
            columns=specs,
        )
        if not classes
        else reference_profile(
            features,
            classes,
            train_coded,
            sklearn_proba(model, train_raw),
            sklearn_proba(model, test_raw),
            positive_class=positive_class,
            train_labels=train_labels,
            bins=profile_bins,
            boundary_margin=boundary_margin,
            columns=specs,
        )
    )
    profile_path = write_profile(out_dir / modelcard.PROFILE_FILE, profile)
    return {
        "format": fmt,
        "model_file": model_file.name,
        "model_sha256": modelcard.sha256_file(model_file),
        "verification": {
            "file": sample_path.name,
            "sha256": modelcard.sha256_file(sample_path),
            "rows": len(rows),
        },
        "profile": {"file": profile_path.name, "sha256": modelcard.sha256_file(profile_path)},
        "proof": proof.as_dict(),
    }


def _encoded(specs: Sequence[dict[str, Any]], frame: Any) -> Any:
    """A DataFrame of values as the graph's coded float64 rows (modelcard.runtime.encode_rows)."""
    try:
        return runtime.encode_rows(specs, list(frame.itertuples(index=False, name=None)))
    except runtime.InputError as exc:
        raise ConversionError(f"row {exc.row}: {exc.column} {exc.message}") from None


def write_artifact(
    model: Any,
    classes: list[str],
    train: Any,
    test: Any,
    out_dir: Path,
    *,
    name: str,
    features: Sequence[str],
    allow_scikit_learn: bool,
    positive_class: str | None = None,
    train_labels: Sequence[str] | None = None,
    profile_bins: int = BINS,
    boundary_margin: float = BOUNDARY_MARGIN,
    card: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write a whole artifact into ``out_dir``: the served files (:func:`served_files`) and
    metadata.json through modelcard's contract; return the card written.

    ``card`` carries what the caller knows beyond the contract (the export stage: the estimator,
    metrics, data and libraries of training/artifact.py; a test or the benchmark: a few keys);
    without it the features are float64. ``classes`` empty writes a regression's artifact (the
    card's ``task: regression``). Callers: :func:`main`, the serving tests' and the image
    tests' model builders, the benchmark's models.
    """
    written_features = list(
        (card or {}).get("features") or [{"name": f, "dtype": "float64"} for f in features]
    )
    served = served_files(
        model,
        classes,
        train,
        test,
        out_dir,
        columns=written_features,
        features=features,
        allow_scikit_learn=allow_scikit_learn,
        positive_class=positive_class,
        train_labels=train_labels,
        profile_bins=profile_bins,
        boundary_margin=boundary_margin,
    )
    written = {
        **({} if classes else {"task": "regression"}),
        "schema_version": modelcard.SCHEMA_VERSION,
        "name": name,
        "features": written_features,
        "classes": classes,
        "positive_class": positive_class,
        **(card or {}),
        **served,
    }
    modelcard.write_card(out_dir, written)
    return written


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, required=True, help="params.yaml")
    parser.add_argument("--pipeline", type=Path, required=True, help="model.pkl from train")
    parser.add_argument("--train", type=Path, required=True, help="train.csv")
    parser.add_argument("--test", type=Path, required=True, help="test.csv")
    parser.add_argument("--metrics", type=Path, required=True, help="metrics.json from evaluate")
    parser.add_argument("--out", type=Path, required=True, help="the artifact directory")
    args = parser.parse_args(argv)
    data = load_data(args.params)
    gate = load_evaluate(args.params)
    train_params = load_train(args.params)
    artifact = load_artifact(args.params)
    export = load_export(args.params)

    metrics = json.loads(args.metrics.read_text(encoding="utf-8"))
    below = [
        name
        for name, threshold in gate.thresholds.items()
        if name not in metrics or not meets(name, float(metrics[name]), threshold)
    ]
    if below:
        raise StageError(
            f"{args.metrics} is below evaluate.thresholds for {', '.join(below)}: "
            "only a model that passed the quality gate is exported"
        )
    # model.pkl is this pipeline's own output from the train stage (tracked by DVC), not a
    # downloaded file; what leaves the pipeline is the graph proven equal to it.
    model = joblib.load(args.pipeline)
    read = read_regression_split if data.regression else read_split
    train_x, train_y = read(args.train, data.target, data.categorical)
    test_x, _ = read(args.test, data.target, data.categorical)
    if data.regression == hasattr(model, "classes_"):
        kind = "classifier" if data.regression else "regressor"
        raise StageError(f"{args.pipeline} is a {kind}, data.task is {data.task}: run train again")
    classes = [str(c) for c in getattr(model, "classes_", ())]
    staging = args.out.with_name(args.out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    card = model_card(
        model, args.train, len(test_x), metrics, data, train_params, artifact, data.metric_average
    )
    try:
        served = write_artifact(
            model,
            classes,
            train_x,
            test_x,
            staging,
            name=artifact.name,
            features=[str(c) for c in train_x.columns],
            allow_scikit_learn=export.allow_scikit_learn,
            positive_class=data.positive_class,
            train_labels=None if data.regression else [str(label) for label in train_y],
            profile_bins=export.profile_bins,
            boundary_margin=export.boundary_margin,
            card=card,
        )
    except ConversionError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise StageError(f"export: {exc}") from None
    shutil.rmtree(args.out, ignore_errors=True)
    staging.rename(args.out)
    proof = served["proof"]
    print(
        f"export: {served['format']} {served['model_file']} proven on {proof['test_rows']} test "
        f"and {proof['generated_rows']} generated rows (largest difference "
        f"{proof['largest_difference']:g}) -> {args.out}"
    )


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
