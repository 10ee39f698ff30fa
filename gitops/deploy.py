"""Propose deploying a freshly built image to the first environment: the deploy pull request.

usage: python -m gitops.deploy SHA --digest sha256:HEX --model-version vX.Y.Z --model-sha256 HEX
                               [--registry PREFIX] [--remote REMOTE] [--no-push] [--pr]
                               [--body-file FILE]

Role: the last step of promote.yml, once the image of commit SHA was built and pushed (and the
demo's, gitops.demo); the one place the deploy pull request is written. It builds, without
touching the checkout, one commit on top of the first environment's branch (environments.toml:
dev, on main) that pins its overlay to that image and model (gitops.set_image.pin: the tag SHA,
the manifest digest, the model's version and sha256) and re-renders
``rendered/<env>/manifests.yaml`` from it. Then it pushes the branch ``deploy/<stage>/<SHA>`` to
REMOTE and, with --pr, opens the pull request into the environment's branch with ``gh``
(gitops.proposal: the release, then the rendered diff). Argo CD applies it after the merge; the
environments workflow then gives the model the environment's GTO stage (gitops.assign_stage). The
later environments change only by promotion (gitops.promote).

It proposes nothing, and says why, when REMOTE has the branch ``deploy/<stage>/<SHA>`` already
("... is proposed already": a re-run of the same push) or the overlay already runs that image and
model ("unchanged: ..."). With --registry, the overlay must already pull from PREFIX (the image
just pushed), or nothing is changed. A refusal is one line, ``error: ...``, exit status 1, with
nothing pushed.

Prints key=value lines for $GITHUB_OUTPUT: changed, branch, commit, version, digest.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from gitops import environments, rendered, set_image
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

#: What a deploy branch is named: the environment's GTO stage and the commit the image was built
#: from (gitops.check_pr_order lets it change only that stage's overlay and rendered file).
BRANCH = "deploy/{stage}/{sha}"


def summary(env: environments.Environment, sha: str, release: rendered.Release, now: str) -> str:
    """The pull request's text above the rendered diff: what the image is and what changes."""
    return (
        f"Deploys to **{env.name}** (branch `{env.branch}`) the image built once from "
        f"`{sha}`: {release.summary()}.\n\n"
        f"- image: `{release.image}` (staging and prod later pull this same digest)\n"
        f"- model: {release.model_name}@{release.model_version}, "
        f"sha256 `{release.model_sha256}`\n"
        f"- {env.name} runs now: {now}\n\n"
        f"The change: newTag and digest in `{env.overlay}/kustomization.yaml`, the model-version "
        f"and model-sha256 annotations in `{env.overlay}/provenance.yaml` (the pod's MODELOPS_* "
        f"variables), and `{rendered.path(env)}` re-rendered from them. Argo CD applies it after "
        f"the merge; the environments workflow then gives {release.model_version} the stage "
        f"{env.stage}."
    )


def build(
    env: environments.Environment,
    target_ref: str,
    sha: str,
    registry: str | None,
    model: tuple[str, str],
    digest: str,
) -> tuple[str, rendered.Release] | None:
    """(commit, release): TARGET_REF with ENV's overlay pinned to the image SHA@DIGEST and MODEL
    (version, sha256) and its rendered file re-rendered; None when the overlay runs them already."""
    with worktree(target_ref) as tree:
        overlay = tree / env.overlay
        if not set_image.pin(overlay, set_image.DEFAULT_IMAGE, sha, registry, model, digest):
            return None
        text = rendered.render(tree, env)
        (tree / rendered.path(env)).parent.mkdir(parents=True, exist_ok=True)
        (tree / rendered.path(env)).write_text(text, encoding="utf-8")
        release = rendered.release(text)
        message = (
            f"deploy({env.stage}): model-server {sha} "
            f"({release.model_name}@{release.model_version})"
        )
        return commit_tree(tree, [resolve(target_ref)], message), release


def main(argv: Sequence[str]) -> int:
    parser = OneLineParser(prog="python -m gitops.deploy", description=__doc__)
    parser.add_argument("sha", metavar="SHA", help="the full git SHA the image was built from")
    parser.add_argument("--digest", required=True, type=set_image.image_digest,
                        help="the pushed image's manifest digest sha256:<64 hex>")  # fmt: skip
    parser.add_argument("--model-version", required=True, type=set_image.model_version,
                        help="the GTO version the image ships, e.g. v0.3.0")  # fmt: skip
    parser.add_argument("--model-sha256", required=True, type=set_image.model_sha256,
                        help="the sha256 of the model the image ships (64 hex)")  # fmt: skip
    parser.add_argument("--registry", help="require the overlay's newName PREFIX/IMAGE")
    parser.add_argument("--remote", default="origin", help="where the branches are (origin)")
    parser.add_argument("--no-push", action="store_true", help="build the branch locally only")
    parser.add_argument("--pr", action="store_true", help="open the pull request (gh)")
    parser.add_argument("--body-file", type=Path, help="write the pull request body here")
    args = parser.parse_args(argv)
    if not set_image.FULL_SHA.fullmatch(args.sha):
        parser.error(f"SHA {args.sha!r} is not a full 40-character lowercase git SHA")
    env = environments.load()[0]
    branch = BRANCH.format(stage=env.stage, sha=args.sha)
    identity_is_set()
    outputs = {"version": args.model_version, "digest": args.digest}
    remote = None if args.no_push else args.remote
    if remote is not None and git("ls-remote", "--heads", remote, branch).strip():
        print(f"{branch} is proposed already", flush=True)
        outputs.update(changed="false", branch=branch, commit="")
    else:
        outputs.update(deploy(env, branch, args, remote))
    print_outputs(**outputs)
    return 0


def deploy(
    env: environments.Environment, branch: str, args: argparse.Namespace, remote: str | None
) -> dict[str, str]:
    """Build the deploy commit and propose it as BRANCH (pushed to REMOTE unless None); the
    outputs changed, branch and commit."""
    fetch(args.remote, env.branch)
    target_ref = remote_branch(args.remote, env.branch)
    if rev(target_ref) is None:
        raise ToolError(f"{args.remote} has no branch {env.branch}")
    model = (args.model_version, args.model_sha256)
    built = build(env, target_ref, args.sha, args.registry, model, args.digest)
    if built is None:
        print(f"unchanged: the {env.name} overlay already runs {args.sha}", flush=True)
        return {"changed": "false", "branch": "", "commit": resolve(target_ref)}
    commit, release = built
    current = show(target_ref, rendered.path(env))
    now = rendered.release(current).summary() if current else "nothing"
    p = Proposal(
        "deploy",
        env,
        resolve(target_ref),
        commit,
        f"deploy({env.stage}): {release.model_name} {release.model_version}, image {args.sha}",
        summary(env, args.sha, release, now),
        head=branch,
        footer=(
            "Made by `python -m gitops.deploy` after the image build (promote.yml); the order "
            f"check lets `{branch}` change only the {env.name} overlay's image and model and "
            "its rendered file.\n"
        ),
    )
    made = propose(p, remote, args.pr, args.body_file)
    return {"changed": str(made).lower(), "branch": p.branch, "commit": commit}


if __name__ == "__main__":
    run_main(main)
