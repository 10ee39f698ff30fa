"""`make bench`: wrk against the serving stack and three references, in one run.

Targets (each started by this module, measured cell by cell, stopped; a cell is target:workload):
- ``stack``: Nginx → uWSGI → Flask serving the model (``devstack.stack``): ``predict-1``,
  ``predict-1000`` (/predict, records) and ``infer-1000`` (v2 infer, one [1000, 30] tensor);
- ``ceiling``: the same Nginx config answering a constant itself, no upstream (``constant-1``);
- ``floor``: the same stack with ``bench.floor`` loaded, answering a constant for the same body
  from a Flask route (``flask-constant-1``) and in front of Flask (``wsgi-constant-1``);
- ``fastapi``: the same model behind FastAPI + uvicorn (``bench.fastapi_app``), 2 workers
  (``predict-1``, ``predict-1000``).

Every cell at concurrency 1, 16 and 64. Server CPU per request is the CPU time (user + system,
from /proc) of the target's processes during the run, divided by the requests answered. Writes
``<out>/bench-<time>.json`` and ``.md`` (and ``latest.*``); ``--only`` runs some cells, without
ratios, into ``only-<time>.*``. docs/benchmarks.md describes the method and the targets.

    python -m bench.run --model-dir training/model --out out/bench [--duration 5] [--only CELLS]
"""

from __future__ import annotations

import argparse
import contextlib
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack.stack import NGINX_START, Stack, StackError, free_port, nginx_environment
from serving import readiness

ROOT = Path(__file__).resolve().parents[1]
CONCURRENCY = (1, 16, 64)
BATCH_ROWS = 1000
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
WRK_REPORT = """
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "errors": %d, "p50_us": %d, "p99_us": %d}\\n',
    summary.requests, summary.duration, errors, latency:percentile(50), latency:percentile(99)))
end
"""


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


@contextlib.contextmanager
def stack_target(model_dir: Path, **env: str) -> Iterator[tuple[str, list[int]]]:
    with Stack(model_dir, env={"PYTHONPATH": str(ROOT), **env}) as stack:
        assert stack.uwsgi is not None and stack.nginx is not None
        yield stack.url, [stack.uwsgi.pid, stack.nginx.pid]


@contextlib.contextmanager
def process_target(
    name: str,
    argv: list[str],
    env: dict[str, str],
    log_path: Path,
    port: int,
    ready_path: str,
    stop: int,
) -> Iterator[tuple[str, list[int]]]:
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
            process.send_signal(stop)
            process.wait(30)


@contextlib.contextmanager
def ceiling_target(scratch: Path) -> Iterator[tuple[str, list[int]]]:
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
def fastapi_target(model_dir: Path, scratch: Path) -> Iterator[tuple[str, list[int]]]:
    port = free_port()
    env = dict(os.environ, MODELOPS_MODEL_DIR=str(model_dir.resolve()), PYTHONPATH=str(ROOT))
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
    log = scratch / "uvicorn.log"
    with process_target("FastAPI", argv, env, log, port, "/docs", signal.SIGINT) as target:
        yield target


def workloads(model_dir: Path) -> dict[str, Workload]:
    from sklearn.datasets import load_breast_cancer

    metadata = json.loads((model_dir / "metadata.json").read_text())
    features = [f["name"] for f in metadata["features"]]
    data = load_breast_cancer().data
    rows = [
        dict(zip(features, data[i % len(data)].tolist(), strict=True)) for i in range(BATCH_ROWS)
    ]
    name = metadata["name"]
    tensor = {
        "name": "input-0",
        "shape": [BATCH_ROWS, len(features)],
        "datatype": "FP64",
        "data": [v for i in range(BATCH_ROWS) for v in data[i % len(data)].tolist()],
    }
    one = json.dumps({"instances": rows[:1]}).encode()
    return {
        "predict-1": Workload("predict-1", "/predict", one, 1),
        "predict-1000": Workload(
            "predict-1000", "/predict", json.dumps({"instances": rows}).encode(), BATCH_ROWS
        ),
        "infer-1000": Workload(
            "infer-1000",
            f"/v2/models/{name}/infer",
            json.dumps({"inputs": [tensor]}).encode(),
            BATCH_ROWS,
        ),
        "flask-constant-1": Workload("flask-constant-1", "/bench/flask-constant", one, 1),
        "wsgi-constant-1": Workload("wsgi-constant-1", "/bench/wsgi-constant", one, 1),
        "constant-1": Workload("constant-1", "/", one, 1),
    }


Starter = Callable[[Path], contextlib.AbstractContextManager[tuple[str, list[int]]]]


def measure(
    model_dir: Path, duration: int, only: frozenset[str] = frozenset()
) -> list[dict[str, Any]]:
    """Every cell of the plan, or only the ``target:workload`` pairs in ``only``."""
    loads = workloads(model_dir)
    plan: list[tuple[str, Starter, list[str]]] = [
        ("stack", lambda s: stack_target(model_dir), ["predict-1", "predict-1000", "infer-1000"]),
        (
            "floor",
            lambda s: stack_target(model_dir, MODELOPS_WSGI_MODULE="bench.floor:application"),
            ["flask-constant-1", "wsgi-constant-1"],
        ),
        ("ceiling", ceiling_target, ["constant-1"]),
        ("fastapi", lambda s: fastapi_target(model_dir, s), ["predict-1", "predict-1000"]),
    ]
    unknown = sorted(only - {f"{target}:{name}" for target, _, names in plan for name in names})
    if unknown:
        cells = ", ".join(f"{target}:{name}" for target, _, names in plan for name in names)
        raise ValueError(f"unknown cell {unknown[0]!r} in --only; the cells: {cells}")
    results = []
    with tempfile.TemporaryDirectory(prefix="modelops-bench-") as tmp:
        scratch = Path(tmp)
        for target, start, all_names in plan:
            names = [n for n in all_names if not only or f"{target}:{n}" in only]
            if not names:
                continue
            with start(scratch) as (url, roots):
                for name in names:
                    for concurrency in CONCURRENCY:
                        row = wrk(url, loads[name], concurrency, duration, roots, scratch)
                        row["target"] = target
                        results.append(row)
                        print(
                            f"  {target:8} {name:17} c={concurrency:<3} {row['rps']:9.0f} req/s  "
                            f"p99 {row['p99_ms']:7.2f} ms  "
                            f"cpu {row['cpu_us_per_request']:6.0f} us/req  "
                            f"errors {row['errors']}",
                            flush=True,
                        )
    return results


def ratios(results: list[dict[str, Any]]) -> dict[str, Any]:
    def get(target: str, workload: str, c: int) -> dict[str, Any]:
        return next(
            r
            for r in results
            if r["target"] == target and r["workload"] == workload and r["concurrency"] == c
        )

    out: dict[str, Any] = {}
    for c in CONCURRENCY:
        stack, fastapi = get("stack", "predict-1", c), get("fastapi", "predict-1", c)
        out[f"c{c}"] = {
            "rps_vs_fastapi_1row": stack["rps"] / fastapi["rps"],
            "rps_vs_fastapi_1000rows": get("stack", "predict-1000", c)["rps"]
            / get("fastapi", "predict-1000", c)["rps"],
            "rps_vs_ceiling": stack["rps"] / get("ceiling", "constant-1", c)["rps"],
            "cpu_vs_flask_floor": stack["cpu_us_per_request"]
            / get("floor", "flask-constant-1", c)["cpu_us_per_request"],
            "cpu_vs_wsgi_floor": stack["cpu_us_per_request"]
            / get("floor", "wsgi-constant-1", c)["cpu_us_per_request"],
            "rows_per_s_records_1000": get("stack", "predict-1000", c)["rows_per_s"],
            "rows_per_s_v2_tensor_1000": get("stack", "infer-1000", c)["rows_per_s"],
        }
    out["p99_ms_c1_1row"] = get("stack", "predict-1", 1)["p99_ms"]
    return out


def markdown(report: dict[str, Any]) -> str:
    machine = report["machine"]
    lines = [
        f"# Serving benchmark {report['started']}",
        "",
        f"Machine: {machine['cpus']} CPUs, load average before {machine['loadavg_before']}, "
        f"after {machine['loadavg_after']}; wrk shares the cores; {report['duration_s']} s a cell.",
        "",
        "| target | workload | c | req/s | rows/s | p50 ms | p99 ms | server CPU µs/req | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['target']} | {r['workload']} | {r['concurrency']} | {r['rps']:.0f} "
            f"| {r['rows_per_s']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
            f"| {r['cpu_us_per_request']:.0f} | {r['errors']} |"
        )
    if not report["ratios"]:
        return "\n".join([*lines, "", "A partial run (--only): no ratios.", ""])
    lines += ["", "| ratio | c=1 | c=16 | c=64 |", "|---|---:|---:|---:|"]
    keys = list(report["ratios"]["c1"])
    for key in keys:
        cells = []
        for c in CONCURRENCY:
            value = report["ratios"][f"c{c}"][key]
            cells.append(f"{value:,.0f}" if value > 1000 else f"{value:.2f}")
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    lines += ["", f"p99 at c=1, one row: {report['ratios']['p99_ms_c1_1row']:.2f} ms", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=ROOT / "training" / "model")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "bench")
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated target:workload cells to run (e.g. stack:predict-1000); a partial "
        "run writes only-<time>.json/.md, no ratios, and leaves latest.* alone",
    )
    args = parser.parse_args(argv)
    only = frozenset(cell.strip() for cell in args.only.split(",") if cell.strip())
    if not (args.model_dir / "metadata.json").is_file():
        print(f"no model in {args.model_dir}: run `make train` first", file=sys.stderr)
        return 1
    if shutil.which("wrk") is None:
        print("wrk not found: run `make serving-prereqs`", file=sys.stderr)
        return 1
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    try:
        results = measure(args.model_dir, args.duration, only)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    except (StackError, readiness.NotReadyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    report = {
        "started": started,
        "duration_s": args.duration,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "loadavg_before": " ".join(load_before),
            "loadavg_after": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        },
        "results": results,
        "ratios": {} if only else ratios(results),
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
