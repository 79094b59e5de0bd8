"""End-to-end sessions share this machine's Docker, fixed lab names and subnets: one session
at a time. A second one waits here for the first to end (a run started under
`flock /tmp/labctl-e2e.lock` sets LABCTL_E2E_LOCK_HELD=1, or it would wait for itself)."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator

import pytest

LOCK = "/tmp/labctl-e2e.lock"


@pytest.fixture(scope="session", autouse=True)
def one_e2e_session_at_a_time() -> Iterator[None]:
    if os.environ.get("LABCTL_E2E_LOCK_HELD"):
        yield
        return
    fd = os.open(LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
