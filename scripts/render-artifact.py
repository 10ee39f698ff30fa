#!/usr/bin/env python3
"""Write the model's name and description from training/params.yaml (``artifact.name``,
``artifact.description``: the one source of both) into the static YAML that must carry them.

- charts/model/values.yaml and charts/model/ci/provenance-values.yaml: ``model.name`` (from there
  ``make render`` carries it on into kustomize/base, kustomize/monitoring/<env>, the chart README
  and rendered/<env>: scripts/render-base.py, scripts/render-chart-readme.py, gitops.rendered);
- argocd/appproject.yaml: ``spec.description`` (the name, the description and the environments of
  environments.toml).

Only the value of each key changes: the files' comments and layout stay. ``make render`` runs it
first; ``--check`` (``make validate`` and tests/deploy/test_render.py) writes nothing and exits 1,
naming the files and keys, when one of them disagrees with params.yaml. A params.yaml the
pipeline would refuse is one ``error:`` line and exit 1.

usage: scripts/render-artifact.py [--root DIR] [--check]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from gitops import environments  # noqa: E402 (after the path)
from training.params import ArtifactParams, ParamsError, load_artifact  # noqa: E402

PARAMS = "training/params.yaml"
KEY_LINE = re.compile(r"(?P<indent> *)(?P<key>[A-Za-z_][\w-]*):(?P<rest>.*)")
#: A trailing YAML comment after a value (a space, then #).
COMMENT = re.compile(r"\s+#.*$")


@dataclass(frozen=True)
class Target:
    """One key of one file (relative to the repository) and the value params.yaml gives it."""

    path: str
    key: str  # dotted: model.name
    value: Callable[[ArtifactParams, list[str]], str]  # a YAML scalar, as written


def _appproject_description(artifact: ArtifactParams, envs: list[str]) -> str:
    where = ", ".join(envs[:-1]) + f" and {envs[-1]}" if len(envs) > 1 else envs[0]
    text = f"The {artifact.name} model server ({artifact.description}) in {where}."
    return json.dumps(text)  # a JSON string is a YAML double-quoted scalar


TARGETS = (
    Target("charts/model/values.yaml", "model.name", lambda a, _: a.name),
    Target("charts/model/ci/provenance-values.yaml", "model.name", lambda a, _: a.name),
    Target("argocd/appproject.yaml", "spec.description", _appproject_description),
)


def set_value(text: str, key: str, value: str) -> str:
    """TEXT with the scalar at the dotted KEY replaced by VALUE (as written), its line's trailing
    comment and every other line kept; ValueError unless exactly one line holds that key with a
    scalar value."""
    lines = text.splitlines(keepends=True)
    path: list[tuple[int, str]] = []  # (indent, key) of the mappings the line is inside
    found = []
    for index, line in enumerate(lines):
        match = KEY_LINE.fullmatch(line.rstrip("\n"))
        if match is None or line.lstrip().startswith("#"):
            continue
        indent = len(match["indent"])
        while path and path[-1][0] >= indent:
            path.pop()
        path.append((indent, match["key"]))
        if ".".join(k for _, k in path) != key:
            continue
        rest = match["rest"]
        comment = COMMENT.search(rest) if not rest.strip().startswith(('"', "'")) else None
        if not rest.strip() or rest.strip().startswith("#"):
            raise ValueError(f"{key} is a mapping or empty, not a value")
        tail = comment.group(0) if comment else ""
        lines[index] = f"{match['indent']}{match['key']}: {value}{tail}\n"
        found.append(index)
    if len(found) != 1:
        raise ValueError(f"{len(found)} lines hold {key}, not one")
    return "".join(lines)


def rendered(root: Path) -> dict[str, str]:
    """Each target file (relative path) as params.yaml says it should read."""
    artifact = load_artifact(root / PARAMS)
    envs = [env.name for env in environments.load(root / "environments.toml")]
    texts: dict[str, str] = {}
    for target in TARGETS:
        text = texts.get(target.path) or (root / target.path).read_text(encoding="utf-8")
        try:
            texts[target.path] = set_value(text, target.key, target.value(artifact, envs))
        except ValueError as error:
            raise ValueError(f"{target.path}: {error}") from None
    return texts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository (default: this)")
    parser.add_argument("--check", action="store_true", help="write nothing; fail when stale")
    args = parser.parse_args(argv)
    try:
        fresh = rendered(args.root)
    except (ParamsError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    stale = [p for p, text in fresh.items() if (args.root / p).read_text(encoding="utf-8") != text]
    if args.check:
        if stale:
            keys = ", ".join(f"{t.path} ({t.key})" for t in TARGETS if t.path in stale)
            print(f"error: {keys} disagree with {PARAMS}'s artifact: run make render",
                  file=sys.stderr)  # fmt: skip
            return 1
        return 0
    for path in stale:
        (args.root / path).write_text(fresh[path], encoding="utf-8")
        print(f"rendered {path} from {PARAMS}'s artifact")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
