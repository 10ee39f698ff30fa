"""The smoke test of an environment, and its record: does it serve exactly its rendered release?

usage: python -m gitops.smoke ENV --url URL [--ref REF] [--record] [--push REMOTE]

Reads the release ENV's rendered manifests carry (``rendered/<env>/manifests.yaml`` at REF,
default the environment's branch on origin, else HEAD) and asks the server at URL (the
environment's Service, or a local pod) for it: ``/v2/health/ready`` must answer 200, the model
metadata ``/v2/models/<name>`` must name the same model version, stage, git commit and model
sha256 (and image digest, when the server reports one) as the manifests, and the
``X-Model-Provenance-Id`` header of one inference must be the id of that provenance
(``serving.provenance``: recomputed here from the metadata's values, and equal to the id the
metadata states). Any difference fails with one line naming the field.

With --record, the result (passed or failed, with what was compared) is appended as a git note
under refs/notes/modelops-smoke on the rendered file's blob, so it names the exact manifests that
were tested; --push REMOTE pushes the notes. ``gitops.promote`` reads these records: a release is
promoted only from an environment whose current manifests passed (:func:`passed`).

Callers: the demo and the tests after a pod is up; in a cluster, a job or workflow run after Argo
CD syncs (docs/workflow.md).
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from gitops import environments, rendered
from gitops.cli import OneLineParser, ToolError, run_main
from gitops.git import NOTES_REF, git, rev, show
from serving.provenance import HEADER, provenance_id

#: Provenance field reported by the server -> the rendered release's attribute.
FIELDS = {
    "name": "model_name",
    "version": "model_version",
    "stage": "model_stage",
    "git_commit": "git_commit",
    "model_sha256": "model_sha256",
}


def _call(url: str, body: object = None) -> tuple[int, Any, dict[str, str]]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 (the env's URL)
            return answer.status, json.load(answer), dict(answer.headers)
    except urllib.error.HTTPError as error:
        return error.code, None, dict(error.headers)
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise ToolError(f"smoke: {url} did not answer: {error}") from None


def check(url: str, release: rendered.Release) -> dict[str, str]:
    """Ask the server at URL; the provenance it reported. ToolError naming the first field that
    differs from RELEASE."""
    base = url.rstrip("/")
    status, _, _ = _call(f"{base}/v2/health/ready")
    if status != 200:
        raise ToolError(f"smoke: {base}/v2/health/ready answered {status}, not 200")
    status, metadata, _ = _call(f"{base}/v2/models/{release.model_name}")
    if status != 200 or not isinstance(metadata, dict):
        raise ToolError(f"smoke: {base}/v2/models/{release.model_name} answered {status}")
    width = metadata["inputs"][0]["shape"][-1]
    body = {
        "inputs": [
            {"name": "input-0", "datatype": "FP64", "shape": [1, width], "data": [0.0] * width}
        ]
    }
    status, _, headers = _call(f"{base}/v2/models/{release.model_name}/infer", body)
    if status != 200:
        raise ToolError(f"smoke: inference at {base} answered {status}, not 200")
    reported = metadata.get("parameters") or {}
    fields = dict(FIELDS)
    if "image_digest" in reported:
        fields["image_digest"] = "digest"
    for field, attribute in fields.items():
        wanted = getattr(release, attribute)
        if reported.get(field, "") != wanted:
            raise ToolError(
                f"smoke: /v2 model metadata reports {field} {reported.get(field, '')!r}, "
                f"but the rendered manifests say {wanted!r}"
            )
    answered = headers.get(HEADER, "")
    try:
        expected = provenance_id(reported)
    except KeyError as missing:
        raise ToolError(f"smoke: /v2 model metadata lacks the provenance field {missing}") from None
    for where, value in (
        ("/v2 model metadata", reported.get("provenance_id", "")),
        (HEADER, answered),
    ):
        if value != expected:
            raise ToolError(
                f"smoke: {where} reports provenance id {value!r}, but the metadata's values "
                f"give {expected!r}"
            )
    return {**{field: reported[field] for field in fields}, "provenance_id": answered}


def record(env: environments.Environment, ref: str, result: dict[str, Any]) -> str:
    """Append RESULT as a note on the blob of ENV's rendered file at REF; the blob's name."""
    blob = rev(f"{ref}:{rendered.path(env)}")
    if blob is None:
        raise ToolError(f"{ref} has no {rendered.path(env)}")
    git("notes", "--ref", NOTES_REF, "append", "-m", json.dumps(result, sort_keys=True), blob)
    return blob


def records(blob: str) -> list[dict[str, Any]]:
    """Every smoke record on BLOB, oldest first."""
    done = subprocess.run(
        ["git", "notes", "--ref", NOTES_REF, "show", blob], capture_output=True, text=True
    )
    found = []
    for line in done.stdout.splitlines() if done.returncode == 0 else []:
        try:
            found.append(json.loads(line))
        except ValueError:
            continue
    return found


def passed(env: environments.Environment, ref: str) -> dict[str, Any] | None:
    """The latest passed smoke record of ENV's rendered file at REF, or None."""
    blob = rev(f"{ref}:{rendered.path(env)}")
    if blob is None:
        return None
    ok = [r for r in records(blob) if r.get("environment") == env.name and r.get("passed")]
    return ok[-1] if ok else None


def main(argv: Sequence[str]) -> int:
    names = [env.name for env in environments.load()]
    parser = OneLineParser(prog="python -m gitops.smoke", description=__doc__)
    parser.add_argument("env", metavar="ENV", choices=names, help=", ".join(names))
    parser.add_argument("--url", required=True, help="the environment's base URL")
    parser.add_argument("--ref", help="where to read the rendered manifests (default: see above)")
    parser.add_argument("--record", action="store_true", help="record the result as a git note")
    parser.add_argument("--push", metavar="REMOTE", help="push the notes to REMOTE")
    args = parser.parse_args(argv)
    env = environments.named(args.env)
    ref = args.ref or (f"origin/{env.branch}" if rev(f"origin/{env.branch}") else "HEAD")
    text = show(ref, rendered.path(env))
    if text is None:
        raise ToolError(f"{ref} has no {rendered.path(env)}: nothing is deployed to {env.name}")
    release = rendered.release(text)
    result: dict[str, Any] = {"environment": env.name, "url": args.url, "image": release.image}
    try:
        result["reported"] = check(args.url, release)
        result["passed"] = True
    except ToolError as failure:
        result.update(passed=False, reason=str(failure))
        if args.record:  # a failure is on record too: the gate wants a passed one
            record(env, ref, result)
            if args.push:
                git("push", "--quiet", args.push, NOTES_REF)
        raise
    if args.record:
        blob = record(env, ref, result)
        if args.push:
            git("push", "--quiet", args.push, NOTES_REF)
        print(f"recorded on {rendered.path(env)} blob {blob[:12]}")
    print(f"ok: {env.name} at {args.url} serves {release.summary()}")
    return 0


if __name__ == "__main__":
    run_main(main)
