"""Prometheus metrics, correct across uWSGI worker processes.

With ``PROMETHEUS_MULTIPROC_DIR`` set (the uWSGI config sets it), prometheus_client keeps each
process's values in files there and ``/metrics`` merges them; the uWSGI master wipes the directory
before the workers fork (``reset_multiproc_dir``). Without it (unit tests), values live in a
private in-process registry. Label children are cached so the request path does one dict lookup.

What the model's rows say (the predicted class, the scored rows and the drift signals of
docs/monitoring.md) is counted by ``serving.monitoring.Signals``, built for the loaded model by
``describe_model``: its own per-process arrays in the same directory, summed at scrape time by a
collector (that module says why). Both protocols count through :meth:`Metrics.observe_rows` and
:meth:`Metrics.observe_row`, called from ``serving.protocols.common``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

from modelcard.runtime import Matrix
from serving.model import Model
from serving.monitoring import Signals, reset_counts

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def multiproc_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def shared_directory_problem(workers: int, directory: str | None) -> str | None:
    """Why the metrics cannot be served as they are, or None. Several workers need a shared
    directory: each would count alone, and /metrics would show whichever worker answered the
    scrape. Caller: serving/wsgi.py, before the model loads."""
    if workers > 1 and directory is None:
        return (
            f"{MULTIPROC_ENV} must be set for {workers} uWSGI workers "
            "(the image and the chart set it; an env option in uwsgi.ini never reaches Python)"
        )
    return None


def reset_multiproc_dir() -> None:
    """Create the multiprocess directory and remove a previous run's files (master only)."""
    path = multiproc_dir()
    if path is None:
        return
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink(missing_ok=True)
    reset_counts(directory)


class Metrics:
    """The server's metrics and their exposition."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, *, monitoring: bool = True) -> None:
        """``monitoring`` false (``MODELOPS_MONITORING=off``) leaves out the drift signals and
        counts only the predicted class and the scored rows."""
        self.monitoring = monitoring
        self.signals: Signals | None = None
        self._multiproc = multiproc_dir() is not None
        # In multiprocess mode values go to files; registering is only for the in-process case.
        registry = None if self._multiproc else CollectorRegistry(auto_describe=True)
        self._registry = registry
        self.requests = Counter(
            "modelops_requests_total",
            "HTTP requests answered, by endpoint and status.",
            ["endpoint", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "modelops_request_duration_seconds",
            "Time spent in the app per request, by endpoint.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.model_info = Gauge(
            "modelops_model_info",
            "The served model (value 1): name, version, stage, git commit, image digest, hashes, "
            "inference path.",
            [
                "name",
                "version",
                "stage",
                "git_commit",
                "image_digest",
                "model_sha256",
                "data_sha256",
                "inference_path",
            ],
            registry=registry,
            multiprocess_mode="max",
        )
        self._request_children: dict[tuple[str, int], Any] = {}
        self._latency_children: dict[str, Any] = {}

    def describe_model(self, model: Model) -> None:
        """The model-info gauge and the model's signals (counted from here on); a model that is
        not loaded has neither."""
        if not model.ready or model.profile is None:
            return
        self.model_info.labels(
            **model.provenance.as_dict(), inference_path=model.inference_path
        ).set(1)
        signals = Signals(
            model.profile,
            model.classes,
            tag=str(model.metadata["profile"]["sha256"])[:16],
            directory=multiproc_dir(),
            enabled=self.monitoring,
        )
        if self._registry is not None:
            if self.signals is not None:
                self._registry.unregister(self.signals)
            self._registry.register(signals)
        self.signals = signals

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        key = (endpoint, status)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self.requests.labels(endpoint, str(status))
        child.inc()
        latency = self._latency_children.get(endpoint)
        if latency is None:
            latency = self._latency_children[endpoint] = self.latency.labels(endpoint)
        latency.observe(seconds)

    def observe_rows(self, x: Matrix, proba: Matrix) -> None:
        """Count scored rows: ``x`` validated (finite, model order), ``proba`` the model's."""
        assert self.signals is not None, "describe_model first"
        self.signals.rows(x, proba)

    def observe_row(self, values: Sequence[float], proba: Sequence[float], best: int) -> None:
        """Count one scored row of the one-row path (``best``: its most probable class)."""
        assert self.signals is not None, "describe_model first"
        self.signals.row(values, proba, best)

    def exposition(self) -> bytes:
        if self._multiproc:
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            if self.signals is not None:
                registry.register(self.signals)
            return bytes(generate_latest(registry))
        assert self._registry is not None
        return bytes(generate_latest(self._registry))
