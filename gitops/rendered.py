"""The rendered manifests of each environment: what Argo CD deploys, and the release they carry.

usage: python -m gitops.rendered [--check] [ENV ...]
       python -m gitops.rendered --diff BASE HEAD

Role: the contract between the dry source (charts/model, kustomize/base, kustomize/overlays/<env>)
and the cluster. ``rendered/<env>/manifests.yaml`` is ``kubectl kustomize kustomize/overlays/<env>``
with a header, committed on the environment's branch; the environment's Argo CD Application
(argocd/applicationset.yaml) deploys that file, from that branch, and nothing else. A pull
request that changes an environment therefore shows the rendered diff, and a merge into ``main``
can change only what ``main``'s Application reads: dev.

It works in the current directory, the repository's root. Without ENV it (re-)renders every
environment whose ``rendered/<env>`` exists there,
which on ``main`` is dev alone; the promotion tools render the others on their own branches.
With ``--check`` it writes nothing and fails, naming the file, when one is not what its overlay
renders (``make render`` fixes it; the unit tests run the check).

``--diff BASE HEAD`` writes nothing either: it renders every environment's overlay (of
environments.toml at either commit) at BASE and at HEAD and prints, as markdown, per environment
the rendered diff that environment will get when the change reaches it (:func:`environment_diffs`;
the ``rendered diff`` job of pr-guard.yml runs it with the base branch's tools on every pull
request into the first environment's branch).

Callers: ``make render`` and its check, ``gitops.promote`` and ``gitops.rollback`` (which read the
release a rendering carries with :func:`release` and compare two environments with
:func:`differences`), the pod runner (images/pod.py plays an environment's rendered file).
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gitops import environments
from gitops.cli import OneLineParser, ToolError, run, run_main
from gitops.git import resolve, rev, worktree

ROOT = environments.ROOT
DIRECTORY = "rendered"
FILE = "manifests.yaml"
HEADER = """\
# The {env} environment as Argo CD applies it (Application model-{env}, branch {branch}):
# kubectl kustomize kustomize/overlays/{env}, written by make render or python -m gitops.promote.
# Do not edit: change the overlay, the chart or the base, and re-render.
"""
#: The Deployment's container that runs the model (the other one is Nginx).
APP_CONTAINER = "app"
PROVENANCE = "modelops.io/"


def path(env: environments.Environment) -> str:
    """The environment's rendered file, relative to the repository root."""
    return f"{DIRECTORY}/{env.name}/{FILE}"


def kubectl() -> str:
    """The pinned kubectl from .tools/bin (make tools), else the one on PATH."""
    pinned = ROOT / ".tools" / "bin" / "kubectl"
    if pinned.exists():
        return str(pinned)
    found = shutil.which("kubectl")
    if found is None:
        raise ToolError("kubectl is not installed: run make tools")
    return found


def render(root: Path, env: environments.Environment) -> str:
    """The text of ``rendered/<env>/manifests.yaml`` for the checkout (or tree copy) at ROOT."""
    overlay = root / env.overlay
    if not (overlay / "kustomization.yaml").is_file():
        raise ToolError(f"no overlay {env.overlay} in {root}")
    body = run(kubectl(), "kustomize", str(overlay))
    return HEADER.format(env=env.name, branch=env.branch) + body


def documents(text: str) -> list[dict[str, Any]]:
    """The objects of a rendered file (comments and empty documents dropped)."""
    try:
        return [doc for doc in yaml.safe_load_all(text) if doc]
    except yaml.YAMLError as error:
        raise ToolError(f"rendered manifests are not valid YAML: {error}") from None


@dataclass(frozen=True)
class Release:
    """What an environment runs, read from its rendered manifests: the model server image and
    the model it serves. The same fields the pod's model metadata reports (gitops.smoke)."""

    image: str  # NAME:SHA@sha256:DIGEST
    namespace: str
    model_name: str
    model_version: str
    model_stage: str
    model_sha256: str
    git_commit: str
    manifests_sha256: str  # of the whole rendered file: the exact manifests

    @property
    def digest(self) -> str:
        """The image's manifest digest (``sha256:...``), or "" when it is pinned by tag only."""
        return self.image.partition("@")[2]

    def summary(self) -> str:
        """One line: model version and sha256, image digest, git commit."""
        return (
            f"{self.model_name} {self.model_version or '(no version)'} "
            f"(model sha256 {self.model_sha256[:12] or '-'}), image {self.digest or self.image}, "
            f"git commit {self.git_commit[:12] or '-'}"
        )


#: The label of the retraining relay's Deployment (kustomize/monitoring/relay), which a rendering
#: with monitoring on holds beside the model server's.
RELAY_COMPONENT = ("app.kubernetes.io/component", "retrain-relay")


def is_relay(doc: dict[str, Any]) -> bool:
    """Whether DOC is the retraining relay's Deployment, not the model server's."""
    labels = (doc.get("metadata") or {}).get("labels") or {}
    return labels.get(RELAY_COMPONENT[0]) == RELAY_COMPONENT[1]


def deployment(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The model server's Deployment among DOCS (the relay's, when monitoring is on, left out)."""
    found = [doc for doc in docs if doc.get("kind") == "Deployment" and not is_relay(doc)]
    if len(found) != 1:
        raise ToolError(f"rendered manifests hold {len(found)} Deployments, not one")
    return found[0]


def release(text: str) -> Release:
    """The release a rendered file carries (ToolError when it has no model server Deployment)."""
    found = deployment(documents(text))
    template = found["spec"]["template"]
    annotations = (template.get("metadata") or {}).get("annotations") or {}
    containers = {c["name"]: c for c in template["spec"]["containers"]}
    if APP_CONTAINER not in containers:
        raise ToolError(f"the rendered Deployment has no container {APP_CONTAINER!r}")

    def annotation(key: str) -> str:
        return str(annotations.get(PROVENANCE + key) or "")

    return Release(
        image=containers[APP_CONTAINER]["image"],
        namespace=found["metadata"].get("namespace", ""),
        model_name=annotation("model-name"),
        model_version=annotation("model-version"),
        model_stage=annotation("model-stage"),
        model_sha256=annotation("model-sha256"),
        git_commit=annotation("git-commit"),
        manifests_sha256=hashlib.sha256(text.encode()).hexdigest(),
    )


#: A field path's suffix for a PromQL expression kept in the comparison but for one matcher: the
#: label matcher ``namespace="<the object's own metadata.namespace>"``, exactly so written.
OWN_NAMESPACE = "~namespace"
#: What that matcher becomes before comparing (a namespace name can hold no "<").
NAMESPACE_PLACEHOLDER = 'namespace="<own namespace>"'

#: What may differ between two environments' renderings of one release, and nothing else
#: (docs/workflow.md, "What differs between environments"): (kind or "*", field path, why).
#: A path ends at the field removed before comparing; "[]" walks every list item. A path ending
#: in OWN_NAMESPACE keeps its field and replaces in it only the matcher on the object's own
#: namespace: any other difference in the expression (a threshold, a window, a matcher on
#: another namespace) still counts.
ENVIRONMENT_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("*", "metadata.namespace", "each environment has its namespace"),
    (
        "PrometheusRule",
        f"spec.groups[].rules[].expr{OWN_NAMESPACE}",
        "its rules read only its namespace's series (kustomize/monitoring/<env>, "
        "scripts/render-base.py), so several environments can share one Prometheus",
    ),
    ("Deployment", "spec.replicas", "each environment's size (the HPA sets it)"),
    ("Deployment", "spec.template.metadata.annotations.modelops.io/model-stage", "its GTO stage"),
    ("Deployment", "spec.template.spec.containers[].env.MODELOPS_MODEL_STAGE", "its GTO stage"),
    ("Deployment", "spec.template.spec.containers[].env.UWSGI_PROCESSES", "workers per pod"),
    ("Deployment", "spec.template.spec.containers[].resources", "requests and limits"),
    ("Deployment", "spec.template.spec.topologySpreadConstraints", "spreading over nodes"),
    ("HorizontalPodAutoscaler", "spec.minReplicas", "replica bounds"),
    ("HorizontalPodAutoscaler", "spec.maxReplicas", "replica bounds"),
    ("PodDisruptionBudget", "spec.minAvailable", "disruption budget"),
    ("PodDisruptionBudget", "spec.maxUnavailable", "disruption budget"),
)


#: The fields of ENVIRONMENT_FIELDS that name the environment (its namespace, its GTO stage): they
#: differ between any two environments by definition. The others are the environment's own
#: settings (size, workers, resources, spread, bounds): a value of one of those that neither the
#: previous environment nor the target ran is listed under "Ran nowhere before" and needs the
#: acknowledgement of gitops.gates.ACKNOWLEDGE_LABEL (:func:`untried`).
IDENTITY_FIELDS = frozenset(
    {
        "metadata.namespace",
        f"spec.groups[].rules[].expr{OWN_NAMESPACE}",
        "spec.template.metadata.annotations.modelops.io/model-stage",
        "spec.template.spec.containers[].env.MODELOPS_MODEL_STAGE",
    }
)


def _edit(node: Any, parts: list[str], replace: tuple[str, str] | None = None) -> None:
    """Remove the field PARTS from NODE, or with REPLACE (pattern, text), substitute TEXT for
    the pattern in it; env lists are keyed by their items' names."""
    if not parts or node is None:
        return
    head, rest = parts[0], parts[1:]
    if head.endswith("[]"):
        for item in (node.get(head[:-2]) or []) if isinstance(node, dict) else []:
            _edit(item, rest, replace)
        return
    if isinstance(node, list):  # a list of {name: ...}: the item named HEAD
        node[:] = [item for item in node if not (rest == [] and item.get("name") == head)]
        for item in node:
            if item.get("name") == head:
                _edit(item, rest, replace)
        return
    if not isinstance(node, dict):
        return
    if head == "annotations" and rest:  # annotation keys hold dots: the rest is one key
        node.get(head, {}).pop(".".join(rest), None)
        return
    if rest:
        _edit(node.get(head), rest, replace)
    elif replace is None:
        node.pop(head, None)
    elif isinstance(node.get(head), str):
        node[head] = re.sub(replace[0], lambda _: replace[1], node[head])


def comparable(text: str, identity_only: bool = False) -> dict[str, Any]:
    """The objects of a rendered file, keyed by kind/name, without the environment fields (with
    IDENTITY_ONLY, without the IDENTITY_FIELDS alone)."""
    found: dict[str, Any] = {}
    for doc in documents(text):
        doc = copy.deepcopy(doc)
        own = (doc.get("metadata") or {}).get("namespace")
        # the object's own namespace as a PromQL matcher, not inside a longer label name
        pattern = rf'(?<![\w:])namespace="{re.escape(own)}"' if own else ""
        matcher = (pattern, NAMESPACE_PLACEHOLDER) if own else None
        for kind, field, _ in ENVIRONMENT_FIELDS:
            if kind not in ("*", doc.get("kind")):
                continue
            if identity_only and field not in IDENTITY_FIELDS:
                continue
            if field.endswith(OWN_NAMESPACE):
                if matcher:
                    _edit(doc, field.removesuffix(OWN_NAMESPACE).split("."), matcher)
            else:
                _edit(doc, field.split("."))
        for container in (
            doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
        ):
            container.get("env", []).sort(key=lambda item: item.get("name", ""))
        found[f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"] = doc
    return found


def differences(before: str, after: str) -> list[str]:
    """Where two environments' renderings differ beyond ENVIRONMENT_FIELDS, as ``kind/name
    field`` lines (empty when they carry the same release)."""
    left, right = comparable(before), comparable(after)
    found = [f"{key} (only in one)" for key in sorted(set(left) ^ set(right))]
    for key in sorted(set(left) & set(right)):
        found += [f"{key} {where}" for where in _diff(left[key], right[key], "")]
    return found


def _diff(left: Any, right: Any, where: str) -> list[str]:
    if isinstance(left, dict) and isinstance(right, dict):
        keys = sorted(set(left) | set(right))
        return [d for k in keys for d in _diff(left.get(k), right.get(k), f"{where}.{k}")]
    if isinstance(left, list) and isinstance(right, list) and len(left) == len(right):
        pairs = enumerate(zip(left, right, strict=True))
        return [d for i, (a, b) in pairs for d in _diff(a, b, f"{where}[{i}]")]
    return [] if left == right else [where.lstrip(".") or "(the object)"]


#: A setting an object does not have (in :func:`untried`'s comparisons).
ABSENT = "(not set)"


@dataclass(frozen=True)
class Untried:
    """A setting of the target's new rendering that ran nowhere before: not in the previous
    environment's rendering, not in what the target ran."""

    setting: str  # kind/name and field path
    value: Any  # in the target's new rendering (ABSENT when it drops the setting)
    source: Any  # in the previous environment's rendering
    ran: Any  # in what the target ran (its rendered file, else its branch's overlay)


def settings(text: str) -> dict[str, Any]:
    """Every leaf of a rendered file but the identity fields, as ``kind/name path: value``; list
    items with a name are keyed by it (``containers[app]``), others by position."""
    found: dict[str, Any] = {}

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(value, f"{where}.{key}")
        elif isinstance(node, list) and node:
            for index, item in enumerate(node):
                named = isinstance(item, dict) and isinstance(item.get("name"), str)
                walk(item, f"{where}[{item['name'] if named else index}]")
        else:
            found[where.replace(" .", " ", 1)] = node

    for key, doc in comparable(text, identity_only=True).items():
        walk(doc, f"{key} ")
    return found


def untried(source_text: str, target_text: str, ran_text: str | None) -> list[Untried]:
    """The settings in which the target's new rendering (TARGET_TEXT) differs from the previous
    environment's (SOURCE_TEXT) with a value that the target did not run either (RAN_TEXT, None
    when nothing ran there): what a promotion would run for the first time anywhere."""
    source, target = settings(source_text), settings(target_text)
    ran = settings(ran_text) if ran_text else {}
    found = []
    for key in sorted(set(source) | set(target)):
        value = target.get(key, ABSENT)
        if value != source.get(key, ABSENT) and value != ran.get(key, ABSENT):
            found.append(Untried(key, value, source.get(key, ABSENT), ran.get(key, ABSENT)))
    return found


def _environments_at(tree: Path) -> tuple[environments.Environment, ...]:
    """The environments TREE's environments.toml lists (the tools' own list when it has none)."""
    file = tree / environments.FILE.name
    if not file.is_file():
        return environments.load()
    return environments.parse(file.read_text(encoding="utf-8"))


def environment_diffs(base: str, head: str) -> list[tuple[str, str]]:
    """(environment, unified diff) for each environment of environments.toml at BASE or HEAD,
    in order: its overlay rendered at BASE against the same at HEAD ("" when equal, an overlay
    missing on one side renders as nothing). The environments after the first get the change
    when a promotion carries it there, with their own image and model pins."""
    found: list[tuple[str, str]] = []
    with worktree(base) as before, worktree(head) as after:
        old, new = _environments_at(before), _environments_at(after)
        names = [e.name for e in new] + [e.name for e in old if e.name not in {n.name for n in new}]
        for name in names:
            texts = []
            for tree, envs in ((before, old), (after, new)):
                env = next((e for e in envs if e.name == name), None)
                present = env is not None and (tree / env.overlay / "kustomization.yaml").is_file()
                texts.append(render(tree, env) if env is not None and present else "")
            label = f"{DIRECTORY}/{name}/{FILE}"
            lines = difflib.unified_diff(
                texts[0].splitlines(keepends=True),
                texts[1].splitlines(keepends=True),
                f"a/{label}",
                f"b/{label}",
            )
            ended = (line if line.endswith("\n") else line + "\n" for line in lines)
            found.append((name, "".join(ended)))
    return found


#: The per-environment report is cut to stay below GitHub's 1 MiB step summary.
REPORT_LIMIT = 200_000


def diff_report(base: str, head: str) -> str:
    """Markdown: per environment, the rendered diff this change brings it (for a pull request)."""
    diffs = environment_diffs(base, head)
    first = environments.load()[0]
    out = [
        f"## The rendered diff each environment gets from this change\n\n"
        f"`kubectl kustomize kustomize/overlays/<env>` at the base {base[:12]} and at the head "
        f"{head[:12]}, with the base branch's tools. {first.name} gets it with the merge into "
        f"`{first.branch}`; each later environment when a promotion carries it there (which "
        "sets that environment's image and model pins).\n"
    ]
    each = max(REPORT_LIMIT // max(len(diffs), 1), 1000)
    for name, diff in diffs:
        if not diff:
            out.append(f"### {name}: no change\n")
            continue
        changed = sum(
            1 for line in diff.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")
        )
        if len(diff) > each:
            diff = diff[:each] + f"\n... cut at {each} characters: python -m gitops.rendered "
            diff += f"--diff {base[:12]} {head[:12]}\n"
        out.append(f"### {name}: {changed} lines change\n\n```diff\n{diff}```\n")
    return "\n".join(out)


def present(root: Path) -> list[environments.Environment]:
    """The environments with a rendered file in the checkout at ROOT."""
    return [env for env in environments.load() if (root / path(env)).is_file()]


def main(argv: Sequence[str]) -> int:
    names = [env.name for env in environments.load()]
    parser = OneLineParser(prog="python -m gitops.rendered", description=__doc__)
    parser.add_argument("envs", metavar="ENV", nargs="*", help=", ".join(names))
    parser.add_argument("--check", action="store_true", help="write nothing; fail when stale")
    parser.add_argument(
        "--diff",
        nargs=2,
        metavar=("BASE", "HEAD"),
        help="print each environment's rendered diff from BASE to HEAD (markdown)",
    )
    args = parser.parse_args(argv)
    if args.diff:
        if args.envs or args.check:
            parser.error("--diff takes no ENV and no --check")
        for commit in args.diff:
            if rev(f"{commit}^{{commit}}") is None:
                parser.error(f"--diff: {commit} is not a commit of this repository")
        print(diff_report(*(resolve(commit) for commit in args.diff)), end="")
        return 0
    unknown = [name for name in args.envs if name not in names]
    if unknown:
        parser.error(f"unknown environment {unknown[0]!r} (one of {', '.join(names)})")
    root = Path.cwd()  # the repository the command runs in, as the workflows and make run it
    chosen = [environments.named(n) for n in args.envs] or present(root)
    stale = []
    for env in chosen:
        target = root / path(env)
        text = render(root, env)
        if target.is_file() and target.read_text(encoding="utf-8") == text:
            continue
        if args.check:
            stale.append(path(env))
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        print(f"rendered {path(env)}")
    if stale:
        raise ToolError(
            f"{stale[0]} is not what {environments.named(stale[0].split('/')[1]).overlay} "
            "renders: run make render and commit it"
        )
    return 0


if __name__ == "__main__":
    run_main(main)
