"""Suite-wide test policy.

In CI (``CI=true``) a skipped test is a failure: every prerequisite of every test is installed by
the project itself (``make test``), so a skip there means something is broken, not absent.
"""

import os

import pytest

# image.builds: the session's model-server image, shared by the image and deployment tests;
# alert_loop.fixtures: the drift alert loop, shared by the Prometheus test and the retrain walk;
# xdist_groups: which tests make test's two workers may run side by side
pytest_plugins = ["pytester", "image.builds", "alert_loop.fixtures", "xdist_groups"]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> pytest.TestReport:
    report: pytest.TestReport = yield
    if in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which counts as a failure: {reason}"
    return report
