"""Suite-wide test policy, and the fixtures tests of several parts share.

In CI (``CI=true``) a skipped test is a failure: every prerequisite of every test is installed by
the project itself (``make test``), so a skip there means something is broken, not absent.
"""

import os
from collections.abc import Iterator

import pytest

from images import registry

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


@pytest.fixture(scope="session")
def loopback_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A container registry on a free loopback port (images/registry.py: Debian's
    docker-registry, plain HTTP, no authentication), one per test process; its HOST:PORT. The act
    walks push the image to it; the promotion tests read build attestations back from it."""
    if registry.missing():
        pytest.skip(f"{' and '.join(registry.missing())} not installed: make registry-tools")
    with registry.loopback(tmp_path_factory.mktemp("registry")) as address:
        yield address
