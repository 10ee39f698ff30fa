"""The serving part of ``make demo``: start the stack, send one sample prediction, print it, stop.

python -m devstack.demo --model-dir out/demo/model --env-file out/demo/model.env
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.request
from pathlib import Path
from typing import Any

from devstack.stack import Stack, StackError
from serving.provenance import FIELDS, HEADER
from serving.readiness import NotReadyError


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=value`` lines (blank lines and ``#`` comments ignored)."""
    env = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            env[key.strip()] = value.strip().strip('"')
    return env


def sample_row(features: list[str]) -> dict[str, float]:
    """The first row of scikit-learn's breast-cancer data, keyed by the model's feature names."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    names = [re.sub(r"[^a-z0-9]+", "_", n.lower()).strip("_") for n in data.feature_names]
    values = dict(zip(names, data.data[0].tolist(), strict=True))
    missing = [f for f in features if f not in values]
    if missing:
        raise SystemExit(f"the model wants features the sample lacks: {', '.join(missing)}")
    return {name: values[name] for name in features}


def post(url: str, payload: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    request = urllib.request.Request(  # noqa: S310 (loopback URL built here)
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return json.loads(response.read()), dict(response.headers)


def get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (loopback URL)
        answer: dict[str, Any] = json.loads(response.read())
        return answer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--env-file", type=Path, help="MODELOPS_* provenance (KEY=value lines)")
    args = parser.parse_args(argv)
    metadata_path = args.model_dir / "metadata.json"
    if not metadata_path.is_file():
        print(f"no model in {args.model_dir}: run `make demo-training` first", file=sys.stderr)
        return 1
    env = read_env_file(args.env_file) if args.env_file and args.env_file.is_file() else {}
    env.pop("MODELOPS_MODEL_DIR", None)  # --model-dir decides
    features = [f["name"] for f in json.loads(metadata_path.read_text())["features"]]
    row = sample_row(features)
    try:
        with Stack(args.model_dir, env=env) as stack:
            print(f"serving: Nginx -> uWSGI -> the app on {stack.url} (model {args.model_dir})")
            body, headers = post(stack.url + "/predict", {"instances": [row]})
            metadata = get(f"{stack.url}/v2/models/{body['model_name']}")
    except (StackError, NotReadyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    probabilities = dict(zip(body["classes"], body["probabilities"][0], strict=True))
    print(f"serving: POST /predict with one row of {len(row)} features")
    print(f"serving: label {body['labels'][0]}, probabilities {json.dumps(probabilities)}")
    print(f"serving: X-Request-ID {headers.get('X-Request-ID')}")
    print(f"serving: {HEADER} {headers.get(HEADER)}")
    print(f"serving: provenance (GET /v2/models/{body['model_name']}, parameters):")
    for key, value in metadata["parameters"].items():
        if key in FIELDS or key == "provenance_id":
            print(f"  {key}={value}")
    print("serving: stack stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
