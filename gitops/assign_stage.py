"""Make ENV's GTO stage name the model version its rendered manifests run.

usage: python -m gitops.assign_stage ENV [--ref REF] [--name NAME] [--push REMOTE]
                                    [--if-deployed]

Run after a merge into an environment's branch (a deploy, promotion or rollback pull request):
the model version in ``rendered/<env>/manifests.yaml`` at REF (default HEAD) gets ENV's stage with
``gto assign``, unless ``gto show NAME#STAGE`` already names it, so a re-run creates nothing. A
rollback therefore moves the stage back, and ``gto show`` always names what the cluster runs. The
version must be registered (its tag NAME@VERSION exists). With --push the new tag is pushed.
With --if-deployed, a branch without ENV's rendered manifests (an environment branch before its
first promotion) is not an error: it prints ``nothing is deployed to ENV yet``.

Prints key=value lines for $GITHUB_OUTPUT: version, assigned (true/false), tag.
"""

from __future__ import annotations

from collections.abc import Sequence

from gitops import environments, rendered
from gitops.cli import OneLineParser, ToolError, run, run_main
from gitops.git import git, rev, show
from gitops.register import assignment_tags


def assign(env: environments.Environment, ref: str, name: str | None) -> dict[str, str]:
    text = show(ref, rendered.path(env))
    if text is None:
        raise ToolError(f"{ref} has no {rendered.path(env)}: nothing is deployed to {env.name}")
    release = rendered.release(text)
    name = name or release.model_name
    version = release.model_version
    if rev(f"refs/tags/{name}@{version}") is None:
        raise ToolError(f"{name} {version} is not registered (no tag {name}@{version})")
    holder = run("gto", "show", f"{name}#{env.stage}", "--ref").strip()
    if holder == f"{name}@{version}":
        return {"version": version, "assigned": "false", "tag": ""}
    # --force: a rollback gives the stage back to a version that held it before.
    run("gto", "assign", name, f"{name}@{version}", "--stage", env.stage, "--force")
    return {"version": version, "assigned": "true", "tag": assignment_tags(name, env.stage)[-1]}


def main(argv: Sequence[str]) -> int:
    names = [env.name for env in environments.load()]
    parser = OneLineParser(prog="python -m gitops.assign_stage", description=__doc__)
    parser.add_argument("env", metavar="ENV", choices=names, help=", ".join(names))
    parser.add_argument("--ref", default="HEAD", help="where to read the rendered manifests")
    parser.add_argument("--name", help="GTO artifact name (default: the manifests' model name)")
    parser.add_argument("--push", metavar="REMOTE", help="push the new tag to REMOTE")
    parser.add_argument("--if-deployed", action="store_true", help="no manifests: not an error")
    args = parser.parse_args(argv)
    env = environments.named(args.env)
    if args.if_deployed and show(args.ref, rendered.path(env)) is None:
        print(f"nothing is deployed to {env.name} yet")
        return 0
    outputs = assign(env, args.ref, args.name)
    if args.push and outputs["tag"]:
        git("push", "--quiet", args.push, outputs["tag"])
    for key, value in outputs.items():
        print(f"{key}={value}")
    return 0


if __name__ == "__main__":
    run_main(main)
