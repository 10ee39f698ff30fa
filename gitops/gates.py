"""The gates a release passes before it is proposed to an environment.

Role: ``gitops.promote`` asks every gate, in this order, before it creates anything; the first
refusal ends the promotion with one line ``gate <name>: <why>`` and nothing is tagged, pushed or
opened. Every gate reads the *protected* branches and the registries (GTO tags, the evidence
App's check runs), never the promotion's own pull request: the thresholds and the tolerance come
from the target environment's branch, so a pull request that lowers them cannot let its own model
through, and the evidence App is the one evidence.toml names there.

    image       the release's image digest has a build attestation in the registry, signed by CI's
                key (evidence.toml [images] on the target branch), for this digest, from a commit
                of main (gitops.attestation)
    quality     the release's metrics (training/metrics.json at its GTO version tag) meet the
                thresholds of training/params.yaml (evaluate.thresholds) on the target branch
    regression  no metric is more than promotion.regression_tolerance below that of the model the
                target environment runs now (its rendered manifests' model version); an error
                (a regression's rmse, mae: lower is better) may grow by at most that fraction
                of the running model's
    stage       the model version holds the previous environment's GTO stage
    smoke       the newest smoke test of the previous environment's rendered manifests passed and
                names this release, recorded by the evidence App (gitops.evidence)
    manifests   the target's rendering differs from the previous environment's only in the
                environment fields (gitops.rendered.ENVIRONMENT_FIELDS)
    untried     (asked by gitops.promote after these, :func:`untried`) no setting of the target's
                rendering ran nowhere before (gitops.rendered.untried), or the pull request
                carries ACKNOWLEDGE_LABEL

Contract: each gate returns a one-line figure of what it checked when it passes (for the pull
request body) and raises :class:`GateError` when it does not.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gitops import attestation, environments, evidence, rendered
from gitops.cli import ToolError, run
from gitops.git import show
from training import params

PARAMS = "training/params.yaml"
METRICS = "training/metrics.json"


class GateError(ToolError):
    """A gate refused the release; the message is ``gate <name>: <why>``."""

    def __init__(self, gate: str, why: str) -> None:
        super().__init__(f"gate {gate}: {why}")
        self.gate = gate


@dataclass(frozen=True)
class Candidate:
    """A release on its way from SOURCE (the previous environment) to TARGET."""

    source: environments.Environment
    target: environments.Environment
    source_ref: str  # the previous environment's branch (remote-tracking ref)
    target_ref: str  # the target environment's branch (remote-tracking ref)
    release: rendered.Release  # what the previous environment runs
    source_text: str  # its rendered manifests
    target_text: str  # the target's rendering of the same release
    current: rendered.Release | None  # what the target runs now, if anything


def _params(ref: str, loader: Callable[[Path], Any], what: str) -> Any:
    text = show(ref, PARAMS)
    if text is None:
        raise GateError(what, f"{ref} has no {PARAMS}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "params.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            return loader(path)
        except params.ParamsError as error:
            why = f"{PARAMS} on {ref}: {error}".replace(str(path), PARAMS)
            raise GateError(what, why) from None


def metrics(name: str, version: str) -> dict[str, float]:
    """The metrics the model version NAME@VERSION was registered with."""
    text = show(f"{name}@{version}", METRICS)
    if text is None:
        raise ToolError(f"the registered version {name}@{version} has no {METRICS}")
    return {key: float(value) for key, value in json.loads(text).items()}


def main_ref(c: Candidate) -> str:
    """The first environment's branch (main) in the form of C's target ref (remote-tracking)."""
    first = environments.load()[0].branch
    suffix = "/" + c.target.branch
    return c.target_ref[: -len(suffix)] + "/" + first if c.target_ref.endswith(suffix) else first


def image(c: Candidate) -> str:
    """The release's image was built by CI from a commit of main: its attestation, read from the
    registry by digest, verifies with the key evidence.toml names on the target branch."""
    try:
        return attestation.check(c.release.image, c.target_ref, main_ref(c))
    except ToolError as error:
        raise GateError("image", str(error)) from None


def quality(c: Candidate) -> str:
    thresholds = _params(c.target_ref, params.load_evaluate, "quality").thresholds
    found = metrics(c.release.model_name, c.release.model_version)
    for name, threshold in sorted(thresholds.items()):
        value = found.get(name)
        if value is None or not params.meets(name, value, threshold):
            side = "above" if name in params.LOWER_IS_BETTER else "below"
            raise GateError(
                "quality",
                f"{name} {value} of {c.release.model_version} is {side} {threshold}, the threshold "
                f"of {c.target.name} ({PARAMS} on {c.target.branch})",
            )
    return ", ".join(
        f"{k} {found[k]:.4f} {'<=' if k in params.LOWER_IS_BETTER else '>='} {v}"
        for k, v in sorted(thresholds.items())
    )


def regressed(
    new: dict[str, float], old: dict[str, float], gated: list[str], tolerance: float
) -> tuple[str, str] | None:
    """Why the NEW metrics regressed against the OLD ones (the running model's), or None: the
    metric with its new value (``rmse 61.2``) and how it compares (``is more than ...``). A
    gated score (accuracy, ..., r2) more than ``tolerance`` below the old one, or a gated error
    (params.LOWER_IS_BETTER: rmse, mae, in the target's unit) more than ``tolerance`` times the
    old one above it. A metric the old model was not registered with is not compared; one the
    new model lacks counts as the worst value."""
    for name in gated:
        if name not in old:
            continue
        if name in params.LOWER_IS_BETTER:
            if new.get(name, math.inf) > old[name] * (1 + tolerance):
                return (
                    f"{name} {new.get(name)}",
                    f"is more than {tolerance:g} x {old[name]} above {old[name]}",
                )
        elif new.get(name, -math.inf) < old[name] - tolerance:
            return f"{name} {new.get(name)}", f"is more than {tolerance} below {old[name]}"
    return None


def regression(c: Candidate) -> str:
    if c.current is None or not c.current.model_version:
        return f"nothing runs in {c.target.name} yet"
    tolerance = _params(c.target_ref, params.load_promotion, "regression").regression_tolerance
    gated = sorted(_params(c.target_ref, params.load_evaluate, "regression").thresholds)
    new = metrics(c.release.model_name, c.release.model_version)
    old = metrics(c.current.model_name, c.current.model_version)
    why = regressed(new, old, gated, tolerance)
    if why is not None:
        raise GateError(
            "regression",
            f"{why[0]} of {c.release.model_version} {why[1]} of "
            f"{c.current.model_version}, which {c.target.name} runs",
        )
    return f"no metric more than {tolerance} below {c.current.model_version} ({c.target.name})"


def stage(c: Candidate) -> str:
    name, version = c.release.model_name, c.release.model_version
    holder = run("gto", "show", f"{name}#{c.source.stage}", "--ref").strip()
    if holder != f"{name}@{version}":
        raise GateError(
            "stage",
            f"{name} {version} does not hold the stage {c.source.stage} "
            f"(gto show: {holder or 'nothing'}): promote it to {c.source.name} first",
        )
    return f"{version} holds {c.source.stage}"


def smoke_test(c: Candidate) -> str:
    """The newest smoke record of the previous environment's rendered file, a check run of the
    evidence App that evidence.toml on the target branch names, passed and names this release."""
    try:
        trusted = evidence.app_id(c.target_ref)
        evidence.verify(c.source, c.source_ref, c.release, trusted)
    except GateError:
        raise
    except ToolError as error:
        raise GateError("smoke", str(error)) from None
    return f"{c.source.name} served {c.release.image} (check run {evidence.check_name(c.source)})"


def manifests(c: Candidate) -> str:
    found = rendered.differences(c.source_text, c.target_text)
    if found:
        more = f" and {len(found) - 1} more" if len(found) > 1 else ""
        raise GateError(
            "manifests",
            f"{c.target.name} would differ from {c.source.name} in {found[0]}{more}, "
            "which is not an environment field (docs/workflow.md)",
        )
    return f"same manifests as {c.source.name} but for the environment fields"


#: Every gate, in the order they are asked (the first refusal wins).
GATES = (
    ("image", image),
    ("quality", quality),
    ("regression", regression),
    ("stage", stage),
    ("smoke", smoke_test),
    ("manifests", manifests),
)


#: The pull request label that acknowledges a promotion's settings that ran nowhere before
#: (gitops.rendered.untried): the one name the tools and docs/workflow.md use.
ACKNOWLEDGE_LABEL = "ran-nowhere-before"


def untried(c: Candidate, found: list[str], acknowledged: bool) -> str:
    """Gate ``untried``, asked after GATES by gitops.promote: FOUND (the settings of the target's
    rendering that neither the previous environment nor the target ran) passes only when the
    pull request is ACKNOWLEDGED (it carries ACKNOWLEDGE_LABEL)."""
    if not found:
        return f"every setting ran in {c.source.name} or in {c.target.name} before"
    if not acknowledged:
        more = f" and {len(found) - 1} more" if len(found) > 1 else ""
        raise GateError(
            "untried",
            f"{c.target.name} would run {found[0]}{more}, which ran nowhere before: the pull "
            f"request needs the label {ACKNOWLEDGE_LABEL} (python -m gitops.promote "
            f"{c.target.name} --acknowledge)",
        )
    return f"{len(found)} settings ran nowhere before, acknowledged ({ACKNOWLEDGE_LABEL})"


def check(c: Candidate) -> list[tuple[str, str]]:
    """Ask every gate; (name, figure) for each. GateError at the first that refuses."""
    return [(name, gate(c)) for name, gate in GATES]
