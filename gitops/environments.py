"""The environments of environments.toml, in promotion order: the one list of them.

Role: every tool that needs an environment's branch, GTO stage, namespace or overlay asks here
(``gitops.check_pr_order``, ``gitops.stage_for_branch``, ``gitops.register``,
``gitops.set_image``; the tests of the workflows, overlays and AppProject). Contract: the file is
read once per process and checked: a missing or unknown key, a duplicate name, branch or stage,
or a value that is not a plain string fails with :class:`EnvironmentsError`, one line naming the
entry and the key.
"""

from __future__ import annotations

import functools
import re
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FILE = ROOT / "environments.toml"
NAME = re.compile(r"[a-z][a-z0-9-]*")


class EnvironmentsError(ValueError):
    """environments.toml is not a valid list of environments (the message names the key)."""


@dataclass(frozen=True)
class Environment:
    """One environment: where its changes merge, what its model is called, where it runs."""

    name: str  # kustomize/overlays/<name>, Argo CD Application model-<name>
    branch: str  # the Git branch whose merges promote to it
    stage: str  # its GTO stage
    namespace: str  # the Kubernetes namespace its overlay deploys to

    @property
    def overlay(self) -> str:
        """The overlay directory, relative to the repository root."""
        return f"kustomize/overlays/{self.name}"


KEYS = tuple(field.name for field in fields(Environment))


def parse(text: str, origin: str = "environments.toml") -> tuple[Environment, ...]:
    """The environments a TOML document lists, in order; EnvironmentsError when malformed."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise EnvironmentsError(f"{origin}: not valid TOML ({error})") from None
    entries = document.get("environment")
    if set(document) != {"environment"} or not isinstance(entries, list) or not entries:
        raise EnvironmentsError(f"{origin}: must hold [[environment]] tables and nothing else")
    found: list[Environment] = []
    for index, entry in enumerate(entries, start=1):
        where = f"{origin}: environment {index}"
        unknown = sorted(set(entry) - set(KEYS))
        if unknown:
            raise EnvironmentsError(f"{where}: unknown key {unknown[0]} (known: {', '.join(KEYS)})")
        for key in KEYS:
            value = entry.get(key)
            if not isinstance(value, str) or not value:
                raise EnvironmentsError(f"{where}: {key} must be a non-empty string, got {value!r}")
        if not NAME.fullmatch(entry["name"]):
            raise EnvironmentsError(
                f"{where}: name must match {NAME.pattern}, got {entry['name']!r}"
            )
        found.append(Environment(**{key: entry[key] for key in KEYS}))
    for key in KEYS:
        values = [getattr(env, key) for env in found]
        duplicates = sorted({value for value in values if values.count(value) > 1})
        if duplicates:
            raise EnvironmentsError(f"{origin}: {key} {duplicates[0]!r} is used twice")
    return tuple(found)


@functools.cache
def load(path: Path = FILE) -> tuple[Environment, ...]:
    """The environments of PATH (default: the repository's environments.toml), in order."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EnvironmentsError(f"{path}: file not found") from None
    return parse(text, path.name)


def by_branch(branch: str) -> Environment | None:
    """The environment a merge into BRANCH (``refs/heads/`` allowed) promotes to, if any."""
    branch = branch.removeprefix("refs/heads/")
    return next((env for env in load() if env.branch == branch), None)


def by_name(name: str) -> Environment | None:
    return next((env for env in load() if env.name == name), None)


def named(name: str) -> Environment:
    """The environment NAME; EnvironmentsError listing the names when there is none."""
    found = by_name(name)
    if found is None:
        names = ", ".join(env.name for env in load())
        raise EnvironmentsError(f"no environment {name!r} (one of {names})")
    return found


def before(env: Environment) -> Environment:
    """The environment before ENV; EnvironmentsError for the first, which has none."""
    found = previous(env)
    if found is None:
        raise EnvironmentsError(f"{env.name} is the first environment: nothing comes before it")
    return found


def previous(env: Environment) -> Environment | None:
    """The environment before ENV in the promotion order (None for the first)."""
    order = load()
    index = order.index(env)
    return order[index - 1] if index else None


def order_text() -> str:
    """The branch order, e.g. ``experiment/* -> main -> staging -> production``."""
    return " -> ".join(["experiment/*", *(env.branch for env in load())])
