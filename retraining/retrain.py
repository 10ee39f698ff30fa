"""The retraining request: a data snapshot (named by a person or a drift alert) becomes the new data
version of an experiment pull request.

    python -m retraining.retrain snapshot --event "$GITHUB_EVENT_PATH" [--default-source SRC]
    python -m retraining.retrain body --event "$GITHUB_EVENT_PATH" --before MD5 --after MD5 \\
        --drift out/retrain/drift.md --report out/retrain/report.md
    python -m retraining.retrain dispatch-body [--snapshot SRC] < alertmanager-webhook.json

Role: the steps of .github/workflows/retrain.yml (docs/monitoring.md, "Retraining"), and the
translation a relay needs between Alertmanager and GitHub.

- ``snapshot`` reads the event the workflow runs for (GitHub's event file): a ``workflow_dispatch``
  names the snapshot in its input ``snapshot``; a ``repository_dispatch`` (event type
  ``model-drift``) in ``client_payload.snapshot``, or not at all, and then ``--default-source``
  (the repository variable RETRAIN_SNAPSHOT: the team's data export) is the source. A source is an
  ``https://`` URL (with the bearer token $RETRAIN_SNAPSHOT_TOKEN when set) or a path the runner
  can read; anything else is refused. The snapshot is fetched next to ``data.file``
  (training/params.yaml), checked by prepare's own check (``training.dataset.load_raw``: columns,
  numbers, labels, rows per class), and only then replaces ``data.file``. It prints the workflow's
  step outputs, ``name=value`` a line: ``changed`` (``false`` when the snapshot is the data
  version main has: its md5 is the one in ``data.file``'s .dvc file), ``data``, ``target``,
  ``before``, ``after`` (the two md5s), ``id`` (the first 8 of ``after``: the branch is
  ``experiment/retrain-<id>``), ``rows``.
- ``body`` writes the pull request's body: what started it (the alerts of the payload, or the
  person and their reason), the data versions, the drift table and the training report.
- ``dispatch-body`` turns an Alertmanager webhook body (stdin) into the body of GitHub's
  ``POST /repos/OWNER/REPO/dispatches`` (event type ``model-drift``, the firing drift alerts in
  ``client_payload.alerts``), which Alertmanager cannot send itself.

Contract: every refusal (a missing or unreadable snapshot, a snapshot prepare would refuse, a
malformed event: a ``client_payload`` or an alert with a field ``dispatch-body`` does not write,
too) is one line, ``error: <reason>``, exit status 1, and leaves ``data.file`` untouched; the
event's strings reach the body only as escaped code spans.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from gitops.cli import OneLineParser, ToolError, run_main

PARAMS = Path("training/params.yaml")
#: The repository_dispatch event type of a drift alert.
EVENT_TYPE = "model-drift"
#: The alerts that ask for retraining (the chart's PrometheusRule, docs/monitoring.md).
DRIFT_ALERTS = ("ModelInputDrift", "ModelScoreDrift")
#: The alert labels the payload carries (all strings), besides the PSI.
ALERT_LABELS = ("alertname", "model", "namespace", "feature")
#: The fields of one alert of the payload, and of the payload: anything else is refused, so a
#: dispatch whose shape drifted from dispatch_body's fails the run instead of losing its alerts.
ALERT_FIELDS = (*ALERT_LABELS, "psi")
PAYLOAD_FIELDS = ("alerts", "snapshot")
#: At most this many alerts in one payload, each string at most TEXT_LIMIT characters.
ALERT_LIMIT = 100
TEXT_LIMIT = 200
#: A snapshot larger than this is refused while it downloads.
MAX_BYTES = 2 * 1024**3
#: Seconds an https fetch may wait on the server.
TIMEOUT = 60
CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Request:
    """What one run was asked: where the snapshot is, and why (alerts, or a person's reason)."""

    event: str  # workflow_dispatch or repository_dispatch
    source: str
    alerts: tuple[dict[str, Any], ...] = ()
    actor: str = ""
    reason: str = ""


# --- the event ------------------------------------------------------------------------------


def _text(value: Any, where: str, *, optional: bool = True) -> str:
    if value is None and optional:
        return ""
    if not isinstance(value, str) or len(value) > TEXT_LIMIT:
        raise ToolError(f"{where} must be a string of at most {TEXT_LIMIT} characters")
    return value


def _known_fields(raw: dict[str, Any], allowed: Sequence[str], where: str) -> None:
    unknown = sorted(str(key) for key in raw if key not in allowed)
    if unknown:
        raise ToolError(f"{where}: unknown field {unknown[0]!r} (allowed: {', '.join(allowed)})")


def parse_alert(raw: Any, where: str) -> dict[str, Any]:
    """One alert of the payload: ALERT_LABELS (strings, alertname required) and psi (a finite
    number or absent); no other field."""
    if not isinstance(raw, dict):
        raise ToolError(f"{where} must be an object of the alert's labels")
    _known_fields(raw, ALERT_FIELDS, where)
    alert: dict[str, Any] = {
        label: _text(raw.get(label), f"{where}.{label}") for label in ALERT_LABELS
    }
    if not alert["alertname"]:
        raise ToolError(f"{where}.alertname is missing")
    psi = raw.get("psi")
    if psi is not None and (
        isinstance(psi, bool) or not isinstance(psi, int | float) or not math.isfinite(psi)
    ):
        raise ToolError(f"{where}.psi must be a number, got {psi!r}")
    alert["psi"] = None if psi is None else float(psi)
    return alert


def parse_event(document: Any, default_source: str = "") -> Request:
    """The Request of a workflow_dispatch or repository_dispatch event payload."""
    if not isinstance(document, dict):
        raise ToolError("the event payload must be a JSON object")
    actor = ""
    sender = document.get("sender")
    if isinstance(sender, dict) and isinstance(sender.get("login"), str):
        actor = sender["login"][:TEXT_LIMIT]
    if "client_payload" in document or document.get("action") == EVENT_TYPE:
        payload = document.get("client_payload") or {}
        if not isinstance(payload, dict):
            raise ToolError("client_payload must be an object")
        _known_fields(payload, PAYLOAD_FIELDS, "client_payload")
        raw_alerts = payload.get("alerts", [])
        if not isinstance(raw_alerts, list) or len(raw_alerts) > ALERT_LIMIT:
            raise ToolError(f"client_payload.alerts must be a list of at most {ALERT_LIMIT}")
        alerts = tuple(
            parse_alert(raw, f"client_payload.alerts[{i}]") for i, raw in enumerate(raw_alerts)
        )
        source = _text(payload.get("snapshot"), "client_payload.snapshot") or default_source
        return Request("repository_dispatch", source.strip(), alerts, actor)
    inputs = document.get("inputs")
    if not isinstance(inputs, dict):
        raise ToolError(
            "the event is neither a workflow_dispatch (inputs) nor a repository_dispatch"
        )
    source = _text(inputs.get("snapshot"), "inputs.snapshot") or default_source
    reason = _text(inputs.get("reason"), "inputs.reason")
    return Request("workflow_dispatch", source.strip(), (), actor, reason)


def read_event(path: Path, default_source: str = "") -> Request:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ToolError(f"{path}: no event file") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ToolError(f"{path}: the event is not JSON") from None
    return parse_event(document, default_source)


# --- the snapshot ---------------------------------------------------------------------------


def shown(source: str) -> str:
    """SOURCE as the body and the log may show it: a URL without its query or credentials (a
    presigned URL's signature is a secret)."""
    if not source.startswith("https://"):
        return source
    parts = urllib.parse.urlsplit(source)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"https://{host}{port}{parts.path}"


def check_source(source: str) -> str:
    """SOURCE if it is an https:// URL or a path; else a one-line refusal saying what is."""
    if not source:
        raise ToolError(
            "no snapshot: give the input snapshot, client_payload.snapshot, or set the repository"
            " variable RETRAIN_SNAPSHOT (an https:// URL or a path the runner can read)"
        )
    if any(not c.isprintable() for c in source):
        raise ToolError("the snapshot source holds a control character")
    if source.startswith("https://"):
        if not urllib.parse.urlsplit(source).hostname:
            raise ToolError(f"the snapshot URL {shown(source)!r} has no host")
        return source
    if "://" in source:
        scheme = source.split("://", 1)[0][:20]
        raise ToolError(
            f"the snapshot must be an https:// URL or a path the runner can read, not {scheme}://"
        )
    return source


def fetch(source: str, dest: Path, token: str = "", max_bytes: int = MAX_BYTES) -> None:
    """Copy or download SOURCE (check_source's) to DEST, refusing more than MAX_BYTES."""
    written = 0
    try:
        if source.startswith("https://"):
            request = urllib.request.Request(source)  # noqa: S310 - https only (check_source)
            if token:
                request.add_header("Authorization", f"Bearer {token}")
            opened = urllib.request.urlopen(request, timeout=TIMEOUT)  # noqa: S310
        else:
            path = Path(source)
            if not path.is_file():
                raise ToolError(f"the snapshot {source}: no such file")
            opened = path.open("rb")
        with opened as reader, dest.open("wb") as writer:
            while chunk := reader.read(CHUNK):
                written += len(chunk)
                if written > max_bytes:
                    raise ToolError(
                        f"the snapshot {shown(source)} is larger than {max_bytes} bytes"
                    )
                writer.write(chunk)
    except urllib.error.HTTPError as exc:
        raise ToolError(f"the snapshot {shown(source)}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise ToolError(f"the snapshot {shown(source)}: {exc.reason}") from None
    except OSError as exc:
        raise ToolError(f"the snapshot {shown(source)}: {exc.strerror or exc}") from None
    if written == 0:
        raise ToolError(f"the snapshot {shown(source)} is empty")


def md5_file(path: Path) -> str:
    """The md5 DVC 3 records for a file (of its bytes)."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def tracked_md5(dvc_file: Path) -> str:
    """The md5 a single-file .dvc file records ('' when there is none)."""
    import yaml  # here, not at the top: the relay (retraining.relay) imports this module without it

    try:
        document = yaml.safe_load(dvc_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return ""
    outs = document.get("outs") if isinstance(document, dict) else None
    if isinstance(outs, list) and len(outs) == 1 and isinstance(outs[0], dict):
        return str(outs[0].get("md5", ""))
    raise ToolError(f"{dvc_file}: not a .dvc file of one output")


def take_snapshot(
    request: Request, root: Path, params: Path = PARAMS, token: str = ""
) -> dict[str, str]:
    """Fetch the request's snapshot, check it as prepare does, and make it data.file (in ROOT)
    unless it is the data version already; the step outputs."""
    from training.dataset import load_raw  # pandas: only when a snapshot is taken
    from training.errors import StageError
    from training.params import ParamsError, load_data, load_prepare

    source = check_source(request.source)
    try:
        spec = load_data(root / params)
        test_size = load_prepare(root / params).test_size
    except ParamsError as exc:
        raise ToolError(str(exc)) from None
    data = root / spec.file
    incoming = data.with_name(f".{data.name}.snapshot")
    try:
        fetch(source, incoming, token)
        try:
            frame = load_raw(replace(spec, file=str(incoming.relative_to(root))), root, test_size)
        except StageError as exc:
            reason = str(exc).split(": ", 1)[-1]
            raise ToolError(
                f"the snapshot {shown(source)} fails prepare's check: {reason}"
            ) from None
        before, after = tracked_md5(data.with_name(data.name + ".dvc")), md5_file(incoming)
        changed = after != before
        if changed:
            incoming.replace(data)
    finally:
        incoming.unlink(missing_ok=True)
    return {
        "changed": str(changed).lower(),
        "data": spec.file,
        "target": spec.target,
        "before": before,
        "after": after,
        "id": after[:8],
        "rows": str(len(frame)),
        "source": shown(source),
    }


# --- the pull request body ------------------------------------------------------------------


def code(text: str) -> str:
    """TEXT as an inline code span safe in a markdown table (no pipes, backticks, line breaks)."""
    if not text:
        return "-"
    return "`" + "".join(c if c.isprintable() and c not in "|`" else "?" for c in text) + "`"


def trigger_section(request: Request) -> list[str]:
    if request.event == "workflow_dispatch":
        who = f" by {code(request.actor)}" if request.actor else ""
        why = f": {code(request.reason)}" if request.reason else ""
        return [f"Started by hand (workflow_dispatch){who}{why}.", ""]
    if not request.alerts:
        return ["Started by a `model-drift` dispatch that named no alert.", ""]
    lines = [
        f"Started by {len(request.alerts)} firing drift alert(s) (repository_dispatch"
        f" `{EVENT_TYPE}`); PSI over the rules' window of live traffic:",
        "",
        "| alert | model | namespace | feature | PSI (live) |",
        "|---|---|---|---|---:|",
    ]
    for alert in request.alerts:
        psi = "-" if alert["psi"] is None else f"{alert['psi']:.4f}"
        cells = [code(alert[label]) for label in ALERT_LABELS]
        lines.append(f"| {' | '.join(cells)} | {psi} |")
    return [*lines, ""]


def body(
    request: Request,
    *,
    data: str,
    source: str,
    before: str,
    after: str,
    drift: str,
    report: str,
) -> str:
    """The retraining pull request's body (markdown)."""
    lines = ["## Retraining on a new data snapshot", "", *trigger_section(request)]
    lines += [
        "| data | version (md5) |",
        "|---|---|",
        f"| {code(data)} on main | {code(before)} |",
        f"| {code(data)} here (from {code(source)}) | {code(after)} |",
        "",
        "### Drift of the snapshot against the model on main",
        "",
        "Per feature, the population stability index of the snapshot's rows against the"
        " reference profile of the model main serves (its `profile.json`), by the formula of"
        " the recording rules (docs/monitoring.md).",
        "",
        drift.strip(),
        "",
        report.strip(),
        "",
        "### Review",
        "",
        "Nothing is promoted by this pull request. Review it like any experiment: the checks"
        " (ci, pr-guard, training-report) and a person's approval. Merged, `promote.yml` registers"
        " and builds the model and opens the deploy pull request for dev; staging and prod follow"
        " only by `gitops.promote`, through its gates.",
        "",
    ]
    return "\n".join(lines)


# --- Alertmanager to GitHub -----------------------------------------------------------------


class NotAWebhookError(ToolError):
    """The body given as Alertmanager's is not a webhook body at all (the relay's 400)."""


def dispatch_body(webhook: Any, snapshot: str = "") -> dict[str, Any]:
    """GitHub's repository_dispatch body for the firing drift alerts of an Alertmanager webhook
    body (version 4); NotAWebhookError for anything else, ToolError when it holds no firing drift
    alert. The PSI comes from the alert's annotation ``psi`` when the rule sets one."""
    if not isinstance(webhook, dict) or not isinstance(webhook.get("alerts"), list):
        raise NotAWebhookError("not an Alertmanager webhook body (no alerts list)")
    alerts = []
    for raw in webhook["alerts"]:
        if not isinstance(raw, dict) or raw.get("status") != "firing":
            continue
        labels = raw.get("labels")
        labels = labels if isinstance(labels, dict) else {}
        if labels.get("alertname") not in DRIFT_ALERTS:
            continue
        alert: dict[str, Any] = {
            label: str(labels[label])[:TEXT_LIMIT] for label in ALERT_LABELS if label in labels
        }
        annotations = raw.get("annotations")
        annotations = annotations if isinstance(annotations, dict) else {}
        try:
            psi = float(annotations.get("psi", "nan"))
        except (TypeError, ValueError):
            psi = math.nan
        if math.isfinite(psi):
            alert["psi"] = psi
        alerts.append(alert)
    if not alerts:
        raise ToolError(f"no firing {' or '.join(DRIFT_ALERTS)} alert: nothing to dispatch")
    payload: dict[str, Any] = {"alerts": alerts[:ALERT_LIMIT]}
    if snapshot:
        payload["snapshot"] = check_source(snapshot)
    return {"event_type": EVENT_TYPE, "client_payload": payload}


# --- the command line -----------------------------------------------------------------------


def main(argv: Sequence[str]) -> int:
    parser = OneLineParser(prog="python -m retraining.retrain", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    snap = commands.add_parser("snapshot", help="fetch, check and take the snapshot")
    snap.add_argument("--event", type=Path, required=True, help="the event payload (JSON)")
    snap.add_argument("--default-source", default="", help="when the event names no snapshot")
    snap.add_argument("--root", type=Path, default=Path(), help="the repository (default: .)")
    text = commands.add_parser("body", help="write the pull request body to stdout")
    text.add_argument("--event", type=Path, required=True)
    text.add_argument("--default-source", default="")
    for name in ("data", "source", "before", "after"):
        text.add_argument(f"--{name}", required=True)
    text.add_argument("--drift", type=Path, required=True, help="the drift table (markdown)")
    text.add_argument("--report", type=Path, required=True, help="report.md of make report")
    relay = commands.add_parser("dispatch-body", help="Alertmanager webhook (stdin) -> GitHub")
    relay.add_argument("--snapshot", default="", help="the snapshot source to name")
    args = parser.parse_args(argv)

    if args.command == "snapshot":
        request = read_event(args.event, args.default_source)
        token = os.environ.get("RETRAIN_SNAPSHOT_TOKEN", "")
        outputs = take_snapshot(request, args.root, token=token)
        print("\n".join(f"{name}={value}" for name, value in outputs.items()))
        return 0
    if args.command == "body":
        request = read_event(args.event, args.default_source)
        sections = {}
        for name in ("drift", "report"):
            path = getattr(args, name)
            try:
                sections[name] = path.read_text(encoding="utf-8")
            except FileNotFoundError:
                raise ToolError(f"{path}: no such file (the {name} of this run)") from None
        sys.stdout.write(
            body(
                request,
                data=args.data,
                source=args.source,
                before=args.before,
                after=args.after,
                **sections,
            )
        )
        return 0
    try:
        webhook = json.load(sys.stdin)
    except json.JSONDecodeError:
        raise ToolError("stdin is not JSON (an Alertmanager webhook body)") from None
    print(json.dumps(dispatch_body(webhook, args.snapshot)))
    return 0


if __name__ == "__main__":
    run_main(main)
