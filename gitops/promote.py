"""Promote what the previous environment runs to ENV: one frozen release, gated, as a pull request.

usage: python -m gitops.promote ENV [--remote REMOTE] [--no-push] [--pr] [--body-file FILE]
                                [--acknowledge] [--verify COMMIT [--labels JSON]]

The release is what the previous environment (environments.toml) runs: its rendered manifests
on its branch (``rendered/<prev>/manifests.yaml``), which name the image by digest and the model
by version and sha256. The promotion builds, without touching the checkout, one commit on top of
ENV's branch whose tree is the previous branch's tree with ENV's overlay pointed at that same
image digest and model, and ``rendered/<env>/manifests.yaml`` rendered from it. Nothing is
rebuilt; the image is the one the previous environment pulled.

Before it builds anything, every gate of gitops.gates must pass (quality, regression, stage,
smoke, manifests), and then gate ``untried``: a setting of ENV's new rendering (outside the
identity fields) whose value neither the previous environment nor ENV ran before
(gitops.rendered.untried) is listed in the pull request under "Ran nowhere before", and refused
unless the promotion is acknowledged: ``--acknowledge`` opens the pull request with the label
gitops.gates.ACKNOWLEDGE_LABEL, and ``--verify`` passes only when ``--labels`` (the pull request's
labels, a JSON list) holds it. The first refusal prints ``error: gate <name>: <why>`` and exits
1 with no branch, tag or pull request made. When ENV's branch already holds exactly that tree, it
prints ``unchanged`` and exits 0 (re-running a finished promotion makes no commit).

Then it pushes the branch ``promote/<env>/<commit>`` to REMOTE and, with --pr, opens the pull
request into ENV's branch with ``gh``: the release, the gates' figures and the diff of the
rendered manifests. The GTO stage follows after the merge (gitops.assign_stage), so ``gto show``
names what the cluster runs.

--verify COMMIT checks a promotion pull request instead: COMMIT's first parent must be ENV's
branch, its second parent on the previous branch, the gates must pass and COMMIT's tree must be
exactly what the promotion builds. The workflow runs it as a required check, from the protected
branches, so a hand-edited promotion branch cannot merge.

Prints key=value lines for $GITHUB_OUTPUT: changed, branch, commit, version, digest.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from gitops import environments, gates, proposal, rendered, set_image
from gitops.cli import OneLineParser, ToolError, run_main
from gitops.git import (
    commit_tree,
    fetch,
    git,
    identity_is_set,
    remote_branch,
    resolve,
    rev,
    show,
    worktree,
)
from gitops.proposal import Proposal, print_outputs, propose


def split_image(image: str) -> tuple[str, str, str]:
    """NAME:TAG@DIGEST as (NAME, TAG, DIGEST); TAG or DIGEST may be empty."""
    reference, _, digest = image.partition("@")
    name, tag = reference, ""
    if ":" in reference.rpartition("/")[2]:
        name, _, tag = reference.rpartition(":")
    return name, tag, digest


def pin(tree: Path, env: environments.Environment, release: rendered.Release) -> None:
    """Point ENV's overlay in TREE at RELEASE's image (name, tag, digest) and model."""
    name, tag, digest = split_image(release.image)
    if not (tag and digest):
        raise ToolError(f"{release.image} is not pinned as NAME:SHA@DIGEST: build it with make")
    overlay = tree / env.overlay
    kustomization = overlay / "kustomization.yaml"
    entry = set_image.image_entry(kustomization, set_image.DEFAULT_IMAGE)
    text = kustomization.read_text(encoding="utf-8")
    text = set_image.with_entry_line(text, str(entry["name"]), "newName", name, kustomization)
    kustomization.write_text(text, encoding="utf-8")
    model = (release.model_version, release.model_sha256) if release.model_sha256 else None
    set_image.pin(overlay, set_image.DEFAULT_IMAGE, tag, None, model, digest)


def candidate(
    env: environments.Environment, source_ref: str, target_ref: str, tree: Path
) -> gates.Candidate:
    """The gates' view of promoting SOURCE_REF's release to ENV, with TREE (a worktree at
    SOURCE_REF) pinned and rendered for ENV."""
    source = environments.before(env)
    source_text = show(source_ref, rendered.path(source))
    if source_text is None:
        raise ToolError(
            f"{source.branch} has no {rendered.path(source)}: nothing runs in {source.name} yet"
        )
    release = rendered.release(source_text)
    if rendered.render(tree, source) != source_text:
        raise gates.GateError(
            "manifests",
            f"{rendered.path(source)} on {source.branch} is not what its overlay renders",
        )
    pin(tree, env, release)
    target_text = rendered.render(tree, env)
    (tree / rendered.path(env)).parent.mkdir(parents=True, exist_ok=True)
    (tree / rendered.path(env)).write_text(target_text, encoding="utf-8")
    current_text = show(target_ref, rendered.path(env))
    current = rendered.release(current_text) if current_text else None
    return gates.Candidate(
        source, env, source_ref, target_ref, release, source_text, target_text, current
    )


def ran_before(env: environments.Environment, target_ref: str) -> str | None:
    """What ENV ran: its rendered file on TARGET_REF; before its first release, what its overlay
    on that branch renders (the settings reviewed when the branch was made); None without it."""
    text = show(target_ref, rendered.path(env))
    if text is not None:
        return text
    with worktree(target_ref) as tree:
        if not (tree / env.overlay / "kustomization.yaml").is_file():
            return None
        return rendered.render(tree, env)


def untried_lines(c: gates.Candidate, found: list[rendered.Untried]) -> list[str]:
    """One line per untried setting: the new value, the previous environment's, the target's."""
    return [
        f"{u.setting} {u.value} ({c.source.name}: {u.source}, {c.target.name} ran: {u.ran})"
        for u in found
    ]


def untried_section(c: gates.Candidate, found: list[rendered.Untried]) -> str:
    """The pull request's "Ran nowhere before" heading and table ("" when nothing is untried)."""
    if not found:
        return ""
    rows = "\n".join(f"| `{u.setting}` | `{u.value}` | `{u.source}` | `{u.ran}` |" for u in found)
    return (
        f"\n\n### Ran nowhere before: {len(found)} settings of {c.target.name}\n\n"
        f"{c.target.name} will run these values, which neither {c.source.name} nor "
        f"{c.target.name} ran before (its own settings, from its overlay on "
        f"`{c.source.branch}`). The `verify` check refuses this pull request unless it carries "
        f"the label `{gates.ACKNOWLEDGE_LABEL}`.\n\n"
        f"| setting | {c.target.name} after the merge | {c.source.name} runs | "
        f"{c.target.name} ran |\n|---|---|---|---|\n{rows}"
    )


def summary(
    c: gates.Candidate, checked: list[tuple[str, str]], found: list[rendered.Untried]
) -> str:
    now = c.current.summary() if c.current else "nothing"
    rows = "\n".join(f"| {name} | {figure} |" for name, figure in checked)
    return (
        f"Promotes to **{c.target.name}** (branch `{c.target.branch}`) exactly what "
        f"**{c.source.name}** runs: {c.release.summary()}.\n\n"
        f"- image: `{c.release.image}` (not rebuilt)\n"
        f"- model: {c.release.model_name} {c.release.model_version}, "
        f"sha256 `{c.release.model_sha256}`\n"
        f"- {c.target.name} runs now: {now}\n\n"
        f"| gate | checked |\n|---|---|\n{rows}" + untried_section(c, found)
    )


def build(
    env: environments.Environment, source_ref: str, target_ref: str, acknowledged: bool
) -> tuple[gates.Candidate, list[tuple[str, str]], list[rendered.Untried], str]:
    """(candidate, gates' figures, untried settings, commit): the promotion commit on
    TARGET_REF, after the gates (ACKNOWLEDGED: the pull request carries the label)."""
    with worktree(source_ref) as tree:
        c = candidate(env, source_ref, target_ref, tree)
        checked = gates.check(c)
        found = rendered.untried(c.source_text, c.target_text, ran_before(env, target_ref))
        checked.append(("untried", gates.untried(c, untried_lines(c, found), acknowledged)))
        message = (
            f"promote({env.name}): {c.release.model_name} {c.release.model_version}, "
            f"image {c.release.digest}\n\nFrom {c.source.name} ({c.source.branch} "
            f"{resolve(source_ref)[:12]}): {c.release.summary()}."
        )
        commit = commit_tree(tree, [resolve(target_ref), resolve(source_ref)], message)
    return c, checked, found, commit


def main(argv: Sequence[str]) -> int:
    names = [env.name for env in environments.load()[1:]]
    parser = OneLineParser(prog="python -m gitops.promote", description=__doc__)
    parser.add_argument("env", metavar="ENV", help=", ".join(names))
    proposal.add_arguments(parser, "a promotion pull request's head")
    parser.add_argument(
        "--acknowledge",
        action="store_true",
        help=f"settings that ran nowhere before are meant: label {gates.ACKNOWLEDGE_LABEL}",
    )
    parser.add_argument(
        "--labels", metavar="JSON", help="--verify: the pull request's labels (a JSON list)"
    )
    args = parser.parse_args(argv)
    labels = parse_labels(parser, args.labels)
    if args.labels is not None and not args.verify:
        parser.error("--labels goes with --verify (a proposal takes --acknowledge)")
    if args.acknowledge and args.verify:
        parser.error("--acknowledge goes with a proposal (--verify reads the label from --labels)")
    env = environments.by_name(args.env)
    if env is None or env == environments.load()[0]:
        first = environments.load()[0]
        raise ToolError(
            f"gate order: {args.env} is not promoted by this tool (one of {', '.join(names)}); "
            f"{first.name} changes by a merge into {first.branch}"
        )
    source = environments.before(env)
    identity_is_set()
    fetch(args.remote, source.branch, env.branch)
    target_ref = remote_branch(args.remote, env.branch)
    if rev(target_ref) is None:
        raise ToolError(
            f"{args.remote} has no branch {env.branch}: git push {args.remote} "
            f"{environments.load()[0].branch}:{env.branch}"
        )
    source_ref = remote_branch(args.remote, source.branch)
    if args.verify:
        return verify(env, args.verify, source_ref, target_ref, gates.ACKNOWLEDGE_LABEL in labels)
    c, checked, found, commit = build(env, source_ref, target_ref, args.acknowledge)
    outputs = {"version": c.release.model_version, "digest": c.release.digest}
    if rev(f"{commit}^{{tree}}") == rev(f"{target_ref}^{{tree}}"):
        print(f"unchanged: {env.name} already runs {c.release.summary()}", flush=True)
        outputs.update(changed="false", branch="", commit=resolve(target_ref))
    else:
        p = Proposal(
            "promote",
            env,
            resolve(target_ref),
            commit,
            f"promote({env.name}): {c.release.model_name} {c.release.model_version}, "
            f"image {c.release.digest[:19]}",
            summary(c, checked, found),
            (gates.ACKNOWLEDGE_LABEL,) if found else (),
        )
        made = propose(p, None if args.no_push else args.remote, args.pr, args.body_file)
        outputs.update(changed=str(made).lower(), branch=p.branch, commit=commit)
    print_outputs(**outputs)
    return 0


def parse_labels(parser: OneLineParser, text: str | None) -> list[str]:
    """--labels: a JSON list of label names (as the workflow passes the event's); [] when unset,
    empty or null (an event without labels)."""
    if text is None:
        return []
    if text.strip() in ("", "null"):  # an event without labels
        return []
    try:
        labels = json.loads(text)
    except json.JSONDecodeError:
        labels = None
    if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
        parser.error(f"--labels must be a JSON list of label names, got {text[:60]!r}")
    return labels


def verify(
    env: environments.Environment, head: str, source_ref: str, target_ref: str, acknowledged: bool
) -> int:
    """--verify: HEAD is the promotion of its second parent onto ENV's branch, gates passed
    (the untried gate with ACKNOWLEDGED, from the pull request's labels)."""
    parents = git("rev-list", "--parents", "-n", "1", head).split()[1:]
    if len(parents) != 2 or parents[0] != rev(target_ref):
        raise ToolError(
            f"verify: {head[:12]} is not a promotion onto {env.branch}'s tip "
            "(rebuild it: python -m gitops.promote)"
        )
    source = environments.before(env)
    if parents[1] not in git("rev-list", "--first-parent", source_ref).split():
        raise ToolError(f"verify: {head[:12]}'s second parent is not on {source.branch}")
    _, _, _, commit = build(env, parents[1], target_ref, acknowledged)
    if rev(f"{commit}^{{tree}}") != rev(f"{head}^{{tree}}"):
        changed = git("diff", "--name-only", commit, head).split()
        raise ToolError(
            f"verify: {head[:12]} is not what gitops.promote builds: it differs in "
            f"{changed[0] if changed else 'its tree'}"
        )
    print(f"ok: {head[:12]} promotes {source.name}'s release to {env.name}, every gate passed")
    return 0


if __name__ == "__main__":
    run_main(main)
