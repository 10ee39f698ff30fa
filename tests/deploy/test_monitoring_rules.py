"""The chart's monitoring objects: the ServiceMonitor, and the PrometheusRule's recording and alert
rules, unit-tested with ``promtool test rules`` on exactly what ``helm template`` renders.

The promtool test files are tests/deploy/monitoring/*.test.yml; each names its rules file
``rules.yaml``, which these tests write next to a copy of it from the rendered PrometheusRule's
``spec``. The files write the model's name (the ``model`` label of every rule) as ``${MODEL}``;
the copy has it replaced by training/params.yaml's artifact.name, the chart's default
``model.name``, so a fork that renames its model passes them unchanged. The expected PSI values
in drift.test.yml are recomputed here in Python from the file's own input series, with the
formula written out independently and with training.drift's (the offline PSI of the retraining
workflow): promtool proves the rules compute those numbers, this proves the numbers are the
population stability index of docs/monitoring.md.

promtool comes from Debian's ``prometheus`` package (``make monitoring-prereqs``; root installs
it): the tests that run it are in the e2e tier.
"""

from __future__ import annotations

import math
import re
import shutil
import string
import subprocess
from collections import defaultdict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from training import drift as offline
from training.params import load_artifact

from .conftest import CHART, Docs, documents, find

MONITORING = Path(__file__).resolve().parent / "monitoring"
TEST_FILES = sorted(MONITORING.glob("*.test.yml"))
ENABLED = (
    "--set",
    "monitoring.serviceMonitor.enabled=true",
    "--set",
    "monitoring.prometheusRule.enabled=true",
)
MONITORING_VALUES = CHART / "ci" / "monitoring-values.yaml"
RULE_KINDS = {"ServiceMonitor", "PrometheusRule"}
FLOOR = 1e-4
WINDOW_MINUTES = 60  # the chart's default drift.window, which drift.test.yml is written for
#: The artifact's name (training/params.yaml): the chart's default model.name (make render).
MODEL = load_artifact().name
#: Another name, never the artifact's: what a fork that renames its model calls it.
RENAMED = f"renamed-{MODEL}"


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool missing: run `make monitoring-prereqs` (Debian's prometheus)")
    return path


def rule_spec(docs: Docs) -> dict[str, Any]:
    spec: dict[str, Any] = find(docs, "PrometheusRule")["spec"]
    return spec


def rules_by_name(spec: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        rule.get("alert") or rule["record"]: rule
        for group in spec["groups"]
        for rule in group["rules"]
    }


def with_model(text: str, model: str) -> str:
    """A promtool test file's TEXT with its ``${MODEL}`` placeholders replaced by MODEL; any other
    ``$`` raises (KeyError, ValueError) rather than reach promtool unreplaced."""
    return string.Template(text).substitute(MODEL=model)


def promtool_test(
    spec: Mapping[str, Any], test_file: Path, workdir: Path, model: str = MODEL
) -> subprocess.CompletedProcess[str]:
    """``promtool test rules`` on a copy of ``test_file``, its ``${MODEL}`` replaced by MODEL
    (the artifact's name unless told), beside ``spec`` written as rules.yaml."""
    workdir.mkdir(exist_ok=True)
    (workdir / "rules.yaml").write_text(yaml.safe_dump(dict(spec), sort_keys=False))
    (workdir / test_file.name).write_text(with_model(test_file.read_text(), model))
    return subprocess.run(
        [promtool(), "test", "rules", test_file.name],
        cwd=workdir,
        capture_output=True,
        text=True,
        check=False,
    )


# --- the chart --------------------------------------------------------------------------------


def test_the_chart_renders_no_monitoring_object_by_default(default_docs: Docs) -> None:
    assert not [d["kind"] for d in default_docs if d["kind"] in RULE_KINDS]


def test_a_ci_scenario_renders_the_servicemonitor_and_the_prometheusrule(
    template: Callable[..., str],
) -> None:
    docs = documents(template("-f", str(MONITORING_VALUES)))
    assert {d["kind"] for d in docs} >= RULE_KINDS


def test_the_servicemonitor_scrapes_metrics_on_the_http_port_of_the_services_pods(
    template: Callable[..., str],
) -> None:
    docs = documents(template(*ENABLED))
    monitor = find(docs, "ServiceMonitor")
    service = find(docs, "Service")
    assert monitor["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    assert {k: service["metadata"]["labels"][k] for k in service["spec"]["selector"]} == (
        monitor["spec"]["selector"]["matchLabels"]
    )
    assert [p["name"] for p in service["spec"]["ports"]] == ["http"]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint == {
        "port": "http",
        "path": "/metrics",
        "interval": "30s",
        "scrapeTimeout": "10s",
    }


def test_it_records_the_psi_per_feature_and_for_the_score_under_the_contracts_names(
    template: Callable[..., str],
) -> None:
    rules = rules_by_name(rule_spec(documents(template(*ENABLED))))
    assert "sum by (namespace, job, feature)" in rules["modelops:input_psi:window"]["expr"]
    assert "sum by (namespace, job)" in rules["modelops:score_psi:window"]["expr"]
    assert set(rules) >= {
        "ModelInputDrift",
        "ModelScoreDrift",
        "ModelHighErrorRate",
        "ModelHighLatency",
        "ModelNotReady",
    }


def test_every_rule_carries_the_model_and_keeps_the_namespace(
    template: Callable[..., str],
) -> None:
    rules = rules_by_name(rule_spec(documents(template(*ENABLED, "--set", "model.name=churn"))))
    for name, rule in rules.items():
        assert rule["labels"]["model"] == "churn", name
        for grouping in re.findall(r"\b(?:by|on) \(([^)]*)\)", rule["expr"]):
            assert "namespace" in grouping.split(", "), (name, grouping)
        if "alert" in rule:
            assert "churn" in rule["annotations"]["summary"], name
            assert "{{ $labels.namespace }}" in rule["annotations"]["summary"], name
    assert "{{ $labels.feature }}" in rules["ModelInputDrift"]["annotations"]["summary"]


def test_window_thresholds_durations_and_the_selector_come_from_values(
    template: Callable[..., str], tmp_path: Path
) -> None:
    rules_values = {
        "selector": 'job="m", namespace="prod"', "interval": "2s",
        "drift": {"window": "30s", "threshold": 0.3, "minRows": 7, "for": "20s"},
        "errorRate": {"threshold": 0.1}, "latency": {"thresholdSeconds": 0.25},
        "notReady": {"for": "1m"},
    }  # fmt: skip
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"monitoring": {"prometheusRule": rules_values}}))
    spec = rule_spec(documents(template(*ENABLED, "-f", str(values))))
    rules = rules_by_name(spec)
    assert {g["interval"] for g in spec["groups"]} == {"2s"}
    assert (
        'increase(modelops_input_bin_total{job="m", namespace="prod"}[30s])'
        in rules["modelops:input_bin_share:window"]["expr"]
    )
    assert re.search(r">= 0\.3\s.*>= 7$", rules["ModelInputDrift"]["expr"], re.DOTALL)
    assert rules["ModelInputDrift"]["for"] == "20s"
    assert rules["ModelHighErrorRate"]["expr"].endswith("> 0.1")
    assert rules["ModelHighLatency"]["expr"].endswith("> 0.25")
    assert rules["ModelNotReady"]["for"] == "1m"
    assert 'job="model"' not in "".join(r["expr"] for r in rules.values())
    # recorded series are read through the selector too: one environment's rules, its own series
    psi = rules["modelops:input_psi:window"]["expr"]
    assert f'modelops:input_bin_share:window{{model="{MODEL}", job="m", namespace="prod"}}' in psi
    assert (
        f'modelops:input_psi:window{{model="{MODEL}", job="m", namespace="prod"}}'
        in rules["ModelInputDrift"]["expr"]
    )


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("monitoring.prometheusRule.drift.window=an hour", "drift/window"),
        ("monitoring.prometheusRule.drift.threshold=0", "drift/threshold"),
        ('monitoring.prometheusRule.selector={job="x"}', "selector"),
        ('monitoring.prometheusRule.selector=service="x"', "selector"),
        ("monitoring.serviceMonitor.interval=30", "interval"),
    ],
)
def test_it_refuses_monitoring_values_the_schema_forbids(
    helm: str, setting: str, complaint: str
) -> None:
    flag = "--set" if "threshold" in setting else "--set-string"
    result = subprocess.run(
        [helm, "template", "model", str(CHART), flag, setting],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert complaint in result.stderr


# --- the PSI arithmetic, recomputed -----------------------------------------------------------

SERIES = re.compile(r"^(?P<name>[a-zA-Z_:]+)\{(?P<labels>[^}]*)\}$")
SEGMENT = re.compile(
    r"^(?P<start>-?[0-9.]+)(?:(?P<step>[+-][0-9.]+)x(?P<n>[0-9]+)|x(?P<repeat>[0-9]+))?$"
)


def expand(values: str) -> list[float]:
    """promtool's series notation (`a+bxn`, `axn`, plain values), one value per interval."""
    out: list[float] = []
    for segment in values.split():
        match = SEGMENT.match(segment)
        assert match is not None, f"notation this test does not read: {segment!r}"
        start = float(match["start"])
        if match["step"]:
            out += [start + float(match["step"]) * i for i in range(int(match["n"]) + 1)]
        else:
            out += [start] * (int(match["repeat"] or 0) + 1)
    return out


def psi_by_hand(counts: Mapping[str, float], ref: Mapping[str, float]) -> float:
    """The population stability index of docs/monitoring.md, written out again."""
    total = sum(counts.values())
    value = 0.0
    for bin_, ratio in ref.items():
        live = max(counts.get(bin_, 0.0) / total, FLOOR)
        expected = max(ratio, FLOOR)
        value += (live - expected) * math.log(live / expected)
    return value


def psi_from_series(test: Mapping[str, Any], minute: int) -> dict[str, dict[str, float]]:
    """PSI per feature (and "score") over the window ending at ``minute``, from the test's
    series, by two computations: {"hand": ..., "training.drift": ...}. Pods are summed."""
    increases: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    refs: dict[str, dict[str, float]] = defaultdict(dict)
    for item in test["input_series"]:
        match = SERIES.match(item["series"])
        assert match is not None, item["series"]
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
        values = expand(item["values"])
        key = labels.get("feature", "score")
        if match["name"] in {"modelops_input_bin_total", "modelops_score_bin_total"}:
            increases[key][labels["bin"]] += values[minute] - values[minute - WINDOW_MINUTES]
        elif match["name"] in {"modelops_input_reference_ratio", "modelops_score_reference_ratio"}:
            refs[key][labels["bin"]] = values[minute]
    result: dict[str, dict[str, float]] = {"hand": {}, "training.drift": {}}
    for key, ref in refs.items():
        counts = increases[key]
        if sum(counts.values()) <= 0:
            continue
        bins = sorted(ref, key=int)
        result["hand"][key] = psi_by_hand(counts, ref)
        total = sum(counts.values())
        result["training.drift"][key] = offline.psi(
            [counts.get(b, 0.0) / total for b in bins], [ref[b] for b in bins]
        )
    return result


def minutes(duration: str) -> int:
    match = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?", duration)
    assert match is not None and duration, duration
    return int(match[1] or 0) * 60 + int(match[2] or 0)


def test_the_expected_psi_of_the_drift_tests_is_the_psi_of_their_series_computed_in_python() -> (
    None
):
    document = yaml.safe_load((MONITORING / "drift.test.yml").read_text())
    checked = 0
    for test in document["tests"]:
        for case in test.get("promql_expr_test", []):
            rounded = re.fullmatch(
                r"round\(modelops:(input|score)_psi:window, 0\.001\)", case["expr"]
            )
            if rounded is None:
                continue
            computed = psi_from_series(test, minutes(case["eval_time"]))
            for sample in case["exp_samples"]:
                feature = re.search(r'feature="([^"]+)"', sample["labels"])
                key = feature[1] if feature else "score"
                for how, values in computed.items():
                    assert round(values[key], 3) == pytest.approx(sample["value"], abs=1e-9), (
                        how,
                        key,
                        case["eval_time"],
                    )
                checked += 1
        for case in test.get("alert_rule_test", []):
            for alert in case.get("exp_alerts", []):
                shown = re.search(
                    r"over the last 1h is ([0-9.]+)", alert["exp_annotations"]["description"]
                )
                assert shown is not None
                key = alert["exp_labels"].get("feature", "score")
                value = psi_from_series(test, minutes(case["eval_time"]))["hand"][key]
                assert f"{value:.3f}" == shown[1]
                assert f"{value:.4f}" == alert["exp_annotations"]["psi"]
                checked += 1
    assert checked >= 11


def test_the_python_recomputation_tells_a_wrong_psi_from_a_right_one() -> None:
    assert psi_by_hand({"0": 50, "1": 50}, {"0": 0.7, "1": 0.3}) == pytest.approx(0.16946, abs=1e-5)
    assert psi_by_hand({"0": 0, "1": 10}, {"0": 0.5, "1": 0.5}) == pytest.approx(
        (1e-4 - 0.5) * math.log(1e-4 / 0.5) + 0.5 * math.log(2)
    )
    assert psi_by_hand({"0": 5, "1": 5}, {"0": 0.5, "1": 0.5}) == 0


# --- promtool ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped_rules(template: Callable[..., str]) -> dict[str, Any]:
    """The rules as the chart ships them (default values, turned on)."""
    return rule_spec(documents(template(*ENABLED)))


@pytest.mark.e2e
def test_promtool_accepts_the_rendered_rules(shipped_rules: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(shipped_rules, sort_keys=False))
    result = subprocess.run(
        [promtool(), "check", "rules", "rules.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 10 rules found" in result.stdout


@pytest.mark.e2e
@pytest.mark.parametrize("test_file", TEST_FILES, ids=lambda p: p.name)
def test_the_shipped_rules_pass_the_promtool_unit_tests(
    shipped_rules: dict[str, Any], test_file: Path, tmp_path: Path
) -> None:
    result = promtool_test(shipped_rules, test_file, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.e2e
def test_the_promtool_tests_pass_a_renamed_model_and_fail_one_spelling_the_old_name(
    template: Callable[..., str], tmp_path: Path
) -> None:
    """A fork renames its model: the chart's model.name changes, and the test files, which name
    the model only as ${MODEL}, pass against its rules unchanged. A file that spelled the old name
    (what they held before the placeholder) fails against the same rules."""
    spec = rule_spec(documents(template(*ENABLED, "--set", f"model.name={RENAMED}")))
    for test_file in TEST_FILES:
        assert "${MODEL}" in test_file.read_text(), test_file.name
        passed = promtool_test(spec, test_file, tmp_path / test_file.stem, model=RENAMED)
        assert passed.returncode == 0, passed.stdout + passed.stderr
    spelled = promtool_test(spec, MONITORING / "serving.test.yml", tmp_path / "old", model=MODEL)
    assert spelled.returncode != 0
    assert f'model="{MODEL}"' in spelled.stdout + spelled.stderr


def test_a_promtool_test_file_gets_the_model_and_a_stray_dollar_is_refused() -> None:
    assert with_model('{model="${MODEL}"} $$', RENAMED) == f'{{model="{RENAMED}"}} $'
    with pytest.raises(KeyError, match="NAME"):
        with_model("model: ${NAME}", RENAMED)
    with pytest.raises(ValueError, match="Invalid placeholder"):
        with_model("costs $5", RENAMED)


@pytest.mark.e2e
def test_promtool_fails_the_drift_tests_when_the_rules_drift_threshold_changes(
    template: Callable[..., str], tmp_path: Path
) -> None:
    spec = rule_spec(
        documents(
            template(*ENABLED, "--set-json", "monitoring.prometheusRule.drift.threshold=0.25")
        )
    )
    result = promtool_test(spec, MONITORING / "drift.test.yml", tmp_path)
    assert result.returncode != 0
    assert "alertname: ModelInputDrift, time: 2h10m" in result.stdout + result.stderr


def test_the_watched_endpoints_are_the_prediction_routes_of_the_server() -> None:
    from serving.routes import ROUTES

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    predictions = {rule for route in ROUTES if route.method == "POST" for rule in route.rules}
    assert set(values["monitoring"]["prometheusRule"]["endpoints"]) == predictions
