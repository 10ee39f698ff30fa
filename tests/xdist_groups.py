"""Which tests `make test`'s pytest-xdist workers may run side by side (a pytest plugin, loaded by
tests/conftest.py).

`make test` runs the suite on two workers with ``--dist loadgroup`` (Makefile, TEST_PARALLEL):
xdist sends each group to one worker as a whole, in collection order. This plugin puts every e2e
test in the one group ``e2e``, so the pods, images, stacks and workflow walks that share the host's
podman storage, ports and CPU-bound timings run one after another as they would alone; and every
other test in its module's group, so a module's fixtures are built once, on one worker, and its
tests keep their order. tests/test_xdist_groups.py runs xdist on a small suite to show the groups
hold (and that without them a module's tests spread).
"""

from __future__ import annotations

import pytest

#: The xdist group of every e2e test.
E2E_GROUP = "e2e"


def group(item: pytest.Item) -> str:
    """The xdist group of ITEM: ``e2e`` for the e2e tier, else its module's path."""
    return E2E_GROUP if item.get_closest_marker("e2e") else item.nodeid.partition("::")[0]


@pytest.hookimpl(tryfirst=True)  # before xdist reads each item's group into its node id
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.xdist_group(group(item)))
