"""The Git side of the delivery flow: environments, branch order, GTO stages, overlay edits (the
retraining loop, which starts an experiment, is the package ``retraining``).

Each module with a ``main`` is a command the workflows run from the repository root, e.g.
``python -m gitops.check_pr_order HEAD BASE`` (docs/workflow.md). ``environments``,
``check_pr_order`` and ``github`` (its ``app-id``; the JWT of an App's token imports
``cryptography`` when it is asked for) use the standard library only, so the pull-request guard
runs them with the runner's own Python, before anything is installed.
"""
