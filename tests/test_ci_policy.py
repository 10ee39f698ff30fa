"""The suite's own rule: in CI a skipped test fails the run."""

from pathlib import Path

import pytest

CONFTEST = Path(__file__).with_name("conftest.py").read_text()
SKIPPING_TEST = """
import pytest

def test_needs_a_tool():
    pytest.skip("tool not installed")
"""


def test_it_fails_a_skipped_test_in_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(SKIPPING_TEST)
    result = pytester.runpytest_inprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*skipped in CI, which counts as a failure*tool not installed*"])


def test_it_keeps_a_skip_a_skip_outside_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(SKIPPING_TEST)
    pytester.runpytest_inprocess().assert_outcomes(skipped=1)
