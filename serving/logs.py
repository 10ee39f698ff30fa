"""Structured logs: one JSON object per line on stderr (uWSGI collects the workers' stderr).

A single ``os.write`` per line keeps lines whole across worker processes (< PIPE_BUF) and costs a
few microseconds, which matters on the request path.
"""

from __future__ import annotations

import os
import time
from typing import Any

import orjson


def log(event: str, level: str = "info", **fields: Any) -> None:
    now = time.time()
    record = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
        + f".{int(now % 1 * 1000):03d}Z",
        "level": level,
        "event": event,
        **fields,
    }
    os.write(2, orjson.dumps(record, default=str) + b"\n")
