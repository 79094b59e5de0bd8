"""Waiting on a condition with a deadline: the one way labctl (and its tests) wait."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(TimeoutError):
    """The condition did not hold before the deadline."""


def wait_until(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll `condition` until it returns something truthy (returned), or raise WaitTimeout
    naming `what` after `timeout` seconds. The condition is always tried at least once,
    and once more at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        left = deadline - time.monotonic()
        if left <= 0:
            raise WaitTimeout(f"{what}: not so after {timeout:g} s")
        time.sleep(min(interval, left))
