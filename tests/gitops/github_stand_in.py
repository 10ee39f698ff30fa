"""The GitHub API stand-in as the evidence tests use it: one fixture body for test_evidence and
test_promotion (and any test whose tools read or write the gates' evidence).

:func:`evidence_api` starts the stand-in (tests/workflows/act/github_api.py) with the evidence
App installed (its key :data:`EVIDENCE_KEY`, the id evidence.toml names in the tests' repositories)
and the GitHub Actions app's run token ``RUN_TOKEN``, and points the tools at it as a workflow
step does: ``GITHUB_API_URL``, ``GITHUB_REPOSITORY`` and ``GH_TOKEN`` (the run token, or the
evidence App's installation token when ``as_evidence_app``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.workflows.act.github_api import ACTIONS_APP, EVIDENCE_APP, EVIDENCE_KEY, GitHubApi

REPOSITORY = "acme/modelops"
#: The workflow run's GITHUB_TOKEN: the GitHub Actions app's.
RUN_TOKEN = "ghs-run"  # noqa: S105 - a stand-in token


@contextmanager
def evidence_api(
    monkeypatch: pytest.MonkeyPatch, *, as_evidence_app: bool = False
) -> Iterator[GitHubApi]:
    """The stand-in and the environment the tools read it from (see the module's docstring)."""
    with GitHubApi() as api:
        api.add_app(EVIDENCE_APP["id"], EVIDENCE_APP["slug"], EVIDENCE_KEY)
        api.add_app_token(RUN_TOKEN, ACTIONS_APP)
        monkeypatch.setenv("GITHUB_API_URL", api.url)
        monkeypatch.setenv("GITHUB_REPOSITORY", REPOSITORY)
        token = api.installation_token(EVIDENCE_APP["id"], EVIDENCE_KEY) if as_evidence_app else ""
        monkeypatch.setenv("GH_TOKEN", token or RUN_TOKEN)
        yield api
