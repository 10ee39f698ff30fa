"""The route table: every path the app answers, declared once.

``ROUTES`` lists each operation with its method, its path rules (``<arg>`` is one non-empty path
segment, as in werkzeug's rules) and its handler, a plain function ``(ServerState, Call) ->
Answer`` (``serving.state``). ``serving.pipeline`` dispatches every request through ``Router``
built from this table; nothing else declares paths. serving/openapi.json documents the same paths
and methods (a test holds them equal), and ``rule`` strings are the ``endpoint`` label of the
request metrics. A path outside the table is the pipeline's 404; a method a path's rule lacks,
its 405.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from serving.errors import ApiError
from serving.protocols import records, v2
from serving.state import Answer, Call, ServerState

Handler = Callable[[ServerState, Call], Answer]
OPENAPI = Path(__file__).resolve().parent / "openapi.json"


@dataclass(frozen=True)
class Route:
    """One operation: ``method`` on any of ``rules``, answered by ``handler``."""

    method: str
    rules: tuple[str, ...]
    handler: Handler


def metrics(server: ServerState, call: Call) -> Answer:
    """``GET /metrics``: the Prometheus text format, merged across uWSGI workers."""
    exporter = server.metrics
    return Answer(exporter.exposition(), content_type=exporter.content_type)


@cache
def _openapi_document() -> bytes:
    return OPENAPI.read_bytes()


def openapi(server: ServerState, call: Call) -> Answer:
    """``GET /openapi.json``: the API description kept in the repository."""
    return Answer(_openapi_document())


VERSIONED = "/versions/<version>"
ROUTES: tuple[Route, ...] = (
    Route("POST", ("/predict",), records.predict),
    Route("GET", ("/v2/health/live",), v2.live),
    Route("GET", ("/v2/health/ready",), v2.ready),
    Route("GET", ("/v2", "/v2/"), v2.server_metadata),
    Route("GET", ("/v2/models/<name>", f"/v2/models/<name>{VERSIONED}"), v2.model_metadata),
    Route(
        "GET", ("/v2/models/<name>/ready", f"/v2/models/<name>{VERSIONED}/ready"), v2.model_ready
    ),
    Route("POST", ("/v2/models/<name>/infer", f"/v2/models/<name>{VERSIONED}/infer"), v2.infer),
    Route("GET", ("/metrics",), metrics),
    Route("GET", ("/openapi.json",), openapi),
)


@dataclass(frozen=True)
class Target:
    """What a path rule leads to: by method, the route and the rule (the metrics label)."""

    rule: str
    by_method: dict[str, Route]
    # Dynamic rules only: the literal segments by position, and the argument names by position.
    literals: tuple[tuple[int, str], ...] = ()
    args: tuple[tuple[int, str], ...] = ()


class Router:
    """Matches a method and a path against a route table.

    Static paths are one dict lookup; rules with arguments are compared segment by segment among
    those with as many segments (fewest arguments first). HEAD is answered by a GET route.
    """

    def __init__(self, routes: tuple[Route, ...]) -> None:
        targets: dict[str, Target] = {}
        for route in routes:
            for rule in route.rules:
                target = targets.get(rule)
                if target is None:
                    target = targets[rule] = _target(rule)
                if route.method in target.by_method:
                    raise ValueError(f"{route.method} {rule} is declared twice")
                target.by_method[route.method] = route
        self.targets = tuple(targets.values())
        self._static = {t.rule: t for t in self.targets if not t.args}
        self._dynamic: dict[int, list[Target]] = {}
        for target in sorted((t for t in self.targets if t.args), key=lambda t: len(t.args)):
            self._dynamic.setdefault(target.rule.count("/"), []).append(target)

    def match(self, method: str, path: str) -> tuple[Route, str, dict[str, str]] | None:
        """The route, rule and path arguments for a request; None when no rule has this path;
        a 405 ``ApiError`` (with ``Allow``) when one has it, but not for this method."""
        target = self._static.get(path)
        args: dict[str, str] = {}
        if target is None:
            candidates = self._dynamic.get(path.count("/"))
            if not candidates:
                return None
            parts = path.split("/")
            for candidate in candidates:
                if all(parts[i] == text for i, text in candidate.literals) and all(
                    parts[i] for i, _ in candidate.args
                ):
                    target = candidate
                    args = {name: parts[i] for i, name in candidate.args}
                    break
            else:
                return None
        route = target.by_method.get(method)
        if route is None and method == "HEAD":
            route = target.by_method.get("GET")
        if route is None:
            allowed = sorted({*target.by_method, *(["HEAD"] if "GET" in target.by_method else [])})
            raise ApiError(405, "method not allowed", headers={"Allow": ", ".join(allowed)})
        return route, target.rule, args


def _target(rule: str) -> Target:
    parts = rule.split("/")
    literals = tuple((i, p) for i, p in enumerate(parts) if not p.startswith("<"))
    args = tuple((i, p[1:-1]) for i, p in enumerate(parts) if p.startswith("<"))
    return Target(rule, {}, literals if args else (), args)
