"""`make bench`: wrk against the serving stack, for every estimator family, and its references.

One run builds one model per family (``bench.models``: logistic regression, random forest,
histogram gradient boosting, each written as the ONNX artifact training ships and as the
scikit-learn pickle) and measures, each started by this module and stopped when its cells are done
(a cell is ``target:workload``):

- per family, ``<family>/stack``: Nginx → uWSGI → Flask serving the family's artifact
  (``devstack.stack``, ONNX Runtime): ``predict-1``, ``predict-1000`` (/predict, records),
  ``infer-1`` and ``infer-1000`` (v2 infer, one [1, 30] or [1000, 30] tensor);
- per family, ``<family>/mlserver``: the same fitted pipeline served by MLServer's scikit-learn
  runtime, given its best shot (``bench.mlserver``): ``infer-1``, ``infer-1000``;
- per family, ``<family>/fastapi``: the same model with scikit-learn behind FastAPI + uvicorn, 2
  workers, given its best shot (``bench.fastapi_app``): ``predict-1``, ``predict-1000``; the
  servers of a family run side by side and each cell of a reference runs right after the
  stack's, so that the two figures of a ratio are measured seconds apart; before its cells, each
  reference must answer as the stack does (:func:`disagreement`, :func:`v2_disagreement`), or the
  run stops;
- once, ``floor``: the stack with ``bench.floor`` loaded, answering a constant for the same body
  through the request pipeline's route table (``pipeline-constant-1``), through Flask's dispatch
  (``flask-constant-1``) and in front of both (``wsgi-constant-1``); no model work, so one
  measurement serves every family;
- once, ``ceiling``: the same Nginx config answering a constant itself, no upstream
  (``constant-1``);
- for one family (:data:`COST_FAMILY`), ``<family>/stack-monitoring-off``: its stack again with
  ``MODELOPS_MONITORING=off`` (no drift signals, docs/monitoring.md), the stack's three cells,
  each run right after the stack's: what the signals cost (:func:`monitoring_cost`).

Every cell at concurrency 1, 16 and 64. Server CPU per request is the CPU time (user + system,
from /proc) of the target's processes during the run, divided by the requests answered. A full
run computes every ratio (:data:`RATIOS`), scores every family against the goals (:data:`GOALS`,
:func:`score`) and writes ``<out>/bench-<time>.json`` and ``.md`` (and ``latest.*``); ``--only``
runs some cells, without goals, into ``only-<time>.*``. The models are written under
``<out>/models``. docs/benchmarks.md describes the method and the goals.

    python -m bench.run --out out/bench [--duration 5] [--only CELLS] [--mlserver-venv DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import mlserver, models
from devstack.stack import NGINX_START, Stack, StackError, free_port, nginx_environment
from serving import readiness
from training.portable import ConversionError

ROOT = Path(__file__).resolve().parents[1]
CONCURRENCY = (1, 16, 64)
BATCH_ROWS = 1000
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
#: The family whose artifact the floor's stack loads (the floor never runs the model).
FLOOR_FAMILY = "logistic_regression"
#: The family whose stack is measured again with the drift signals off (their cost does not
#: depend on the estimator: they count the inputs and the probabilities).
COST_FAMILY = "logistic_regression"
MONITORING_OFF = "stack-monitoring-off"
#: The reference's native thread pools: one thread per worker, like the stack's ONNX sessions.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
#: Python distributions whose versions the report states.
LIBRARIES = (
    "numpy",
    "scikit-learn",
    "onnxruntime",
    "msgspec",
    "orjson",
    "flask",
    "werkzeug",
    "pyuwsgi",
    "fastapi",
    "starlette",
    "uvicorn",
    "h11",
    "httptools",
    "uvloop",
)
WRK_REPORT = """
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "errors": %d, "p50_us": %d, "p99_us": %d}\\n',
    summary.requests, summary.duration, errors, latency:percentile(50), latency:percentile(99)))
end
"""


#: A cell's figure, for a ratio: (target, workload, field of its row). The targets of
#: :data:`SHARED_CELLS` are measured once (family ""); every other target is the family's own.
Figure = tuple[str, str, str]


@dataclass(frozen=True)
class Ratio:
    """``numerator`` ÷ ``denominator`` per family and concurrency, from one run; a bare figure
    when ``denominator`` is None. Its cells' errors make it unclean (it fails every goal)."""

    name: str
    numerator: Figure
    denominator: Figure | None
    meaning: str


#: Every ratio a full run reports (``ratios`` in the JSON), in its order.
RATIOS = (
    Ratio(
        "rps_1row_vs_mlserver",
        ("stack", "infer-1", "rps"),
        ("mlserver", "infer-1", "rps"),
        "one-row v2 tensor req/s against MLServer's",
    ),
    Ratio(
        "p99_1row_vs_mlserver",
        ("stack", "infer-1", "p99_ms"),
        ("mlserver", "infer-1", "p99_ms"),
        "one-row v2 tensor p99 against MLServer's",
    ),
    Ratio(
        "cpu_1row_vs_mlserver",
        ("stack", "infer-1", "cpu_us_per_request"),
        ("mlserver", "infer-1", "cpu_us_per_request"),
        "server CPU per one-row v2 tensor request against MLServer's",
    ),
    Ratio(
        "rows_1000_tensor_vs_mlserver",
        ("stack", "infer-1000", "rows_per_s"),
        ("mlserver", "infer-1000", "rows_per_s"),
        "1,000-row v2 tensor rows/s against MLServer's",
    ),
    Ratio(
        "rps_1row_vs_reference",
        ("stack", "predict-1", "rps"),
        ("fastapi", "predict-1", "rps"),
        "one-row records req/s against FastAPI's",
    ),
    Ratio(
        "cpu_1row_vs_floor",
        ("stack", "predict-1", "cpu_us_per_request"),
        ("floor", "pipeline-constant-1", "cpu_us_per_request"),
        "server CPU per one-row records request against the pipeline's constant answer",
    ),
    Ratio(
        "cpu_1row_vs_flask_floor",
        ("stack", "predict-1", "cpu_us_per_request"),
        ("floor", "flask-constant-1", "cpu_us_per_request"),
        "the same against a Flask route's constant answer",
    ),
    Ratio(
        "cpu_1row_vs_wsgi_floor",
        ("stack", "predict-1", "cpu_us_per_request"),
        ("floor", "wsgi-constant-1", "cpu_us_per_request"),
        "the same against the constant answered in front of the pipeline",
    ),
    Ratio(
        "cpu_1row_vs_reference",
        ("stack", "predict-1", "cpu_us_per_request"),
        ("fastapi", "predict-1", "cpu_us_per_request"),
        "server CPU per one-row records request against FastAPI's",
    ),
    Ratio(
        "rps_1row_vs_ceiling",
        ("stack", "predict-1", "rps"),
        ("ceiling", "constant-1", "rps"),
        "one-row req/s against Nginx answering alone",
    ),
    Ratio("p99_ms_1row", ("stack", "predict-1", "p99_ms"), None, "one-row records p99 (ms)"),
    Ratio(
        "rows_1000_vs_reference",
        ("stack", "predict-1000", "rows_per_s"),
        ("fastapi", "predict-1000", "rows_per_s"),
        "1,000-row records rows/s against FastAPI's",
    ),
    Ratio(
        "rows_1000_tensor_vs_reference",
        ("stack", "infer-1000", "rows_per_s"),
        ("fastapi", "predict-1000", "rows_per_s"),
        "1,000 rows as one v2 tensor, rows/s, against FastAPI's 1,000 records",
    ),
    Ratio(
        "cpu_1000_reference_over_stack",
        ("fastapi", "predict-1000", "cpu_us_per_request"),
        ("stack", "predict-1000", "cpu_us_per_request"),
        "FastAPI's server CPU per 1,000-record request over the stack's: the rows/s ratio if"
        " each had the cores to itself",
    ),
)
RATIO_BY_NAME = {ratio.name: ratio for ratio in RATIOS}
#: The families whose model is linear: their one-row goal against FastAPI is lower (a lean
#: FastAPI spends little on a linear model, docs/benchmarks.md); every other family's is the
#: tree families'.
LINEAR_FAMILIES = frozenset({"logistic_regression"})


@dataclass(frozen=True)
class Goal:
    """A goal every family is scored against: ``ratio`` at each of ``concurrency`` compared
    with ``threshold`` (``at_least``, else at most); ``linear``: the threshold for
    :data:`LINEAR_FAMILIES` when it differs."""

    key: str
    title: str
    ratio: str
    concurrency: tuple[int, ...]
    threshold: float
    at_least: bool
    linear: float | None = None

    def threshold_for(self, family: str) -> float:
        if self.linear is not None and family in LINEAR_FAMILIES:
            return self.linear
        return self.threshold


#: The goals of issue 24, the one list `make bench` scores (``goals`` in the JSON).
GOALS = (
    Goal(
        "rps_1row_vs_mlserver_c1", "one-row req/s ÷ MLServer", "rps_1row_vs_mlserver", (1,), 3, True
    ),
    Goal(
        "rps_1row_vs_mlserver",
        "one-row req/s ÷ MLServer",
        "rps_1row_vs_mlserver",
        (16, 64),
        5,
        True,
    ),
    Goal(
        "p99_1row_vs_mlserver", "one-row p99 ÷ MLServer's", "p99_1row_vs_mlserver", (1,), 0.5, False
    ),
    Goal(
        "rps_1row_vs_fastapi",
        "one-row req/s ÷ FastAPI",
        "rps_1row_vs_reference",
        (16, 64),
        3,
        True,
        linear=1.5,
    ),
    Goal(
        "cpu_1row_vs_floor",
        "one-row server CPU ÷ floor",
        "cpu_1row_vs_floor",
        (16, 64),
        1.75,
        False,
    ),
    Goal(
        "rows_1000_tensor_vs_fastapi",
        "1,000 rows, v2 tensor, rows/s ÷ FastAPI records",
        "rows_1000_tensor_vs_reference",
        (16, 64),
        2,
        True,
    ),
    Goal(
        "rows_1000_records_vs_fastapi",
        "1,000 rows, records, rows/s ÷ FastAPI records",
        "rows_1000_vs_reference",
        (16, 64),
        1.3,
        True,
    ),
    Goal(
        "rows_1000_tensor_vs_mlserver",
        "1,000 rows, v2 tensor, rows/s ÷ MLServer",
        "rows_1000_tensor_vs_mlserver",
        (16, 64),
        3,
        True,
    ),
)
DRIFT_GOAL = "drift signals' cost reported (on against off)"


@dataclass
class Workload:
    name: str
    path: str
    body: bytes
    rows: int


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def cpu_seconds(roots: list[int]) -> float:
    """User + system CPU of the processes under ``roots`` (children that exited included)."""
    total = 0
    for root in roots:
        for pid in process_tree(root):
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return total / CLOCK_TICKS


def wrk(
    url: str, workload: Workload, concurrency: int, duration: int, roots: list[int], scratch: Path
) -> dict[str, Any]:
    script = scratch / f"{workload.name}.lua"
    body_file = scratch / f"{workload.name}.json"
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = io.open({json.dumps(str(body_file))}, 'rb'):read('*a')\n" + WRK_REPORT
    )
    body_file.write_bytes(workload.body)
    threads = min(concurrency, 2)
    before = cpu_seconds(roots)
    out = subprocess.run(
        [
            "wrk",
            "-t",
            str(threads),
            "-c",
            str(concurrency),
            "-d",
            f"{duration}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            url + workload.path,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    cpu = cpu_seconds(roots) - before
    match = re.search(r"WRK_JSON (\{.*\})", out)
    if match is None:
        raise RuntimeError(f"wrk gave no summary:\n{out}")
    summary = json.loads(match.group(1))
    seconds = summary["duration_us"] / 1e6
    answered = max(summary["requests"], 1)
    return {
        "workload": workload.name,
        "concurrency": concurrency,
        "requests": summary["requests"],
        "errors": summary["errors"],
        "rps": summary["requests"] / seconds,
        "rows_per_s": summary["requests"] * workload.rows / seconds,
        "p50_ms": summary["p50_us"] / 1000,
        "p99_ms": summary["p99_us"] / 1000,
        "cpu_us_per_request": cpu / answered * 1e6,
    }


Started = tuple[str, list[int]]


@contextlib.contextmanager
def stack_target(model_dir: Path, **env: str) -> Iterator[Started]:
    with Stack(model_dir, env={"PYTHONPATH": str(ROOT), **env}) as stack:
        assert stack.uwsgi is not None and stack.nginx is not None
        yield stack.url, [stack.uwsgi.pid, stack.nginx.pid]


def stop_tree(process: subprocess.Popen[bytes], stop: int, grace: float = 30) -> None:
    """Send ``stop`` to ``process``, wait ``grace`` seconds (then SIGKILL it), and SIGKILL what
    is left of the children it had: MLServer with parallel workers can outlive the wait."""
    children = [pid for pid in process_tree(process.pid) if pid != process.pid]
    process.send_signal(stop)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
    for pid in children:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def process_target(
    name: str,
    argv: list[str],
    env: dict[str, str],
    log_path: Path,
    port: int,
    ready_path: str,
    stop: int,
) -> Iterator[Started]:
    """One server process, NAME in messages, answering on 127.0.0.1:PORT for the cells; stopped
    with signal STOP. Not answering READY_PATH with 2xx within a minute, or exiting:
    ``NotReadyError`` (serving.readiness) with the last lines of its log."""
    url = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            readiness.wait_ready(
                url + ready_path,
                60,
                f"the {name} server",
                exited=readiness.first_exit({name: process}),
                log_tail=lambda: readiness.file_tails(log_path),
            )
            yield url, [process.pid]
        finally:
            stop_tree(process, stop)


@contextlib.contextmanager
def ceiling_target(scratch: Path) -> Iterator[Started]:
    """The same Nginx config with ``return 200 <constant>`` first in its only location."""
    template = (NGINX_START.parent / "nginx.conf.template").read_text()
    constant = 'return 200 \'{"labels":["benign"]}\';'
    conf_dir = scratch / "ceiling-conf"
    conf_dir.mkdir()
    (conf_dir / "nginx.conf.template").write_text(
        template.replace("location / {\n", "location / {\n            " + constant + "\n", 1)
    )
    shutil.copy(NGINX_START, conf_dir / NGINX_START.name)
    port = free_port()
    env = dict(os.environ, **nginx_environment(port, scratch / "ceiling", scratch / "none.sock"))
    argv = ["sh", str(conf_dir / NGINX_START.name)]
    log = scratch / "ceiling.log"
    with process_target("ceiling", argv, env, log, port, "/", signal.SIGQUIT) as target:
        yield target


@contextlib.contextmanager
def mlserver_target(
    model: models.BenchModel,
    scratch: Path,
    venv: Path = mlserver.VENV,
    parallel_workers: int = mlserver.PARALLEL_WORKERS,
) -> Iterator[Started]:
    """MLServer (``bench.mlserver``) from ``venv`` serving ``model``'s scikit-learn pickle with
    its scikit-learn runtime; RuntimeError naming `make mlserver` when ``venv`` lacks it."""
    command = mlserver.executable(venv)
    if not command.exists():
        raise RuntimeError(f"{command} not found: run `make mlserver`")
    port = free_port()
    repository = mlserver.write_repository(
        model,
        scratch / f"mlserver-{model.family}-{port}",
        http_port=port,
        grpc_port=free_port(),
        parallel_workers=parallel_workers,
    )
    argv = [str(command), "start", str(repository)]
    log = scratch / f"mlserver-{model.family}-{port}.log"
    ready = f"/v2/models/{models.MODEL_NAME}/ready"
    env = mlserver.environment(ONE_THREAD)
    with process_target("MLServer", argv, env, log, port, ready, signal.SIGTERM) as target:
        yield target


@contextlib.contextmanager
def fastapi_target(model: models.BenchModel, scratch: Path) -> Iterator[Started]:
    """The FastAPI reference (bench.fastapi_app) serving ``model``'s scikit-learn pickle."""
    port = free_port()
    env = dict(
        os.environ,
        MODELOPS_BENCH_CARD=str((model.served / "metadata.json").resolve()),
        MODELOPS_BENCH_PICKLE=str(model.reference.resolve()),
        PYTHONPATH=str(ROOT),
        **ONE_THREAD,
    )
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "bench.fastapi_app:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "2",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    log = scratch / f"uvicorn-{model.family}.log"
    with process_target("FastAPI", argv, env, log, port, "/healthz", signal.SIGINT) as target:
        yield target


def workloads(features: tuple[str, ...]) -> dict[str, Workload]:
    """The request bodies: breast-cancer rows, in ``features`` order, the same for every target."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer().data
    rows = [
        dict(zip(features, data[i % len(data)].tolist(), strict=True)) for i in range(BATCH_ROWS)
    ]

    def tensor(count: int) -> bytes:
        values = [v for i in range(count) for v in data[i % len(data)].tolist()]
        shape = [count, len(features)]
        return json.dumps(
            {"inputs": [{"name": "input-0", "shape": shape, "datatype": "FP64", "data": values}]}
        ).encode()

    one = json.dumps({"instances": rows[:1]}).encode()
    infer = f"/v2/models/{models.MODEL_NAME}/infer"
    return {
        "predict-1": Workload("predict-1", "/predict", one, 1),
        "predict-1000": Workload(
            "predict-1000", "/predict", json.dumps({"instances": rows}).encode(), BATCH_ROWS
        ),
        "infer-1": Workload("infer-1", infer, tensor(1), 1),
        "infer-1000": Workload("infer-1000", infer, tensor(BATCH_ROWS), BATCH_ROWS),
        "pipeline-constant-1": Workload("pipeline-constant-1", "/bench/pipeline-constant", one, 1),
        "flask-constant-1": Workload("flask-constant-1", "/bench/flask-constant", one, 1),
        "wsgi-constant-1": Workload("wsgi-constant-1", "/bench/wsgi-constant", one, 1),
        "constant-1": Workload("constant-1", "/", one, 1),
    }


def post_json(url: str, body: bytes) -> Any:
    """POST a JSON body to a server this module started (http://127.0.0.1:<port>/...)."""
    headers = {"Content-Type": "application/json"}
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (loopback http)
        return json.loads(response.read())


def compare(
    stack: tuple[list[str], list[float]], reference: tuple[list[str], list[float]]
) -> str | None:
    """Why two answers, each (labels, probabilities flattened row by row), differ: labels, or a
    probability by more than modelcard's tolerance (the one the export proves the ONNX graph
    to); None when they agree."""
    import modelcard

    if stack[0] != reference[0]:
        shown = f"{stack[0][:5]} (stack) against {reference[0][:5]} (reference)"
        return f"labels {shown}" if len(stack[0]) <= 5 else f"labels, first five {shown}"
    if len(stack[1]) != len(reference[1]):
        return f"{len(stack[1])} probabilities (stack) against {len(reference[1])} (reference)"
    worst = max(abs(a - b) for a, b in zip(stack[1], reference[1], strict=True))
    if worst > modelcard.PROBABILITY_TOLERANCE:
        return f"probabilities differ by up to {worst:.3g}"
    return None


def disagreement(stack_url: str, reference_url: str, body: bytes) -> str | None:
    """Why the stack's and the FastAPI reference's answers to one /predict body differ
    (:func:`compare`), or None: both serve the same model."""

    def answer(url: str) -> tuple[list[str], list[float]]:
        found = post_json(url + "/predict", body)
        return found["labels"], [p for row in found["probabilities"] for p in row]

    return compare(answer(stack_url), answer(reference_url))


#: What :func:`v2_disagreement` asks both servers for: the outputs the stack and MLServer's
#: scikit-learn runtime both name so (labels and probabilities).
V2_OUTPUTS = [{"name": "predict"}, {"name": "predict_proba"}]


def v2_disagreement(stack_url: str, mlserver_url: str, body: bytes) -> str | None:
    """Why the stack's and MLServer's answers to one v2 infer body differ (:func:`compare`),
    asked for both outputs, or None. MLServer's ``predict`` is scikit-learn's class (0, 1),
    named here by :data:`bench.models.CLASS_NAMES`; the stack answers the names."""
    request = json.loads(body)
    request["outputs"] = V2_OUTPUTS
    data = json.dumps(request).encode()
    path = f"/v2/models/{models.MODEL_NAME}/infer"

    def answer(url: str) -> tuple[list[str], list[float]]:
        outputs = {o["name"]: o["data"] for o in post_json(url + path, data)["outputs"]}
        labels = [
            label if isinstance(label, str) else models.CLASS_NAMES[int(label)]
            for label in outputs["predict"]
        ]
        return labels, [float(p) for p in outputs["predict_proba"]]

    return compare(answer(stack_url), answer(mlserver_url))


#: What each target runs: (target, workloads). ``<family>/`` is prefixed for the family targets.
FAMILY_CELLS = {
    "stack": ("predict-1", "infer-1", "predict-1000", "infer-1000"),
    "mlserver": ("infer-1", "infer-1000"),
    "fastapi": ("predict-1", "predict-1000"),
}
SHARED_CELLS = {
    "floor": ("pipeline-constant-1", "flask-constant-1", "wsgi-constant-1"),
    "ceiling": ("constant-1",),
}
#: The cost cells: :data:`COST_FAMILY`'s stack with the drift signals off.
COST_CELLS = {MONITORING_OFF: FAMILY_CELLS["stack"]}


def all_cells(families: tuple[str, ...] = tuple(models.FAMILIES)) -> list[str]:
    cells = [f"{target}:{name}" for target, names in SHARED_CELLS.items() for name in names]
    for family in families:
        for target, names in FAMILY_CELLS.items():
            cells += [f"{family}/{target}:{name}" for name in names]
        if family == COST_FAMILY:
            for target, names in COST_CELLS.items():
                cells += [f"{family}/{target}:{name}" for name in names]
    return cells


def check_cells(only: frozenset[str]) -> None:
    """Raise ValueError, naming every cell there is, when ``only`` names an unknown one."""
    cells = all_cells()
    unknown = sorted(only - set(cells))
    if unknown:
        raise ValueError(f"unknown cell {unknown[0]!r} in --only; the cells: {', '.join(cells)}")


def measure(
    work: Path,
    duration: int,
    only: frozenset[str] = frozenset(),
    mlserver_venv: Path = mlserver.VENV,
    mlserver_workers: int = mlserver.PARALLEL_WORKERS,
) -> list[dict[str, Any]]:
    """Every cell of the plan, or only those in ``only``; the models are written under ``work``.
    Raises ValueError for an unknown cell, RuntimeError when a reference disagrees with the
    stack (before any cell of its family is measured)."""
    cells = all_cells()
    check_cells(only)
    wanted = [c for c in cells if not only or c in only]
    families = [f for f in models.FAMILIES if any(c.startswith(f + "/") for c in wanted)]
    if any(c.startswith("floor:") for c in wanted) and FLOOR_FAMILY not in families:
        families.insert(0, FLOOR_FAMILY)
    built: dict[str, models.BenchModel] = {}
    for family in families:
        print(f"  building {family} ...", flush=True)
        built[family] = models.build(family, work)
    features = next(iter(built.values())).features if built else tuple(models.dataset()[0])
    loads = workloads(features)
    results: list[dict[str, Any]] = []

    def run_cells(
        family: str, targets: dict[str, Started], names: dict[str, list[str]], scratch: Path
    ) -> None:
        order = [n for n in loads if any(n in ns for ns in names.values())]
        for name in order:
            for concurrency in CONCURRENCY:
                for target, (url, roots) in targets.items():
                    if name not in names[target]:
                        continue
                    row = wrk(url, loads[name], concurrency, duration, roots, scratch)
                    row["family"], row["target"] = family, target
                    results.append(row)
                    label = f"{family}/{target}" if family else target
                    print(
                        f"  {label:30} {name:19} c={concurrency:<3} {row['rps']:8.0f} req/s  "
                        f"p99 {row['p99_ms']:7.2f} ms  "
                        f"cpu {row['cpu_us_per_request']:6.0f} us/req  errors {row['errors']}",
                        flush=True,
                    )

    def selected(prefix: str, target: str, names: tuple[str, ...]) -> list[str]:
        return [n for n in names if f"{prefix}{target}:{n}" in wanted]

    with tempfile.TemporaryDirectory(prefix="modelops-bench-") as tmp:
        scratch = Path(tmp)
        starters: dict[str, Callable[[], contextlib.AbstractContextManager[Started]]] = {
            "floor": lambda: stack_target(
                built[FLOOR_FAMILY].served, MODELOPS_WSGI_MODULE="bench.floor:application"
            ),
            "ceiling": lambda: ceiling_target(scratch),
        }
        for target, shared_names in SHARED_CELLS.items():
            names = selected("", target, shared_names)
            if names:
                with starters[target]() as started:
                    run_cells("", {target: started}, {target: names}, scratch)
        for family, model in built.items():
            chosen = {t: selected(f"{family}/", t, ns) for t, ns in FAMILY_CELLS.items()}
            chosen[MONITORING_OFF] = selected(
                f"{family}/", MONITORING_OFF, COST_CELLS[MONITORING_OFF]
            )
            if not any(chosen.values()):
                continue
            with contextlib.ExitStack() as running:
                targets: dict[str, Started] = {}
                if chosen["stack"]:
                    targets["stack"] = running.enter_context(stack_target(model.served))
                if chosen[MONITORING_OFF]:
                    targets[MONITORING_OFF] = running.enter_context(
                        stack_target(model.served, MODELOPS_MONITORING="off")
                    )
                if chosen["mlserver"]:
                    targets["mlserver"] = running.enter_context(
                        mlserver_target(model, scratch, mlserver_venv, mlserver_workers)
                    )
                if chosen["fastapi"]:
                    targets["fastapi"] = running.enter_context(fastapi_target(model, scratch))
                if "stack" in targets:
                    check_agreement(family, targets, loads)
                run_cells(family, targets, {t: n for t, n in chosen.items() if n}, scratch)
    return results


def check_agreement(family: str, targets: dict[str, Started], loads: dict[str, Workload]) -> None:
    """Raise RuntimeError, naming the family, the reference and the body, unless each running
    reference answers the stack's bodies as the stack does: FastAPI the one-row records,
    MLServer the one-row and the 1,000-row v2 tensors."""
    stack_url = targets["stack"][0]
    checks: list[tuple[str, str, Callable[[str, str, bytes], str | None]]] = [
        ("fastapi", "predict-1", disagreement),
        ("mlserver", "infer-1", v2_disagreement),
        ("mlserver", "infer-1000", v2_disagreement),
    ]
    for reference, workload, check in checks:
        if reference in targets:
            problem = check(stack_url, targets[reference][0], loads[workload].body)
            if problem:
                raise RuntimeError(
                    f"{family}: the stack and {reference} disagree on {workload}: {problem}"
                )


def ratios(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Every ratio of :data:`RATIOS`, per family and concurrency (``c16``), of a full run, and
    whether the cells it reads had no error: ``{family: {"values": {ratio: {c: value}},
    "clean": {ratio: {c: bool}}}}``."""
    cells = {(r["family"], r["target"], r["workload"], r["concurrency"]): r for r in results}
    out: dict[str, Any] = {}
    for family in models.FAMILIES:
        values: dict[str, dict[str, float]] = {}
        clean: dict[str, dict[str, bool]] = {}
        for ratio in RATIOS:
            for c in CONCURRENCY:
                rows = []
                for target, workload, _ in filter(None, (ratio.numerator, ratio.denominator)):
                    owner = "" if target in SHARED_CELLS else family
                    rows.append(cells[(owner, target, workload, c)])
                value = rows[0][ratio.numerator[2]]
                if ratio.denominator is not None:
                    value = value / rows[1][ratio.denominator[2]]
                values.setdefault(ratio.name, {})[f"c{c}"] = value
                clean.setdefault(ratio.name, {})[f"c{c}"] = all(r["errors"] == 0 for r in rows)
        out[family] = {"values": values, "clean": clean}
    return out


def score(measured: dict[str, Any], cost: dict[str, dict[str, dict[str, float]]]) -> dict[str, Any]:
    """The goals section of a full run's report: per family, each goal of :data:`GOALS` (its
    ratio at each of its concurrencies, the threshold, pass or fail; a cell with errors fails
    it), and the drift signals' cost (passed when :func:`monitoring_cost` holds every cost cell
    at every concurrency); ``passed``: all of them."""
    families: dict[str, dict[str, Any]] = {}
    for family, found in measured.items():
        goals = {}
        for goal in GOALS:
            threshold = goal.threshold_for(family)
            values = {f"c{c}": found["values"][goal.ratio][f"c{c}"] for c in goal.concurrency}
            passed = all(
                (v >= threshold if goal.at_least else v <= threshold)
                and found["clean"][goal.ratio][key]
                for key, v in values.items()
            )
            goals[goal.key] = {
                "title": goal.title,
                "ratio": goal.ratio,
                "measured": values,
                "threshold": threshold,
                "at_least": goal.at_least,
                "passed": passed,
            }
        families[family] = goals
    added = {
        workload: {key: entry["cpu_us_added"] for key, entry in cost.get(workload, {}).items()}
        for workload in COST_CELLS[MONITORING_OFF]
    }
    drift = {
        "title": DRIFT_GOAL,
        "family": COST_FAMILY,
        "measured": added,
        "passed": all(len(by_c) == len(CONCURRENCY) for by_c in added.values()),
    }
    every = [g["passed"] for goals in families.values() for g in goals.values()]
    return {
        "families": families,
        "drift_signals": drift,
        "passed": all(every) and drift["passed"],
    }


def monitoring_cost(results: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """What the drift signals cost, by workload and concurrency (``c16``): :data:`COST_FAMILY`'s
    stack (signals on, the default) against the same stack with them off, measured seconds
    apart in the same run. Server CPU per request on and off and the difference (µs), req/s on
    and off and their ratio. Only the workloads both were measured on (any run, partial too)."""
    found = {
        (r["target"], r["workload"], r["concurrency"]): r
        for r in results
        if r["family"] == COST_FAMILY and r["target"] in ("stack", MONITORING_OFF)
    }
    out: dict[str, dict[str, dict[str, float]]] = {}
    for workload in COST_CELLS[MONITORING_OFF]:
        for c in CONCURRENCY:
            on, off = found.get(("stack", workload, c)), found.get((MONITORING_OFF, workload, c))
            if on is None or off is None:
                continue
            out.setdefault(workload, {})[f"c{c}"] = {
                "cpu_us_on": on["cpu_us_per_request"],
                "cpu_us_off": off["cpu_us_per_request"],
                "cpu_us_added": on["cpu_us_per_request"] - off["cpu_us_per_request"],
                "rps_on": on["rps"],
                "rps_off": off["rps"],
                "rps_on_over_off": on["rps"] / off["rps"] if off["rps"] else 0.0,
            }
    return out


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    for tool, argv in (("nginx", ["nginx", "-v"]), ("wrk", ["wrk", "-v"])):
        with contextlib.suppress(OSError):
            done = subprocess.run(argv, capture_output=True, text=True, check=False)
            found = re.search(r"[0-9]+\.[0-9]+\.[0-9]+", done.stdout + done.stderr)
            versions[tool] = found.group(0) if found else "unknown"
    return {
        "cpu_model": cpu_model,
        "cpus": os.cpu_count(),
        "kernel": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "libraries": versions,
    }


def _figure(value: float) -> str:
    return f"{value:,.0f}" if value >= 1000 else f"{value:.2f}"


def markdown(report: dict[str, Any]) -> str:
    host = report["machine"]
    libraries = ", ".join(f"{k} {v}" for k, v in host["libraries"].items())
    lines = [
        f"# Serving benchmark {report['started']}",
        "",
        f"Machine: {host['cpu_model'] or 'unknown CPU'}, {host['cpus']} CPUs, {host['kernel']}, "
        f"Python {host['python']}; load average before {report['loadavg_before']}, after "
        f"{report['loadavg_after']}; wrk shares the cores; {report['duration_s']} s a cell.",
        "",
        f"Libraries: {libraries}.",
        "",
    ]
    if report.get("mlserver"):
        served = report["mlserver"]
        found = ", ".join(f"{k} {v}" for k, v in served["libraries"].items())
        lines += [f"MLServer: parallel_workers {served['parallel_workers']}; {found}.", ""]
    goals = report.get("goals")
    if goals:
        families = list(goals["families"])
        verdict = "every goal holds" if goals["passed"] else "some goals FAIL"
        lines += [
            f"Goals ({verdict}); each cell: the measured ratio at each concurrency, the verdict:",
            "",
            "| goal | ratio | c | threshold | " + " | ".join(families) + " |",
            "|---|---|---|---|" + "---|" * len(families),
        ]
        for goal in GOALS:
            entries = [goals["families"][f][goal.key] for f in families]
            thresholds = sorted({e["threshold"] for e in entries}, reverse=True)
            sign = "≥" if goal.at_least else "≤"
            cells = []
            for entry in entries:
                values = " / ".join(_figure(v) for v in entry["measured"].values())
                mark = "pass" if entry["passed"] else "FAIL"
                extra = f" (≥ {entry['threshold']:g})" if len(thresholds) > 1 else ""
                cells.append(f"{values} **{mark}**{extra}")
            shown = " or ".join(f"{sign} {t:g}" for t in thresholds)
            lines.append(
                f"| {goal.title} | `{goal.ratio}` | {'/'.join(map(str, goal.concurrency))} "
                f"| {shown} | " + " | ".join(cells) + " |"
            )
        drift = goals["drift_signals"]
        lines += [
            "",
            f"{drift['title'].capitalize()}: **{'pass' if drift['passed'] else 'FAIL'}** "
            "(the table below).",
        ]
    else:
        lines += ["A partial run (--only): no goals scored."]
    if report.get("ratios"):
        lines += ["", "| estimator | ratio | c=1 | c=16 | c=64 |", "|---|---|---:|---:|---:|"]
        for family, found in report["ratios"].items():
            for key, by_c in found["values"].items():
                values = " | ".join(_figure(by_c[f"c{c}"]) for c in CONCURRENCY)
                lines.append(f"| {family} | {key} | {values} |")
    lines.append("")
    if report.get("monitoring_cost"):
        lines += [
            f"Drift signals on (the default) against off (`MODELOPS_MONITORING=off`), "
            f"{COST_FAMILY}'s stack:",
            "",
            "| workload | c | server CPU µs/req on | off | added | req/s on | off | on ÷ off |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for workload, by_c in report["monitoring_cost"].items():
            for key, cost in by_c.items():
                figures = " | ".join(
                    f"{cost[k]:.0f}" for k in ("cpu_us_on", "cpu_us_off", "cpu_us_added")
                )
                rates = f"{cost['rps_on']:.0f} | {cost['rps_off']:.0f}"
                lines.append(
                    f"| {workload} | {key[1:]} | {figures} | {rates} "
                    f"| {cost['rps_on_over_off']:.2f} |"
                )
        lines.append("")
    lines += [
        "| estimator | target | workload | c | req/s | rows/s | p50 ms | p99 ms "
        "| server CPU µs/req | errors |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['family'] or '-'} | {r['target']} | {r['workload']} | {r['concurrency']} "
            f"| {r['rps']:.0f} | {r['rows_per_s']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
            f"| {r['cpu_us_per_request']:.0f} | {r['errors']} |"
        )
    return "\n".join([*lines, ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "bench")
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument(
        "--mlserver-venv",
        type=Path,
        default=mlserver.VENV,
        help="the venv MLServer runs from (make mlserver writes the default)",
    )
    parser.add_argument(
        "--mlserver-workers",
        type=int,
        default=mlserver.PARALLEL_WORKERS,
        help="MLServer's parallel_workers (default: the best measured, bench/mlserver.py)",
    )
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated cells to run (e.g. random_forest/stack:predict-1000,floor:"
        "pipeline-constant-1); a partial run writes only-<time>.json/.md, no goals, and leaves "
        "latest.* alone",
    )
    args = parser.parse_args(argv)
    only = frozenset(cell.strip() for cell in args.only.split(",") if cell.strip())
    if args.duration < 1:
        print(f"--duration must be at least 1 second, got {args.duration}", file=sys.stderr)
        return 2
    if args.mlserver_workers < 0:
        print(f"--mlserver-workers must be 0 or more, got {args.mlserver_workers}", file=sys.stderr)
        return 2
    try:
        check_cells(only)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    if shutil.which("wrk") is None:
        print("wrk not found: run `make serving-prereqs`", file=sys.stderr)
        return 1
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    try:
        results = measure(
            args.out / "models", args.duration, only, args.mlserver_venv, args.mlserver_workers
        )
    except (StackError, readiness.NotReadyError, ConversionError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    cost = monitoring_cost(results)
    measured = {} if only else ratios(results)
    report = {
        "started": started,
        "duration_s": args.duration,
        "loadavg_before": " ".join(load_before),
        "loadavg_after": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        "machine": machine(),
        "results": results,
        "mlserver": {
            "parallel_workers": args.mlserver_workers,
            "libraries": mlserver.versions(args.mlserver_venv),
        },
        "monitoring_cost": cost,
        "ratios": measured,
        "goals": score(measured, cost) if measured else {},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = ("only-" if only else "bench-") + started.replace(":", "")
    for name in (stem,) if only else (stem, "latest"):
        (args.out / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
        (args.out / f"{name}.md").write_text(markdown(report))
    print(markdown(report))
    print(f"written: {args.out / stem}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
