"""Live drift signals: the rows the server scores, counted into the bins of the model's reference
profile (profile.json, modelcard.read_profile), exposed as Prometheus counters.

Role: ``serving.metrics.Metrics`` builds one :class:`Signals` for the loaded model
(``describe_model``) and registers it as a collector; both protocols count every scored row
through it, once (``serving.protocols.common.score`` and ``score_one``). The metric names, labels
and meaning are docs/monitoring.md's "Signals" (the contract other parts read); the bin rule is
training/profile.py's: a value's bin is ``bisect_right(edges, value)``.

Why not prometheus_client's own counters: in multiprocess mode each ``inc()`` locks and writes
a value in a memory-mapped file, about 4 µs; a one-row request of 30 features touches some 35
cells, which would cost more than the prediction and the rest of the request. Here each process
keeps all its cells in one float64 array mapped from its own file in ``PROMETHEUS_MULTIPROC_DIR``
(``signals_<profile>_<pid>.counts``, created by the process on its first count, so never shared
between a forked worker and its parent): a request adds to it with a few numpy operations and
no lock between processes. At scrape time :meth:`Signals.collect` sums the arrays of every file
of the directory for this profile, the processes that exited included (as prometheus_client does
for counters, so a recycled worker does not reset them), and yields the counter families. Every
cell only ever grows, so a scrape that reads a file while a worker writes to it sees each counter
at its old or its new value, never a decrease. Without the directory (tests, one process) the
array is private. The reference ratios are gauges with constant values, from the profile.

``enabled`` false (``MODELOPS_MONITORING=off``) counts only the predicted class and the scored
rows: the benchmark's way to measure what the rest costs (docs/benchmarks.md).

A regression's model (its profile's score kind ``prediction``, modelcard) has no classes: its
"probabilities" are one column, the predicted value, which is the score counted into the
profile's score bins (``modelops_score_bin``: the prediction's distribution against the
reference's); there is no predicted class, class balance or near-boundary count.
"""

from __future__ import annotations

import mmap
import os
import threading
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from modelcard import PREDICTION_SCORE, Profile
from modelcard.runtime import Matrix

COUNTS_SUFFIX = ".counts"
COUNTS_PREFIX = "signals_"
#: At most this many value-threshold comparisons at once in a batch (memory: one byte each).
CHUNK_CELLS = 1 << 22


class _Layout:
    """Where each counter lives in the array of cells: input bins (``bins`` x features, bin-major:
    feature ``j``'s bin ``b`` at ``b * features + j``), values below then above the training
    range (features each), score bins, classes, near-boundary rows, rows."""

    def __init__(self, n_features: int, bins: int, n_classes: int) -> None:
        self.input = 0
        self.below = n_features * bins
        self.above = self.below + n_features
        self.score = self.above + n_features
        self.classes = self.score + bins
        self.near = self.classes + n_classes
        self.rows = self.near + 1
        self.size = self.rows + 1
        self.shape = (bins, n_features)

    def feature_bins(self, cells: np.ndarray) -> np.ndarray:
        """The input-bin cells of an array of this layout as a features x bins array."""
        return cells[self.input : self.below].reshape(self.shape).T


class _Counts:
    """This process's cells (float64, as Prometheus reads them: whole numbers stay exact up to
    2**53): private, or mapped from its own file in ``directory``."""

    def __init__(self, size: int, directory: str | None, tag: str) -> None:
        self.size = size
        self.directory = Path(directory) if directory else None
        self.tag = tag
        self._pid = -1
        self._map: mmap.mmap | None = None
        self._array: np.ndarray = np.zeros(size, dtype=np.float64)
        # a memoryview of doubles (typeshed types a memoryview's items as int: hence Any)
        self._cells: Any = self._array.data

    def array(self) -> np.ndarray:
        """The array to add to; in multiprocess mode, this process's file (opened on first use
        in each process: a worker forked from a parent that counted gets its own). Without a
        directory, the private array: a forked process counts in its own copy, as
        prometheus_client's in-process registry does."""
        if self.directory is None:
            return self._array
        pid = os.getpid()
        if pid != self._pid:
            self._array = self._open(pid)
            self._cells = self._array.data
            self._pid = pid
        return self._array

    def cells(self) -> Any:
        """The same cells as a memoryview of doubles: a single cell added to from Python costs
        a fraction of a numpy scalar update."""
        self.array()
        return self._cells

    def _open(self, pid: int) -> np.ndarray:
        assert self.directory is not None
        path = self.directory / f"{COUNTS_PREFIX}{self.tag}_{pid}{COUNTS_SUFFIX}"
        if not path.is_file() or path.stat().st_size != self.size * 8:
            # a pid reused after a worker exited continues its file; anything else starts at 0
            self.directory.mkdir(parents=True, exist_ok=True)
            path.write_bytes(bytes(self.size * 8))
        with path.open("r+b") as handle:
            self._map = mmap.mmap(handle.fileno(), self.size * 8)
        # a plain array over the mapping (np.memmap's subclass makes every slice cost more)
        return np.frombuffer(self._map, dtype=np.float64)

    def totals(self) -> np.ndarray:
        """Every process's cells added up (this process's alone without a directory)."""
        if self.directory is None:
            return self._array.copy()
        total = np.zeros(self.size, dtype=np.float64)
        for path in sorted(self.directory.glob(f"{COUNTS_PREFIX}{self.tag}_*{COUNTS_SUFFIX}")):
            try:
                if path.stat().st_size != self.size * 8:
                    continue
                total += np.memmap(path, dtype=np.float64, mode="r", shape=(self.size,))
            except (OSError, ValueError):
                continue  # removed between the listing and the read: a reset directory
        return total


class Signals:
    """The drift signals of one model: counting (:meth:`rows`, :meth:`row`) and the Prometheus
    collector (:meth:`collect`) of docs/monitoring.md's metrics."""

    def __init__(
        self,
        profile: Profile,
        classes: Sequence[str],
        *,
        tag: str,
        directory: str | None,
        enabled: bool = True,
    ) -> None:
        """``tag`` names this profile's files in ``directory`` (the profile's sha256 prefix):
        files of another model in the same directory are never added to these."""
        self.profile = profile
        self.classes = tuple(classes)
        self.enabled = enabled
        self.features = tuple(f.name for f in profile.features)
        n_features, bins = len(self.features), profile.bins
        self.layout = _Layout(n_features, bins, len(self.classes))
        self._counts = _Counts(self.layout.size, directory, tag)
        self._lock = threading.Lock()
        # edges as a (bins - 1, features) grid, padded with +inf (no value reaches a missing edge)
        grid = np.full((bins - 1, n_features), np.inf)
        for index, feature in enumerate(profile.features):
            grid[: len(feature.bins.edges), index] = feature.bins.edges
        self._low = np.array([f.low for f in profile.features], dtype=np.float64)
        self._high = np.array([f.high for f in profile.features], dtype=np.float64)
        self._score_edges = list(profile.score.edges)
        self._score_edges_array = np.asarray(profile.score.edges, dtype=np.float64)
        #: A regression's profile: the one column is the score, no classes to count.
        self.regression = profile.score_kind == PREDICTION_SCORE
        self._score_column = (
            0
            if self.regression
            else self.classes.index(profile.score_class)
            if profile.score_class is not None
            else None
        )
        self._margin = profile.boundary_margin
        self._bins = bins
        self._n_features = n_features
        # A batch: one comparison of every value with every edge of its feature, the training
        # minimum and the float after the maximum (``thresholds``), counted per feature below a
        # row holding the batch's size (``steps``); one constant matrix (``spread``) turns those
        # counts into what the batch adds to the input and out-of-range cells, in their layout:
        # per feature the rows in each bin (neighbouring counts' difference), then below (rows
        # - at or above the minimum), then above. Float64 throughout: the product runs on BLAS.
        thresholds = np.vstack([grid, self._low, np.nextafter(self._high, np.inf)])
        self._thresholds_by_feature = np.ascontiguousarray(thresholds.T)[:, :, None]
        #: 1.0 where the grid holds one of the feature's edges, 0.0 where it is padding.
        self._real_edges = np.isfinite(grid).astype(np.float64)
        self._steps = np.zeros((bins + 2, n_features), dtype=np.float64)
        spread = np.zeros((bins + 2, bins + 2), dtype=np.float64)
        for b in range(bins):
            spread[b, b] = 1.0
            if b + 1 < bins:
                spread[b, b + 1] = -1.0
        spread[bins, 0], spread[bins, bins] = 1.0, -1.0
        spread[bins + 1, bins + 1] = 1.0
        self._spread = spread
        self._base: np.ndarray | None = None
        self._block = self._steps
        # One row: per feature its edges, the cell of each of its bins, its out-of-range cells
        # and its training range.
        self._per_feature = [
            (
                list(feature.bins.edges),
                [self.layout.input + b * n_features + j for b in range(len(feature.bins.ratios))],
                self.layout.below + j,
                self.layout.above + j,
                feature.low,
                feature.high,
            )
            for j, feature in enumerate(profile.features)
        ]

    # --- counting --------------------------------------------------------------------------

    def _arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """This process's cells, and its view of the input and out-of-range cells as
        (bins + 2) x features: the bins, then below, then above."""
        base = self._counts.array()
        if base is not self._base:
            layout = self.layout
            self._block = base[layout.input : layout.score].reshape(-1, self._n_features)
            self._base = base
        return base, self._block

    def _batch_cells(self, x: Matrix) -> np.ndarray:
        """What the rows ``x`` add to the input and out-of-range cells, (bins + 2) x features:
        how many values are at or above each of the row path's thresholds (one comparison of
        every value with every threshold of its feature, all features at once, rows in chunks
        of at most :data:`CHUNK_CELLS` comparisons), spread as one row's steps are."""
        thresholds = self._thresholds_by_feature
        at_or_above = np.zeros((self._n_features, thresholds.shape[1]), dtype=np.float64)
        step = max(1, CHUNK_CELLS // thresholds.size)
        for start in range(0, x.shape[0], step):
            columns = np.ascontiguousarray(x[start : start + step].T)[:, None, :]
            hits = (columns >= thresholds).view(np.uint8)
            at_or_above += np.add.reduce(hits, axis=2, dtype=np.int64)
        steps = np.empty_like(self._steps)
        steps[0] = x.shape[0]
        steps[1:] = at_or_above.T
        self._count_missing(x, steps)
        added: np.ndarray = self._spread @ steps
        return added

    def _count_missing(self, x: Matrix, steps: np.ndarray) -> None:
        """Add the missing values of ``x`` (NaN: a column that may miss values) to ``steps``
        as the one-row path's ``bisect_right`` counts them: at or above each of the feature's
        own edges and its minimum (its last bin, not below), not past its maximum (not above).
        A NaN compares false with every threshold, so without this it would land in bin 0 and
        below the range."""
        missing = np.isnan(x)
        if missing.any():
            per_feature = missing.sum(axis=0, dtype=np.int64).astype(np.float64)
            steps[1 : self._bins] += self._real_edges * per_feature
            steps[self._bins] += per_feature

    def rows(self, x: Matrix, proba: Matrix) -> None:
        """Count the rows ``x`` (finite, validated, features in model order) and their
        probabilities ``proba`` (columns in class order)."""
        layout = self.layout
        n_classes = len(self.classes)
        if self.regression:
            by_class: np.ndarray = np.zeros(0, dtype=np.int64)
        else:
            by_class = np.bincount(proba.argmax(axis=1), minlength=n_classes)
        if not self.enabled:
            with self._lock:
                counts = self._counts.array()
                counts[layout.classes : layout.near] += by_class
                counts[layout.rows] += x.shape[0]
            return
        added = self._batch_cells(x)
        if self._score_column is not None:
            score = proba[:, self._score_column]
        else:
            score = proba.max(axis=1)
        by_score = np.bincount(
            np.searchsorted(self._score_edges_array, score, side="right"), minlength=self._bins
        )
        if self.regression:
            near = 0
        elif n_classes == 2:
            near = int(np.count_nonzero(np.abs(proba[:, 0] - proba[:, 1]) < self._margin))
        else:
            top_two = np.partition(proba, n_classes - 2, axis=1)[:, -2:]
            near = int(np.count_nonzero(top_two[:, 1] - top_two[:, 0] < self._margin))
        with self._lock:
            counts, block = self._arrays()
            block += added
            counts[layout.score : layout.classes] += by_score
            counts[layout.classes : layout.near] += by_class
            counts[layout.near] += near
            counts[layout.rows] += x.shape[0]

    def row(self, values: Sequence[float], proba: Sequence[float], best: int) -> None:
        """Count one row (finite values in model order), its probabilities and the index of its
        most probable class: the one-row path's numbers, as they come (no array is built).

        Plain Python, one ``bisect_right`` and one cell update per feature: measured in a uWSGI
        worker between requests, 25-30 µs a row against 50-60 µs for the same counts as four
        numpy calls on preallocated buffers, though both take 6-7 µs in a tight loop: the fixed
        cost of each numpy call grows when its code is not in the CPU's caches, and between two
        requests it is not. Batches go through numpy (:meth:`rows`)."""
        layout = self.layout
        column = self._score_column
        score = proba[column] if column is not None else proba[best]
        if self.regression:
            near = False
        elif len(proba) == 2:
            near = abs(proba[0] - proba[1]) < self._margin
        else:
            first, second = sorted(proba)[-2:][::-1]
            near = first - second < self._margin
        with self._lock:
            cells = self._counts.cells()
            if self.enabled:
                for (edges, bin_cells, below, above, low, high), value in zip(
                    self._per_feature, values, strict=True
                ):
                    cells[bin_cells[bisect_right(edges, value)]] += 1.0
                    if value < low:
                        cells[below] += 1.0
                    elif value > high:
                        cells[above] += 1.0
                cells[layout.score + bisect_right(self._score_edges, score)] += 1.0
                if near:
                    cells[layout.near] += 1.0
            if not self.regression:
                cells[layout.classes + best] += 1.0
            cells[layout.rows] += 1.0

    # --- exposition ------------------------------------------------------------------------

    def totals(self) -> np.ndarray:
        """Every cell, summed over the processes (what a scrape reports)."""
        return self._counts.totals()

    def collect(self) -> Iterator[Metric]:
        """The counter families (and, when enabled, the reference gauges): every series from
        the start, at 0 before any traffic."""
        layout, total = self.layout, self.totals()
        predicted = CounterMetricFamily(
            "modelops_predicted_class", "Live predictions by predicted class.", labels=["class"]
        )
        legacy = CounterMetricFamily(
            "modelops_predictions",
            "Rows predicted, by predicted class (the same count as modelops_predicted_class).",
            labels=["class"],
        )
        for index, name in enumerate(self.classes):
            predicted.add_metric([name], float(total[layout.classes + index]))
            legacy.add_metric([name], float(total[layout.classes + index]))
        yield predicted
        yield legacy
        yield CounterMetricFamily(
            "modelops_scored_rows",
            "Rows scored, every prediction of both protocols.",
            value=float(total[layout.rows]),
        )
        if not self.enabled:
            return
        yield from self._inputs(total)
        yield from self._outputs(total)

    def _inputs(self, total: np.ndarray) -> Iterator[Metric]:
        layout, n_features = self.layout, self._n_features
        counted = CounterMetricFamily(
            "modelops_input_bin",
            "Live rows whose feature fell in that bin of the reference profile.",
            labels=["feature", "bin"],
        )
        reference = GaugeMetricFamily(
            "modelops_input_reference_ratio",
            "The reference profile's share of training rows in that bin of the feature.",
            labels=["feature", "bin"],
        )
        outside = CounterMetricFamily(
            "modelops_input_out_of_range",
            "Live values below the training minimum or above the training maximum.",
            labels=["feature", "side"],
        )
        for index, feature in enumerate(self.profile.features):
            for b, ratio in enumerate(feature.bins.ratios):
                label = [feature.name, str(b)]
                counted.add_metric(label, float(total[layout.input + b * n_features + index]))
                reference.add_metric(label, ratio)
            outside.add_metric([feature.name, "below"], float(total[layout.below + index]))
            outside.add_metric([feature.name, "above"], float(total[layout.above + index]))
        yield counted
        yield reference
        yield outside

    def _outputs(self, total: np.ndarray) -> Iterator[Metric]:
        layout, profile = self.layout, self.profile
        counted = CounterMetricFamily(
            "modelops_score_bin",
            "Live rows by score bin (the positive class's probability for two classes, the top "
            "probability for more, the predicted value for a regression).",
            labels=["bin"],
        )
        reference = GaugeMetricFamily(
            "modelops_score_reference_ratio",
            "The reference profile's share of test rows in that score bin.",
            labels=["bin"],
        )
        for b, ratio in enumerate(profile.score.ratios):
            counted.add_metric([str(b)], float(total[layout.score + b]))
            reference.add_metric([str(b)], ratio)
        yield counted
        yield reference
        if self.regression:
            return
        balance = GaugeMetricFamily(
            "modelops_class_reference_ratio",
            "The share of each class among the model's predictions on the training rows.",
            labels=["class"],
        )
        for name, share in profile.classes:
            balance.add_metric([name], share)
        yield balance
        yield CounterMetricFamily(
            "modelops_near_boundary",
            "Live rows whose two most probable classes are closer than the profile's margin.",
            value=float(total[layout.near]),
        )

    def describe(self) -> list[Metric]:
        """No families up front: a registry then calls :meth:`collect` once to learn the names."""
        return list(self.collect())


def reset_counts(directory: Path) -> None:
    """Remove a previous run's count files (the uWSGI master, before the workers fork)."""
    for stale in directory.glob(f"{COUNTS_PREFIX}*{COUNTS_SUFFIX}"):
        stale.unlink(missing_ok=True)
