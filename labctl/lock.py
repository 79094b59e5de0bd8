"""One labctl command at a time per lab: an flock on the lab's lock file."""

from __future__ import annotations

import fcntl
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import LabBusyError


def _holder(path: Path) -> str:
    try:
        pid, started, command = path.read_text().split("\n", 2)
        age = time.time() - float(started)
        return f"`{command.strip()}` (pid {pid}, running for {age:.0f} s)"
    except (OSError, ValueError):
        return "another labctl command"


@contextmanager
def lab_lock(path: Path, lab: str, wait: float = 0.0,
             notify: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the lab's lock; wait up to `wait` seconds for it, then refuse."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + wait
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _holder(path)
                if time.monotonic() >= deadline:
                    raise LabBusyError(
                        f"lab '{lab}' is busy: {holder}",
                        hint="wait for it to finish, or pass --wait SECONDS to queue behind it",
                    ) from None
                if notify and not told:
                    notify(f"waiting for {holder} to release lab '{lab}'...")
                    told = True
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n{time.time()}\nlabctl {' '.join(sys.argv[1:])}\n".encode())
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
