"""The drift signals (serving/monitoring.py, docs/monitoring.md "Signals"): every series from
load, a known row counted in exactly its bins through both protocols and both records paths,
out-of-range and near-boundary rows, monitoring off, counts kept per process and summed across
processes (exited ones included), and through the real stack with two uWSGI workers."""

from __future__ import annotations

import bisect
import multiprocessing
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from conftest import start_stack
from prometheus_client.parser import text_string_to_metric_families
from serving_testkit import MODEL_NAME, TinyModel
from werkzeug.test import Client

import modelcard
from devstack.stack import Stack
from serving.app import ConfigError, create_app
from serving.metrics import reset_multiproc_dir
from serving.model import Model
from serving.monitoring import Signals
from serving.pipeline import Pipeline

INFER = f"/v2/models/{MODEL_NAME}/infer"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    """Every sample of an exposition, by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def delta(before: Samples, after: Samples, prefix: str) -> Samples:
    """The samples of metrics named ``prefix...`` that changed, with how much."""
    return {
        key: after[key] - before.get(key, 0.0)
        for key in after
        if key[0].startswith(prefix) and after[key] != before.get(key, 0.0)
    }


def profile_of(tiny_model: TinyModel) -> modelcard.Profile:
    card = modelcard.read_card(tiny_model.directory)
    return modelcard.read_profile(tiny_model.directory, card)


def expected_bins(profile: modelcard.Profile, row: np.ndarray) -> Samples:
    return {
        (
            "modelops_input_bin_total",
            (("bin", str(bisect.bisect_right(f.bins.edges, v))), ("feature", f.name)),
        ): 1.0
        for f, v in zip(profile.features, row.tolist(), strict=True)
    }


@pytest.fixture
def fresh_app(tiny_model: TinyModel) -> Pipeline:
    """An app of its own: counters that start at 0."""
    return create_app({"MODEL_DIR": str(tiny_model.directory)})


def metrics_of(client: Client) -> Samples:
    return samples(client.get("/metrics").get_data(as_text=True))


def test_every_series_exists_at_load_with_the_profiles_ratios(
    fresh_app: Pipeline, tiny_model: TinyModel
) -> None:
    found = metrics_of(fresh_app.test_client())
    profile = profile_of(tiny_model)
    for feature in profile.features:
        for b, ratio in enumerate(feature.bins.ratios):
            labels = (("bin", str(b)), ("feature", feature.name))
            assert found[("modelops_input_bin_total", labels)] == 0.0
            assert found[("modelops_input_reference_ratio", labels)] == ratio
        for side in ("below", "above"):
            key = ("modelops_input_out_of_range_total", (("feature", feature.name), ("side", side)))
            assert found[key] == 0.0
    for b, ratio in enumerate(profile.score.ratios):
        assert found[("modelops_score_bin_total", (("bin", str(b)),))] == 0.0
        assert found[("modelops_score_reference_ratio", (("bin", str(b)),))] == ratio
    for name, share in profile.classes:
        assert found[("modelops_predicted_class_total", (("class", name),))] == 0.0
        assert found[("modelops_class_reference_ratio", (("class", name),))] == share
    assert found[("modelops_near_boundary_total", ())] == 0.0
    assert found[("modelops_scored_rows_total", ())] == 0.0
    bins = [k for k in found if k[0] == "modelops_input_bin_total"]
    assert len(bins) == sum(len(f.bins.ratios) for f in profile.features) == 300


def confident_row(tiny_model: TinyModel) -> np.ndarray:
    """The test row the model is surest of (far from the decision boundary)."""
    proba = tiny_model.pipeline.predict_proba(tiny_model.x_test)
    row: np.ndarray = tiny_model.x_test[int(np.abs(proba[:, 0] - proba[:, 1]).argmax())]
    return row


def score_bin(profile: modelcard.Profile, proba: np.ndarray, classes: list[str]) -> str:
    column = classes.index(profile.score_class) if profile.score_class else int(proba.argmax())
    return str(bisect.bisect_right(profile.score.edges, proba[column]))


def send(client: Client, protocol: str, rows: np.ndarray, features: list[str]) -> None:
    if protocol == "records":
        body = {"instances": [dict(zip(features, r.tolist(), strict=True)) for r in rows]}
        response = client.post("/predict", json=body)
    else:
        tensor = {"name": "x", "shape": list(rows.shape), "datatype": "FP64"}
        response = client.post(INFER, json={"inputs": [{**tensor, "data": rows.ravel().tolist()}]})
    assert response.status_code == 200, response.get_data(as_text=True)


@pytest.mark.parametrize("protocol", ["records", "v2"])
def test_a_known_row_increments_exactly_the_bins_it_falls_in(
    fresh_app: Pipeline, tiny_model: TinyModel, protocol: str
) -> None:
    """One row: records takes its one-row path, v2 the matrix path; both count the same."""
    client = fresh_app.test_client()
    row = confident_row(tiny_model)
    profile = profile_of(tiny_model)
    proba = tiny_model.pipeline.predict_proba(row[None])[0]
    classes = tiny_model.metadata["classes"]
    before = metrics_of(client)
    send(client, protocol, row[None], tiny_model.features)
    after = metrics_of(client)
    assert delta(before, after, "modelops_input_bin") == expected_bins(profile, row)
    assert delta(before, after, "modelops_score_bin") == {
        ("modelops_score_bin_total", (("bin", score_bin(profile, proba, classes)),)): 1.0
    }
    predicted = classes[int(proba.argmax())]
    assert delta(before, after, "modelops_predicted_class") == {
        ("modelops_predicted_class_total", (("class", predicted),)): 1.0
    }
    assert delta(before, after, "modelops_scored_rows") == {("modelops_scored_rows_total", ()): 1}
    name = "modelops_input_out_of_range_total"
    assert delta(before, after, name) == {
        (name, (("feature", f.name), ("side", "below" if v < f.low else "above"))): 1.0
        for f, v in zip(profile.features, row.tolist(), strict=True)
        if not f.low <= v <= f.high
    }
    assert delta(before, after, "modelops_near_boundary") == {}  # a confident row
    assert delta(before, after, "modelops_input_reference_ratio") == {}


@pytest.mark.parametrize("protocol", ["records", "v2"])
def test_a_batch_counts_each_row_once_as_rows_sent_one_by_one_do(
    tiny_model: TinyModel, protocol: str
) -> None:
    rows = tiny_model.x_test[:40]
    one_by_one = create_app({"MODEL_DIR": str(tiny_model.directory)}).test_client()
    batched = create_app({"MODEL_DIR": str(tiny_model.directory)}).test_client()
    for row in rows:
        send(one_by_one, protocol, row[None], tiny_model.features)
    send(batched, protocol, rows, tiny_model.features)
    counted, expected = metrics_of(batched), metrics_of(one_by_one)
    signals = ("modelops_input", "modelops_score", "modelops_predicted", "modelops_near")
    for key, value in expected.items():
        if key[0].startswith(signals):
            assert counted[key] == value, key
    assert counted[("modelops_scored_rows_total", ())] == 40
    total = sum(v for k, v in counted.items() if k[0] == "modelops_input_bin_total")
    assert total == 40 * len(tiny_model.features)


def test_the_training_rows_reproduce_the_profiles_ratios(tiny_model: TinyModel) -> None:
    """The server bins as training did: the train split, counted live, has the profile's shares."""
    model = Model(tiny_model.directory)
    model.load()
    assert model.profile is not None
    signals = Signals(model.profile, model.classes, tag="t", directory=None)
    x = np.ascontiguousarray(tiny_model.x_train, dtype=np.float64)
    signals.rows(x, model.predict_proba(x))
    total = signals.totals()
    by_feature = signals.layout.feature_bins(total)
    for index, feature in enumerate(model.profile.features):
        counts = by_feature[index, : len(feature.bins.ratios)]
        shares = [float(f"{c / len(x):.6g}") for c in counts.tolist()]
        assert shares == list(feature.bins.ratios), feature.name
    layout = signals.layout
    assert total[layout.below : layout.score].sum() == 0  # the range holds every training value
    predicted = total[layout.classes : layout.near] / len(x)
    assert [float(f"{p:.6g}") for p in predicted] == [s for _, s in model.profile.classes]


def test_values_outside_the_training_range_are_counted_by_side(
    fresh_app: Pipeline, tiny_model: TinyModel
) -> None:
    client = fresh_app.test_client()
    profile = profile_of(tiny_model)
    row = tiny_model.x_test[0].copy()
    row[0] = profile.features[0].low - 1
    row[2] = profile.features[2].high * 10
    row[5] = profile.features[5].high  # the maximum itself is inside
    before = metrics_of(client)
    send(client, "records", row[None], tiny_model.features)
    send(client, "v2", row[None], tiny_model.features)
    after = metrics_of(client)
    name = "modelops_input_out_of_range_total"
    first, third = profile.features[0].name, profile.features[2].name
    assert delta(before, after, name) == {
        (name, (("feature", first), ("side", "below"))): 2.0,
        (name, (("feature", third), ("side", "above"))): 2.0,
    }
    last = str(len(profile.features[2].bins.edges))
    assert (
        delta(before, after, "modelops_input_bin")[
            ("modelops_input_bin_total", (("bin", last), ("feature", third)))
        ]
        == 2.0
    )
    assert (
        delta(before, after, "modelops_input_bin")[
            ("modelops_input_bin_total", (("bin", "0"), ("feature", first)))
        ]
        == 2.0
    )


def boundary_row(tiny_model: TinyModel) -> np.ndarray:
    """A row on the segment between a benign and a malignant test row where the model's two
    probabilities are within 0.02 of each other (found by bisection)."""
    proba = tiny_model.pipeline.predict_proba(tiny_model.x_test)
    a = tiny_model.x_test[int(proba[:, 0].argmax())]
    b = tiny_model.x_test[int(proba[:, 1].argmax())]
    low, high = 0.0, 1.0
    for _ in range(60):
        middle = (low + high) / 2
        row = a + middle * (b - a)
        p = tiny_model.pipeline.predict_proba(row[None])[0]
        if abs(p[0] - p[1]) < 0.02:
            return row
        low, high = (middle, high) if p[0] > p[1] else (low, middle)
    raise AssertionError("no row near the boundary")


@pytest.mark.parametrize("protocol", ["records", "v2"])
def test_rows_near_the_decision_boundary_are_counted(
    fresh_app: Pipeline, tiny_model: TinyModel, protocol: str
) -> None:
    client = fresh_app.test_client()
    row = boundary_row(tiny_model)
    before = metrics_of(client)
    send(client, protocol, row[None], tiny_model.features)
    send(client, protocol, confident_row(tiny_model)[None], tiny_model.features)  # not counted
    after = metrics_of(client)
    assert delta(before, after, "modelops_near_boundary") == {
        ("modelops_near_boundary_total", ()): 1.0
    }


def test_near_boundary_compares_the_two_highest_of_three_classes() -> None:
    profile = modelcard.Profile(
        bins=10,
        features=(
            modelcard.FeatureProfile("x", modelcard.Distribution((0.0,), (0.5, 0.5)), -1, 1),
        ),
        classes=(("a", 0.3), ("b", 0.3), ("c", 0.4)),
        score_kind="top_probability",
        score_class=None,
        score=modelcard.Distribution((0.5,), (0.5, 0.5)),
        boundary_margin=0.1,
        rows=10,
    )
    signals = Signals(profile, ["a", "b", "c"], tag="t", directory=None)
    rows = np.zeros((3, 1))
    proba = np.array([[0.45, 0.1, 0.45], [0.2, 0.5, 0.3], [0.42, 0.5, 0.08]])
    signals.rows(rows, proba)
    for values, p in zip(rows.tolist(), proba.tolist(), strict=True):
        signals.row(values, p, max(range(3), key=p.__getitem__))
    layout, total = signals.layout, signals.totals()
    assert total[layout.near] == 2 * 2  # rows 0 and 2, by both paths
    assert total[layout.score : layout.score + 2].tolist() == [2, 4]  # top 0.45 | 0.5, 0.5
    assert total[layout.classes : layout.near].tolist() == [2, 4, 0]


def test_monitoring_off_counts_classes_and_rows_only(tiny_model: TinyModel) -> None:
    client = create_app({"MODEL_DIR": str(tiny_model.directory), "MONITORING": "off"}).test_client()
    send(client, "records", tiny_model.x_test[:1], tiny_model.features)
    send(client, "v2", tiny_model.x_test[:3], tiny_model.features)
    found = metrics_of(client)
    assert found[("modelops_scored_rows_total", ())] == 4
    assert sum(v for k, v in found.items() if k[0] == "modelops_predicted_class_total") == 4
    assert sum(v for k, v in found.items() if k[0] == "modelops_predictions_total") == 4
    assert not [k for k in found if k[0].startswith(("modelops_input", "modelops_score_"))]
    assert ("modelops_near_boundary_total", ()) not in found


def test_a_monitoring_setting_other_than_on_or_off_is_refused_naming_it(
    tiny_model: TinyModel,
) -> None:
    with pytest.raises(ConfigError, match="MODELOPS_MONITORING must be on or off, got 'yes'"):
        create_app({"MODEL_DIR": str(tiny_model.directory), "MONITORING": "yes"})


# --- across processes ----------------------------------------------------------------------


def _count_in_child(signals: Signals, rows: np.ndarray, proba: np.ndarray) -> None:
    signals.rows(rows, proba)


def test_each_process_counts_in_its_own_file_and_a_scrape_adds_them_all(
    tiny_model: TinyModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A forked child counts into a file of its own (not its parent's), and its counts stay in
    the sum after it exits (a recycled uWSGI worker does not reset the counters)."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    model = Model(tiny_model.directory)
    model.load()
    assert model.profile is not None
    signals = Signals(model.profile, model.classes, tag="abc", directory=str(tmp_path))
    x = np.ascontiguousarray(tiny_model.x_test[:10])
    proba = model.predict_proba(x)
    signals.rows(x[:4], proba[:4])  # the parent's file exists before the fork
    context = multiprocessing.get_context("fork")
    for part in (slice(4, 7), slice(7, 10)):
        child = context.Process(target=_count_in_child, args=(signals, x[part], proba[part]))
        child.start()
        child.join()
        assert child.exitcode == 0
    files = sorted(p.name for p in tmp_path.glob("signals_abc_*.counts"))
    assert len(files) == 3
    assert signals.totals()[signals.layout.rows] == 10
    alone = Signals(model.profile, model.classes, tag="t", directory=None)
    alone.rows(x, proba)
    assert signals.totals().tolist() == alone.totals().tolist()
    other = Signals(model.profile, model.classes, tag="other", directory=str(tmp_path))
    assert other.totals().sum() == 0  # another profile's files are not added
    reset_multiproc_dir()
    assert not list(tmp_path.glob("*.counts"))


# --- through the real stack ----------------------------------------------------------------


def _pids(served_by: Stack, skip: int) -> set[int]:
    import json

    pids = set()
    for line in served_by.uwsgi_log.read_bytes()[skip:].decode().splitlines():
        if line.startswith('{"time"') and '"event":"request"' in line:
            pids.add(json.loads(line)["pid"])
    return pids


@pytest.mark.e2e
def test_rows_spread_over_two_uwsgi_workers_add_up_in_metrics(
    stack: Stack, tiny_model: TinyModel
) -> None:
    profile = profile_of(tiny_model)
    row = tiny_model.x_test[7]
    record = {"instances": [tiny_model.record(7)]}
    tensor = {"name": "x", "shape": [1, row.size], "datatype": "FP64", "data": row.tolist()}
    infer = {"inputs": [tensor]}
    before = samples(requests.get(f"{stack.url}/metrics", timeout=5).text)
    log_size = stack.uwsgi_log.stat().st_size

    def post(index: int) -> int:
        with requests.Session() as session:
            if index % 2:
                return session.post(f"{stack.url}{INFER}", json=infer, timeout=10).status_code
            return session.post(f"{stack.url}/predict", json=record, timeout=10).status_code

    sent = 0
    with ThreadPoolExecutor(8) as pool:
        while sent < 2000 and len(_pids(stack, log_size)) < 2:
            assert list(pool.map(post, range(80))) == [200] * 80
            sent += 80
    assert len(_pids(stack, log_size)) >= 2
    after = samples(requests.get(f"{stack.url}/metrics", timeout=5).text)
    expected: dict[Any, float] = {k: sent for k in expected_bins(profile, row)}
    assert delta(before, after, "modelops_input_bin") == expected
    assert delta(before, after, "modelops_scored_rows") == {
        ("modelops_scored_rows_total", ()): sent
    }
    assert sum(delta(before, after, "modelops_score_bin").values()) == sent
    assert sum(delta(before, after, "modelops_predicted_class").values()) == sent


@pytest.mark.parametrize("protocol", ["records", "v2"])
def test_a_value_on_an_edge_counts_in_the_bin_above_it(
    fresh_app: Pipeline, tiny_model: TinyModel, protocol: str
) -> None:
    client = fresh_app.test_client()
    profile = profile_of(tiny_model)
    row = tiny_model.x_test[0].copy()
    for index, feature in enumerate(profile.features):
        row[index] = feature.bins.edges[index % len(feature.bins.edges)]
    before = metrics_of(client)
    send(client, protocol, row[None], tiny_model.features)
    counted = delta(before, metrics_of(client), "modelops_input_bin")
    assert counted == {
        (
            "modelops_input_bin_total",
            (("bin", str(index % len(f.bins.edges) + 1)), ("feature", f.name)),
        ): 1.0
        for index, f in enumerate(profile.features)
    }


@pytest.mark.e2e
def test_the_stack_started_with_monitoring_off_exposes_no_drift_signals(
    tiny_model: TinyModel,
) -> None:
    """MODELOPS_MONITORING reaches the app through uWSGI (the benchmark's cost cells use it)."""
    stack = start_stack(tiny_model.directory, MODELOPS_MONITORING="off")
    try:
        body = {"instances": [tiny_model.record(0)]}
        assert requests.post(f"{stack.url}/predict", json=body, timeout=10).status_code == 200
        found = samples(requests.get(f"{stack.url}/metrics", timeout=5).text)
    finally:
        stack.stop()
        stack.cleanup()
    assert found[("modelops_scored_rows_total", ())] == 1.0
    assert not [k for k in found if k[0].startswith(("modelops_input", "modelops_score_"))]


def test_a_model_loaded_after_the_app_was_built_is_counted_from_its_first_prediction(
    tiny_model: TinyModel,
) -> None:
    model = Model(tiny_model.directory)
    client = create_app(model=model).test_client()
    assert client.post("/predict", json={"instances": [tiny_model.record(0)]}).status_code == 503
    model.load()
    send(client, "records", tiny_model.x_test[:1], tiny_model.features)
    send(client, "v2", tiny_model.x_test[:2], tiny_model.features)
    found = metrics_of(client)
    assert found[("modelops_scored_rows_total", ())] == 3
    assert "modelops_model_info" in client.get("/metrics").get_data(as_text=True)
