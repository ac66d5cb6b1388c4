"""Bounded waits for the tests that run threads, sockets and servers.

A test waits for a condition, never for a duration, and never asserts on how long it took
(timing assertions are banned: the suite runs on a shared, noisy 2-core machine). The bound
only keeps a broken test from hanging the run, so it is generous.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")

# How long one condition may take before the test fails: generous, the machine is shared.
WAIT = 30.0


def wait_until(
    condition: Callable[[], T], what: str, timeout: float = WAIT, interval: float = 0.02
) -> T:
    """Poll ``condition`` every ``interval`` seconds until it returns something truthy, and
    return that; fail the test naming ``what`` once ``timeout`` seconds have passed. The
    condition is checked once more after the deadline, so a slow last poll still counts."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)
