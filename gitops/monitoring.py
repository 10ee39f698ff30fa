"""Turn monitoring on in environments' overlays: the change docs/monitoring.md ("Turning them on")
describes, made by a tool.

usage: python -m gitops.monitoring on [ENV ...]
       python -m gitops.monitoring status [ENV ...]

Role: an environment's Prometheus Operator objects (a ServiceMonitor and a PrometheusRule whose
rules read only the environment's namespace) are the kustomize Component ``kustomize/monitoring/
<env>`` that ``make render`` generates; an overlay deploys them once its ``kustomization.yaml``
lists that Component under ``components:``. ``on`` adds that entry to each overlay (ENV, or every
environment of environments.toml), keeping the file's comments and layout, then re-renders the
rendered files present here (as ``python -m gitops.rendered`` does; on ``main``: dev's). Commit
the result on ``main`` by pull request: the promotions carry the overlays to staging and prod.
Turn it on in every environment at once: the ``manifests`` gate compares two environments'
renderings, and a PrometheusRule only one of them has stops the promotion.
``status`` prints ``<env>=on`` or ``<env>=off`` for each.

Callers: people (docs/monitoring.md), ``make demo MONITORING=on`` (gitops.demo), the promotion
tests. It works in the current directory, the repository's root.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import yaml

from gitops import environments, rendered
from gitops.cli import OneLineParser, ToolError, run_main

#: Where ``make render`` writes each environment's monitoring Component (scripts/render-base.py).
COMPONENTS = "kustomize/monitoring"
COMMENT = "# The Prometheus Operator's objects of this environment (docs/monitoring.md).\n"


def component(env: environments.Environment) -> str:
    """ENV's monitoring Component as its overlay's ``components:`` lists it: the path from the
    overlay's directory."""
    return os.path.relpath(f"{COMPONENTS}/{env.name}", env.overlay)


def _kustomization(root: Path, env: environments.Environment) -> tuple[Path, dict[str, object]]:
    path = root / env.overlay / "kustomization.yaml"
    if not path.is_file():
        raise ToolError(f"no overlay {env.overlay} in {root}")
    if not (root / COMPONENTS / env.name / "kustomization.yaml").is_file():
        raise ToolError(f"no monitoring component {COMPONENTS}/{env.name}: run make render")
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ToolError(f"{env.overlay}/kustomization.yaml is not valid YAML: {error}") from None
    return path, document if isinstance(document, dict) else {}


def is_on(root: Path, env: environments.Environment) -> bool:
    """Whether ENV's overlay in the checkout at ROOT lists its monitoring Component."""
    _, document = _kustomization(root, env)
    listed = document.get("components") or []
    return isinstance(listed, list) and component(env) in listed


def turn_on(root: Path, env: environments.Environment) -> bool:
    """List ENV's monitoring Component in its overlay at ROOT; False when it already was."""
    path, document = _kustomization(root, env)
    if is_on(root, env):
        return False
    text = path.read_text(encoding="utf-8")
    entry = f"- {component(env)}\n"
    if "components" in document:  # a block list at the top level: the entry goes first in it
        lines = text.splitlines(keepends=True)
        where = [i for i, line in enumerate(lines) if line.rstrip() == "components:"]
        if len(where) != 1:
            raise ToolError(
                f"{env.overlay}/kustomization.yaml: components is not a block list; add "
                f"{entry.strip()} to it by hand"
            )
        lines.insert(where[0] + 1, entry)
        text = "".join(lines)
    else:
        text = text + ("" if text.endswith("\n") else "\n") + COMMENT + "components:\n" + entry
    path.write_text(text, encoding="utf-8")
    if not is_on(root, env):  # the edit must read back as the entry, nothing else
        raise ToolError(f"{env.overlay}/kustomization.yaml: could not add {entry.strip()}")
    return True


def monitored_copy(root: Path, dest: Path) -> list[Path]:
    """A copy of ROOT's ``kustomize/`` in DEST with monitoring on in every environment's overlay
    (``turn_on``); the copied overlays, in environments.toml's order. What ``make validate``
    checks besides the overlays as they are (scripts/validate-manifests.py,
    scripts/validate-policies.py): the ServiceMonitor, the PrometheusRule and the retraining relay
    an overlay deploys once monitoring is on."""
    shutil.copytree(root / "kustomize", dest / "kustomize")
    envs = list(environments.load())
    for env in envs:
        turn_on(dest, env)
    return [dest / env.overlay for env in envs]


def main(argv: Sequence[str]) -> int:
    names = [env.name for env in environments.load()]
    parser = OneLineParser(prog="python -m gitops.monitoring", description=__doc__)
    parser.add_argument("action", choices=("on", "status"))
    parser.add_argument("envs", metavar="ENV", nargs="*", help=", ".join(names))
    args = parser.parse_args(argv)
    unknown = [name for name in args.envs if name not in names]
    if unknown:
        parser.error(f"unknown environment {unknown[0]!r} (one of {', '.join(names)})")
    root = Path.cwd()
    chosen = [environments.named(n) for n in args.envs] or list(environments.load())
    if args.action == "status":
        for env in chosen:
            print(f"{env.name}={'on' if is_on(root, env) else 'off'}")
        return 0
    changed = [env for env in chosen if turn_on(root, env)]
    for env in chosen:
        state = "turned on" if env in changed else "already on"
        print(f"monitoring {state} in {env.overlay} ({component(env)})")
    return rendered.main([]) if changed else 0


if __name__ == "__main__":
    run_main(main)
