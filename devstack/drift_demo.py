"""``make demo-drift``: drift seen by a real Prometheus, as a table, alert states and a plot.

    python -m devstack.drift_demo --model-dir training/model \\
        --data training/data/train.csv --data training/data/test.csv --out out/demo-drift

Starts the serving stack (devstack.stack: Nginx + uWSGI, 2 workers) on the model and a
Prometheus on loopback (devstack.prometheus) that scrapes it with the chart's own rules, given a
short window (``WINDOW``) and ``for`` (``FOR``) so the demo takes about a minute. It sends
in-distribution traffic (the rows of the data files, every feature the model takes, in a loop)
for a window, reads the PSI of each feature and of the score from the recording rules, then
sends the same rows with the chosen features (``--shift``, default the model's first two)
moved up by ``SHIFT_STD`` of their standard deviation, until those features' ModelInputDrift
alerts fire. It prints the PSI table of both phases and the alert states, and writes
``drift.png`` (live vs reference share of each bin for the most drifted features, read from
Prometheus; Vega-Lite rendered by vl-convert, as the training report does) and ``drift.json``
(the numbers) into ``--out``.

Why the whole data set and not only the test split: the PSI of N rows drawn from the reference
itself is about (bins - 1) / N; the 114 rows of the bundled test split reach 0.24 on one feature
by chance, so the chart's alerts wait for ``drift.minRows`` rows (docs/monitoring.md).

The shared pieces (``Traffic``, ``dataset_rows``, ``shift``, ``psi_by_feature``,
``firing_features``, ``bin_shares``, ``plot``) are used by tests/serving/test_serving_prometheus.py.
Errors (no model, no data, a feature the model lacks, a stack or Prometheus that does not come
up) are one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import vl_convert

from devstack.prometheus import JOB, Prometheus, PrometheusError, render_rules
from devstack.stack import Stack, StackError
from serving.readiness import NotReadyError

WINDOW = "20s"
FOR = "5s"
THRESHOLD = 0.2
#: The short-window rule values of the demo and the integration test.
RULE_VALUES: dict[str, Any] = {
    "interval": "1s",
    "drift": {"window": WINDOW, "for": FOR, "minRows": 200},
}
SHIFT_STD = 1.0
BATCH = 100
PAUSE = 0.1  # seconds between two requests of the traffic loop
PLOTTED = 3  # features in the plot
TABLE_ROWS = 12  # rows of the printed table


class DemoError(RuntimeError):
    """What the demo cannot do, in one line."""


def dataset_rows(paths: Sequence[Path], features: Sequence[str]) -> np.ndarray:
    """The rows of CSV files with a header line, the model's ``features`` in order."""
    rows: list[list[float]] = []
    for path in paths:
        try:
            with path.open(newline="", encoding="utf-8") as handle:
                reader = csv.DictReader(handle)
                missing = [f for f in features if f not in (reader.fieldnames or [])]
                if missing:
                    raise DemoError(f"{path} has no column {missing[0]!r} (the model's feature)")
                rows += [[float(record[f]) for f in features] for record in reader]
        except OSError as error:
            raise DemoError(f"cannot read {path}: {error.strerror}") from None
        except ValueError as error:
            raise DemoError(f"{path}: {error}") from None
    if not rows:
        raise DemoError("the data files hold no row")
    return np.asarray(rows, dtype=np.float64)


def shift(rows: np.ndarray, columns: Sequence[int], by_std: float = SHIFT_STD) -> np.ndarray:
    """``rows`` with each of ``columns`` moved up by ``by_std`` of its standard deviation."""
    moved = rows.copy()
    for column in columns:
        moved[:, column] += by_std * rows[:, column].std()
    return moved


class Traffic(threading.Thread):
    """Sends ``rows`` to ``url``/predict in batches, in a loop, until ``stop()``; ``rows`` may
    be swapped while it runs. ``sent`` counts the rows answered 200; the first failure ends the
    loop and is kept in ``error``."""

    def __init__(self, url: str, features: Sequence[str], rows: np.ndarray) -> None:
        super().__init__(daemon=True)
        self.url = url + "/predict"
        self.features = list(features)
        self.rows = rows
        self.sent = 0
        self.error: str | None = None
        self._stop_event = threading.Event()

    def post(self, batch: np.ndarray) -> None:
        body = {"instances": [dict(zip(self.features, r, strict=True)) for r in batch.tolist()]}
        request = urllib.request.Request(  # noqa: S310 (a loopback URL built here)
            self.url, json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            response.read()
        self.sent += len(batch)

    def run(self) -> None:
        while not self._stop_event.is_set():
            rows = self.rows
            for start in range(0, len(rows), BATCH):
                if self._stop_event.is_set():
                    return
                try:
                    self.post(rows[start : start + BATCH])
                except OSError as error:
                    self.error = f"POST {self.url}: {error}"
                    return
                self._stop_event.wait(PAUSE)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=60)


def psi_by_feature(prometheus: Prometheus) -> dict[str, float]:
    """The recorded PSI of each feature, and of the score under the key ``(score)``."""
    values = prometheus.values("modelops:input_psi:window", "feature")
    score = prometheus.query("modelops:score_psi:window")
    if score:
        values["(score)"] = float(score[0]["value"][1])
    return values


def firing_features(prometheus: Prometheus, state: str = "firing") -> set[str]:
    """Features whose ModelInputDrift alert is in ``state`` (``firing`` or ``pending``)."""
    return {
        alert["labels"].get("feature", "")
        for alert in prometheus.alerts()
        if alert["labels"].get("alertname") == "ModelInputDrift" and alert["state"] == state
    }


def alert_states(prometheus: Prometheus) -> list[tuple[str, str, str]]:
    """(alertname, feature or "", state) of every active alert, sorted."""
    return sorted(
        (a["labels"].get("alertname", ""), a["labels"].get("feature", ""), a["state"])
        for a in prometheus.alerts()
    )


def bin_shares(prometheus: Prometheus, feature: str) -> dict[str, dict[int, float]]:
    """Live (over the window, unfloored) and reference share of each bin of ``feature``."""
    selector = f'job="{JOB}", feature="{feature}"'
    live = prometheus.values(
        f"sum by (bin) (increase(modelops_input_bin_total{{{selector}}}[{WINDOW}]))", "bin"
    )
    total = sum(live.values()) or 1.0
    reference = prometheus.values(
        f"max by (bin) (modelops_input_reference_ratio{{{selector}}})", "bin"
    )
    return {
        "live": {int(b): v / total for b, v in live.items()},
        "reference": {int(b): v for b, v in reference.items()},
    }


def plot(shares: dict[str, dict[str, dict[int, float]]], psi: dict[str, float], path: Path) -> Path:
    """A PNG of grouped bars, one panel per feature: each bin's reference and live share."""
    values = [
        {
            "feature": f"{feature} (PSI {psi.get(feature, float('nan')):.2f})",
            "bin": b,
            "share": share,
            "distribution": kind,
        }
        for feature, by_kind in shares.items()
        for kind, by_bin in by_kind.items()
        for b, share in sorted(by_bin.items())
    ]
    spec = {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "title": "Live vs reference distribution over the window, most drifted features",
        "data": {"values": values},
        "facet": {"column": {"field": "feature", "type": "nominal", "title": None}},
        "spec": {
            "width": 220,
            "height": 160,
            "mark": "bar",
            "encoding": {
                "x": {"field": "bin", "type": "ordinal", "title": "reference bin"},
                "xOffset": {"field": "distribution"},
                "y": {"field": "share", "type": "quantitative", "title": "share of rows"},
                "color": {
                    "field": "distribution",
                    "type": "nominal",
                    "scale": {"domain": ["reference", "live"]},
                },
            },
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(vl_convert.vegalite_to_png(spec, scale=2))
    return path


def wait_for(check: Callable[[], bool], limit: float, traffic: Traffic, what: str) -> None:
    """Poll ``check()`` every second until it is true; DemoError after ``limit`` seconds or
    when the traffic failed."""
    deadline = time.monotonic() + limit
    while not check():
        if traffic.error:
            raise DemoError(traffic.error)
        if time.monotonic() > deadline:
            raise DemoError(f"{what}: not seen within {limit:g} s")
        time.sleep(1)


def table(before: dict[str, float], after: dict[str, float], firing: set[str]) -> str:
    """The PSI of each feature (and the score) before and after the shift, the most drifted
    first; at most ``TABLE_ROWS`` rows, then one line on the rest."""
    ranked = sorted(after, key=lambda f: -after[f])
    names, rest = ranked[:TABLE_ROWS], ranked[TABLE_ROWS:]
    width = max(len(n) for n in names)
    lines = [f"{'feature':<{width}}  in-distribution  shifted  alert"]
    for name in names:
        flag = "FIRING" if name in firing else ("drift" if after[name] >= THRESHOLD else "")
        lines.append(
            f"{name:<{width}}  {before.get(name, float('nan')):>15.3f}  {after[name]:>7.3f}  {flag}"
        )
    if rest:
        top = max(max(before.get(f, 0.0), after[f]) for f in rest)
        lines.append(f"... {len(rest)} more, each below {top:.3f} in both phases")
    return "\n".join(lines)


def run(model_dir: Path, data: Sequence[Path], out: Path, shifted_names: Sequence[str]) -> int:
    metadata_path = model_dir / "metadata.json"
    if not (model_dir / "profile.json").is_file() or not metadata_path.is_file():
        raise DemoError(f"no model with a profile in {model_dir}: run `make train` first")
    features = [f["name"] for f in json.loads(metadata_path.read_text())["features"]]
    names = list(shifted_names) or features[:2]
    unknown = [n for n in names if n not in features]
    if unknown:
        raise DemoError(
            f"--shift {unknown[0]!r} is not a feature of the model: {', '.join(features)}"
        )
    rows = dataset_rows(data, features)
    rng = np.random.default_rng(0)
    rows = rows[rng.permutation(len(rows))]
    moved = shift(rows, [features.index(n) for n in names])
    rules = render_rules(RULE_VALUES)
    with Stack(model_dir) as stack, Prometheus([f"127.0.0.1:{stack.port}"], rules) as prometheus:
        print(
            f"drift: stack on {stack.url}, Prometheus on {prometheus.url}"
            f" (window {WINDOW}, alerts after {FOR})"
        )
        traffic = Traffic(stack.url, features, rows)
        traffic.start()
        try:
            print(
                f"drift: in-distribution traffic, {len(rows)} rows of"
                f" {', '.join(map(str, data))} in a loop"
            )
            time.sleep(float(WINDOW.rstrip("s")) + 3)
            wait_for(
                lambda: len(psi_by_feature(prometheus)) > len(features), 30, traffic, "PSI series"
            )
            before = psi_by_feature(prometheus)
            quiet = alert_states(prometheus)
            print(f"drift: shifting {', '.join(names)} by {SHIFT_STD:g} standard deviation")
            traffic.rows = moved
            wait_for(
                lambda: firing_features(prometheus) >= set(names), 90, traffic, "the drift alerts"
            )
            print(f"drift: alerts firing; one more window ({WINDOW}) of shifted rows only")
            time.sleep(float(WINDOW.rstrip("s")) + 2)
            after = psi_by_feature(prometheus)
            states = alert_states(prometheus)
            drifted = sorted((f for f in after if f != "(score)"), key=lambda f: -after[f])
            shares = {f: bin_shares(prometheus, f) for f in drifted[:PLOTTED]}
        finally:
            traffic.stop()
    firing = {f for name, f, state in states if name == "ModelInputDrift" and state == "firing"}
    print(table(before, after, firing))
    print(
        "drift: alerts before the shift: "
        + (", ".join(f"{a} {f} {s}".strip() for a, f, s in quiet) or "none")
    )
    print("drift: alerts after the shift:")
    for name, feature, state in states:
        print(f"  {name:<18} {feature:<28} {state}")
    png = plot(shares, after, out / "drift.png")
    (out / "drift.json").write_text(
        json.dumps(
            {
                "shifted": names,
                "in_distribution": before,
                "shifted_psi": after,
                "alerts": states,
                "rows_sent": traffic.sent,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"drift: plot of live vs reference for {', '.join(shares)}: {png}")
    print(f"drift: numbers: {out / 'drift.json'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=Path("training/model"))
    parser.add_argument(
        "--data",
        type=Path,
        action="append",
        help="CSV with the model's features (repeatable; default the training splits)",
    )
    parser.add_argument("--shift", action="append", default=[], help="a feature to shift")
    parser.add_argument("--out", type=Path, default=Path("out/demo-drift"))
    args = parser.parse_args(argv)
    data = args.data or [Path("training/data/train.csv"), Path("training/data/test.csv")]
    try:
        return run(args.model_dir, data, args.out, args.shift)
    except (DemoError, PrometheusError, StackError, NotReadyError) as error:
        print(f"error: {str(error).splitlines()[0]}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
