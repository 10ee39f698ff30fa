"""make test's xdist groups (tests/xdist_groups.py) hold under the pinned pytest and pytest-xdist.

A small suite runs on two workers with make test's options: each module's tests on one worker, and
every e2e test, whatever its module, on one worker. Without the groups the same suite spreads a
module's tests over both workers: what pytest 9.2 did silently (pytest-dev/pytest-xdist#1386), and
what made the e2e walks collide and lose their order.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import pytest
from xdist_groups import E2E_GROUP

PLUGIN = Path(__file__).with_name("xdist_groups.py").read_text()
#: make test's options (Makefile, TEST_PARALLEL).
TEST_PARALLEL = ("-n", "2", "--dist", "loadgroup")
#: Enough tests a module that xdist's first batches split an ungrouped module over both workers.
PER_MODULE = 12


def workers_of(pytester: pytest.Pytester, *options: str) -> dict[str, set[str]]:
    """Run a suite of two plain modules and two e2e modules; map each group to its workers."""
    pytester.makeini("[pytest]\nmarkers =\n    e2e: needs root\n")
    for module, e2e in (("plain_a", False), ("plain_b", False), ("pods", True), ("stacks", True)):
        mark = "@pytest.mark.e2e\n" if e2e else ""
        tests = "".join(f"{mark}def test_{i}():\n    pass\n\n" for i in range(PER_MODULE))
        pytester.makepyfile(**{f"test_{module}": f"import pytest\n\n{tests}"})
    result = pytester.runpytest_subprocess(*TEST_PARALLEL, "-v", "-p", "no:cacheprovider", *options)
    result.assert_outcomes(passed=4 * PER_MODULE)
    workers: dict[str, set[str]] = defaultdict(set)
    for worker, module in re.findall(r"\[(gw\d)\] .*PASSED test_(\w+)\.py::", result.stdout.str()):
        workers[E2E_GROUP if module in {"pods", "stacks"} else module].add(worker)
    assert sum(1 for _ in re.finditer(r"PASSED test_", result.stdout.str())) == 4 * PER_MODULE
    return workers


def test_each_module_runs_on_one_worker_and_every_e2e_test_on_one(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(xdist_groups=PLUGIN)
    pytester.makeconftest('pytest_plugins = ["xdist_groups"]\n')
    workers = workers_of(pytester)
    assert set(workers) == {"plain_a", "plain_b", E2E_GROUP}
    assert all(len(used) == 1 for used in workers.values()), workers


def test_without_the_groups_a_modules_tests_spread_over_both_workers(
    pytester: pytest.Pytester,
) -> None:
    workers = workers_of(pytester)
    assert any(len(used) == 2 for used in workers.values()), workers
