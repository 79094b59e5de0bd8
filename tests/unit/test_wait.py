import time

import pytest

from labctl.wait import WaitTimeout, wait_until


def test_returns_what_the_condition_returned_once_it_holds() -> None:
    ready_at = time.monotonic() + 0.3
    assert wait_until(lambda: time.monotonic() >= ready_at and "ready", 5, "ready") == "ready"
    assert time.monotonic() - ready_at < 0.5


def test_fails_by_the_deadline_naming_what_it_waited_for() -> None:
    started = time.monotonic()
    with pytest.raises(WaitTimeout, match=r"the lock taken: not so after 0\.5 s"):
        wait_until(lambda: False, 0.5, "the lock taken")
    assert 0.5 <= time.monotonic() - started < 1.5


def test_a_zero_timeout_still_tries_once() -> None:
    calls: list[int] = []
    assert wait_until(lambda: calls.append(1) or True, 0, "x") is True
    with pytest.raises(WaitTimeout):
        wait_until(lambda: calls.append(1) and False, 0, "x")
    assert len(calls) == 2
