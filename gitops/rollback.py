"""Roll ENV back to the release it ran before: one command, one pull request.

usage: python -m gitops.rollback ENV [--to VERSION] [--remote REMOTE] [--no-push] [--pr]
                                 [--body-file FILE] [--verify COMMIT]

An environment branch's first-parent history is the list of what the environment ran. The
rollback finds the newest commit of it whose ``rendered/<env>/manifests.yaml`` differs from the
current one (with --to, the newest whose model version is VERSION) and builds one commit on top
of the branch with exactly that commit's tree: the rendered manifests come back byte for byte,
with the overlay and code they were rendered from. No gate but that one: the release ran in this
environment before. It pushes ``rollback/<env>/<commit>`` and, with --pr, opens the pull request
with the rendered diff. After the merge, auto-sync applies it and gitops.assign_stage moves the
GTO stage back, so ``gto show`` names what the cluster runs.

--verify COMMIT checks a pull request into ENV's branch that claims to restore an earlier state
(a rollback branch, or a ``revert-*`` branch made by GitHub's Revert button): COMMIT's first parent
is the branch's tip and its tree equals the tree of an earlier first-parent commit that holds the
environment's rendered file (a state from before the environment ran a release is refused).

Prints key=value lines for $GITHUB_OUTPUT: changed, branch, commit, version, digest.
"""

from __future__ import annotations

from collections.abc import Sequence

from gitops import environments, proposal, rendered
from gitops.cli import OneLineParser, ToolError, run_main
from gitops.git import (
    commit_of_tree,
    fetch,
    first_parents,
    git,
    identity_is_set,
    read,
    remote_branch,
    resolve,
    rev,
)
from gitops.proposal import Proposal, print_outputs, propose


def previous_release(env: environments.Environment, ref: str, version: str | None) -> str:
    """The newest first-parent commit of REF whose rendering of ENV differs from REF's (and, with
    VERSION, runs that model version)."""
    current = rev(f"{ref}:{rendered.path(env)}")
    if current is None:
        raise ToolError(f"{env.branch} has no {rendered.path(env)}: nothing to roll back")
    for commit in first_parents(ref)[1:]:
        blob = rev(f"{commit}:{rendered.path(env)}")
        if blob is None or blob == current:
            continue
        if (
            version is None
            or rendered.release(read(commit, rendered.path(env))).model_version == version
        ):
            return commit
    wanted = f" running {version}" if version else ""
    raise ToolError(f"{env.name} ran no other release{wanted} before: nothing to roll back to")


def verify(env: environments.Environment, head: str, target_ref: str) -> int:
    parents = git("rev-list", "--parents", "-n", "1", head).split()[1:]
    if not parents or parents[0] != rev(target_ref):
        raise ToolError(f"verify: {head[:12]} does not build on {env.branch}'s tip")
    tree = rev(f"{head}^{{tree}}")
    earlier = [c for c in first_parents(target_ref)[1:] if rev(f"{c}^{{tree}}") == tree]
    if not earlier:
        raise ToolError(
            f"verify: {head[:12]} does not restore a state {env.branch} had before: "
            f"use python -m gitops.rollback {env.name}, or revert the latest merge only"
        )
    if rev(f"{earlier[0]}:{rendered.path(env)}") is None:
        raise ToolError(
            f"verify: {head[:12]} restores {env.branch} as of {earlier[0][:12]}, which has no "
            f"{rendered.path(env)}: {env.name} ran no release then"
        )
    print(f"ok: {head[:12]} restores {env.branch} as of {earlier[0][:12]}")
    return 0


def main(argv: Sequence[str]) -> int:
    names = [env.name for env in environments.load()]
    parser = OneLineParser(prog="python -m gitops.rollback", description=__doc__)
    parser.add_argument("env", metavar="ENV", choices=names, help=", ".join(names))
    parser.add_argument("--to", metavar="VERSION", help="the model version to go back to")
    proposal.add_arguments(parser, "a rollback or revert pull request's head")
    args = parser.parse_args(argv)
    env = environments.named(args.env)
    identity_is_set()
    fetch(args.remote, env.branch)
    target_ref = remote_branch(args.remote, env.branch)
    if rev(target_ref) is None:
        raise ToolError(f"{args.remote} has no branch {env.branch}")
    if args.verify:
        return verify(env, args.verify, target_ref)
    tip = resolve(target_ref)
    back = previous_release(env, target_ref, args.to)
    now = rendered.release(read(target_ref, rendered.path(env)))
    then = rendered.release(read(back, rendered.path(env)))
    commit = commit_of_tree(
        back,
        [tip],
        f"rollback({env.name}): {then.model_name} {then.model_version}, image {then.digest}\n\n"
        f"Restores {env.branch} as of {back[:12]}: {then.summary()}.\n"
        f"Replaces: {now.summary()}.",
    )
    p = Proposal(
        "rollback",
        env,
        tip,
        commit,
        f"rollback({env.name}): back to {then.model_name} {then.model_version}, "
        f"image {then.digest[:19]}",
        f"Rolls **{env.name}** (branch `{env.branch}`) back to the release it ran as of "
        f"`{back[:12]}`: {then.summary()}.\n\n- runs now: {now.summary()}\n"
        f"- the tree of `{back[:12]}` is restored byte for byte; after the merge Argo CD "
        f"syncs it and the GTO stage {env.stage} moves to {then.model_version}",
    )
    made = propose(p, None if args.no_push else args.remote, args.pr, args.body_file)
    print_outputs(
        changed=str(made).lower(),
        branch=p.branch,
        commit=commit,
        version=then.model_version,
        digest=then.digest,
    )
    return 0


if __name__ == "__main__":
    run_main(main)
