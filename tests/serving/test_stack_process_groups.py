"""devstack.stack's process groups: Stack.stop kills what is left of each server's group and
returns only once the kernel has torn it down (a SIGKILLed process lingers a moment, which once
made test_serving_stack's "no uWSGI process outlived the stopped stack" fail now and then)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

from devstack.stack import StackError, group_gone, group_members


@pytest.fixture
def group() -> Iterator[subprocess.Popen[bytes]]:
    """A process group of its own: a shell and its sleeping child."""
    leader = subprocess.Popen(["sh", "-c", "sleep 60 & wait"], start_new_session=True)
    try:
        yield leader
    finally:
        os.killpg(leader.pid, signal.SIGKILL)
        leader.wait()


def test_a_killed_group_is_waited_for_until_none_of_it_is_left(
    group: subprocess.Popen[bytes],
) -> None:
    deadline = time.monotonic() + 10
    while len(group_members(group.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(group_members(group.pid)) == 2  # the shell and its sleep
    os.killpg(group.pid, signal.SIGKILL)
    group_gone(group.pid)
    assert group_members(group.pid) == []


def test_a_group_that_does_not_die_is_an_error_not_a_silent_return(
    group: subprocess.Popen[bytes],
) -> None:
    with pytest.raises(StackError, match=rf"^process group {group.pid} outlived SIGKILL: \["):
        group_gone(group.pid, timeout=0.2)
