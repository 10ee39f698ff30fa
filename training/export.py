"""The served files of a model artifact: the portable graph (or, only when allowed, the pickle)
and the verification sample, with the model card keys that describe them.

Caller: the export stage (``python -m training export``) and the serving tests' model builder
(tests/serving/serving_testkit.py), so a test model is written by the same code as a trained one.
:func:`served_files` returns the card keys ``format``, ``model_file``, ``model_sha256``,
``verification`` and ``proof`` (modelcard's contract); the rest of the card is the caller's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import joblib  # type: ignore[import-untyped]  # no stubs; not in pyproject overrides

import modelcard
from training.portable import (
    ConversionError,
    Proof,
    generated_rows,
    prove,
    sample,
    sklearn_labels,
    sklearn_proba,
    to_onnx,
)


def served_files(
    model: Any,
    classes: list[str],
    train: Any,
    test: Any,
    out_dir: Path,
    *,
    allow_scikit_learn: bool,
    tolerance: float = modelcard.PROBABILITY_TOLERANCE,
) -> dict[str, Any]:
    """Write the model file and verification.json into ``out_dir``; return their card keys.

    ``train`` and ``test`` are float64 matrices in feature order: the generated rows follow the
    training data, the proof runs on both. A model the export cannot convert raises
    ConversionError unless ``allow_scikit_learn``: then the pickle is what the server runs, and
    the card says so (``format: scikit-learn``).
    """
    generated = generated_rows(train)
    try:
        graph = to_onnx(model, train.shape[1])
        proof = prove(model, graph, classes, test, generated, tolerance)
        fmt, payload = "onnx", graph
    except ConversionError as exc:
        if not allow_scikit_learn:
            raise ConversionError(
                f"{exc} (set export.allow_scikit_learn: true in params.yaml to serve the "
                "scikit-learn pickle instead)"
            ) from None
        fmt, payload = "scikit-learn", b""
        proof = Proof(0, 0, 0.0, tolerance)
    out_dir.mkdir(parents=True, exist_ok=True)
    model_file = out_dir / modelcard.FORMATS[fmt]
    if fmt == "onnx":
        model_file.write_bytes(payload)
    else:
        joblib.dump(model, model_file)
    rows = sample(test, generated)
    verification = {
        "rows": rows.tolist(),
        "probabilities": sklearn_proba(model, rows).tolist(),
        "labels": sklearn_labels(model, rows, classes),
        "tolerance": tolerance,
    }
    sample_path = out_dir / modelcard.VERIFICATION_FILE
    sample_path.write_text(json.dumps(verification) + "\n", encoding="utf-8")
    return {
        "format": fmt,
        "model_file": model_file.name,
        "model_sha256": modelcard.sha256_file(model_file),
        "verification": {
            "file": sample_path.name,
            "sha256": modelcard.sha256_file(sample_path),
            "rows": len(rows),
        },
        "proof": proof.as_dict(),
    }
