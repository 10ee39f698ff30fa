"""The smoke test of an environment, and its record: does it serve exactly its rendered release?

usage: python -m gitops.smoke ENV --url URL [--ref REF] [--wait SECONDS] [--record]

Reads the release ENV's rendered manifests carry (``rendered/<env>/manifests.yaml`` at REF,
default the environment's branch on origin, else HEAD) and asks the server at URL (the
environment's Service, or a local pod) for it: ``/v2/health/ready`` must answer 200, the model
metadata ``/v2/models/<name>`` must name the same model version, stage, git commit and model
sha256 (and image digest, when the server reports one) as the manifests, and the
``X-Model-Provenance-Id`` header of one inference must be the id of that provenance
(``serving.provenance``: recomputed here from the metadata's values, and equal to the id the
metadata states). Any difference fails with one line naming the field.

With --record, the result (passed or failed, with the release it names) becomes a GitHub check
run ``smoke/<env>`` on the commit that last changed the rendered file, created with the token in
``GH_TOKEN``: the evidence App's, so the gates take it (gitops.evidence). ``gitops.promote`` reads
these records: a release is promoted only from an environment whose newest record by that App
passed and names exactly what it runs (:func:`gitops.evidence.verify`). --wait SECONDS asks again
every few seconds until the server serves the release or the time is up (a job started right
after a merge, before Argo CD synced); only the last answer is recorded.

Callers: the smoke job of environments.yml after every merge into an environment branch, and the
demo after a pod is up (docs/workflow.md, Evidence; no in-cluster recorder is shipped yet).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from gitops import environments, evidence, rendered
from gitops.cli import OneLineParser, ToolError, run_main
from gitops.git import rev, show
from serving.provenance import HEADER, provenance_id

#: Provenance field reported by the server -> the rendered release's attribute.
FIELDS = {
    "name": "model_name",
    "version": "model_version",
    "stage": "model_stage",
    "git_commit": "git_commit",
    "model_sha256": "model_sha256",
}
#: Seconds between two tries under --wait.
POLL = 3.0


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


def main(argv: Sequence[str]) -> int:
    names = [env.name for env in environments.load()]
    parser = OneLineParser(prog="python -m gitops.smoke", description=__doc__)
    parser.add_argument("env", metavar="ENV", choices=names, help=", ".join(names))
    parser.add_argument("--url", required=True, help="the environment's base URL")
    parser.add_argument("--ref", help="where to read the rendered manifests (default: see above)")
    parser.add_argument(
        "--wait",
        type=float,
        default=0,
        metavar="SECONDS",
        help="ask again until it passes or SECONDS are over (default: once)",
    )
    parser.add_argument("--record", action="store_true", help="record the result (a check run)")
    args = parser.parse_args(argv)
    env = environments.named(args.env)
    ref = args.ref or (f"origin/{env.branch}" if rev(f"origin/{env.branch}") else "HEAD")
    text = show(ref, rendered.path(env))
    if text is None:
        raise ToolError(f"{ref} has no {rendered.path(env)}: nothing is deployed to {env.name}")
    release = rendered.release(text)
    api = (
        evidence.GitHub.from_environ() if args.record else None
    )  # its settings checked before the test
    deadline = time.monotonic() + max(args.wait, 0)
    result: dict[str, Any] = {"url": args.url}
    while True:
        try:
            result.update(reported=check(args.url, release), passed=True)
            break
        except ToolError as failure:
            if time.monotonic() + POLL < deadline:
                time.sleep(POLL)
                continue
            result.update(passed=False, reason=str(failure))
            if api is not None:  # a failure is on record too: it outranks an older pass
                evidence.record(env, ref, release, result, api)
            raise
    if api is not None:
        found = evidence.record(env, ref, release, result, api)
        print(f"recorded: check run {evidence.check_name(env)} on {found['commit'][:12]}")
    print(f"ok: {env.name} at {args.url} serves {release.summary()}")
    return 0


if __name__ == "__main__":
    run_main(main)
