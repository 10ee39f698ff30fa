"""Suite-wide test policy.

In CI (``CI=true``) a skipped test is a failure: every prerequisite of every test is installed by
the project itself (``make test``), so a skip there means something is broken, not absent.

`make test` runs the suite on pytest-xdist workers with ``--dist loadgroup`` (mk/tests.mk). Each
module is one group, so its module and session fixtures are built once, on one worker; every e2e
test is in the one group ``e2e``, so the pods, images, stacks and workflow walks that share the
host's podman storage and CPU-bound timings run one after another, as they would alone, while the
other worker takes the unit and integration modules.
"""

import os

import pytest

# image.builds: the session's model-server image, shared by the image and deployment tests;
# alert_loop.fixtures: the drift alert loop, shared by the Prometheus test and the retrain walk
pytest_plugins = ["pytester", "image.builds", "alert_loop.fixtures"]


#: The xdist group of every e2e test (see the module docstring).
E2E_GROUP = "e2e"


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups into the node ids
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put each test in its xdist group: ``e2e`` for the e2e tier, else its module."""
    for item in items:
        group = E2E_GROUP if item.get_closest_marker("e2e") else item.nodeid.partition("::")[0]
        item.add_marker(pytest.mark.xdist_group(group))


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
