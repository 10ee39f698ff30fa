"""The estimator families, one module each, in one registry.

Every module of this package whose name does not start with ``_`` is a family: importing the
package imports each of them (in name order), and each registers its :class:`Family` with
:func:`register`. Adding a family is one new file here plus its section in params.yaml
(``train.<name>``); nothing else names the families. The registry's readers:
``training.params.load_train`` (``train.estimator`` and every section's keys and checks),
training/train.py (the pipeline), training/portable.py (the ONNX graph of the pipeline's last
step), ``bench.models`` (one model per family) and ``python -m training.familydocs`` (the table
in docs/training.md). A family defined elsewhere (a test's) registers through the same
:func:`register` and leaves with :func:`unregister`.
"""

from __future__ import annotations

import importlib
import pkgutil
import re

from training.families._family import Boolean, Choice, Family, Integer, Number, Param

__all__ = [
    "Boolean",
    "Choice",
    "Family",
    "Integer",
    "Number",
    "Param",
    "by_estimator",
    "for_task",
    "get",
    "names",
    "register",
    "unregister",
]

#: A family's name is a params key and a file name: lowercase words joined by ``_``.
NAME = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")

_REGISTRY: dict[str, Family] = {}


def register(family: Family) -> Family:
    """Add ``family`` to the registry and return it; ValueError when its name is not a params
    key (lowercase words joined by ``_``), is ``estimator``, or is taken, or when one of its
    estimator classes already belongs to another family."""
    if not NAME.fullmatch(family.name) or family.name == "estimator":
        raise ValueError(
            f"family name {family.name!r} must be lowercase words joined by '_' (a key of "
            "train in params.yaml), and not 'estimator'"
        )
    if family.name in _REGISTRY:
        raise ValueError(f"family {family.name!r} is already registered")
    for other in _REGISTRY.values():
        shared = [cls.__name__ for cls in family.estimators if cls in other.estimators]
        if shared:
            raise ValueError(
                f"family {family.name!r}: {', '.join(shared)} is already converted by family "
                f"{other.name!r}"
            )
    if not family.estimators:
        raise ValueError(f"family {family.name!r} must list the estimator classes it converts")
    if not family.tasks:
        raise ValueError(f"family {family.name!r} must build a classification or a regression")
    _REGISTRY[family.name] = family
    return family


def unregister(name: str) -> None:
    """Remove the family ``name`` (a test's, when the test ends); KeyError if it is unknown."""
    del _REGISTRY[name]


def names() -> tuple[str, ...]:
    """The registered families' names, in name order (what ``train.estimator`` may be)."""
    return tuple(sorted(_REGISTRY))


def for_task(task: str) -> tuple[str, ...]:
    """The registered families that train for ``task`` (``data.task``), in name order."""
    return tuple(name for name in names() if task in _REGISTRY[name].tasks)


def get(name: str) -> Family:
    """The family ``name``; KeyError naming the registered ones for another."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"no estimator family {name!r} (registered: {', '.join(names())})") from None


def by_estimator(estimator: object) -> Family | None:
    """The family whose ``to_onnx`` converts this fitted estimator (by its exact class), if any."""
    for family in _REGISTRY.values():
        if type(estimator) in family.estimators:
            return family
    return None


def _discover() -> None:
    """Import every family module of this package (each registers itself)."""
    for module in sorted(info.name for info in pkgutil.iter_modules(__path__)):
        if not module.startswith("_"):
            importlib.import_module(f"{__name__}.{module}")


_discover()
