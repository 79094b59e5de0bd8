"""Who may use a lab at the same time: an flock on the lab's lock file.

Commands that change a lab (`up`, `down`, `fault add`...) hold it exclusively; commands that
read it (`status`, `exec`, `diagnose`, `capture`...) share it, so they never report a lab that
is half-made as a verdict. Only an exclusive holder records itself in the file (and empties it
when done): shared holders would overwrite each other's record.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import LabBusyError
from .wait import WaitTimeout, wait_until


def _changer(path: Path) -> str | None:
    """The command that holds the lab exclusively, as recorded in the lock file."""
    try:
        pid, started, command = path.read_text().split("\n", 2)
        age = time.time() - float(started)
        os.kill(int(pid), 0)
    except PermissionError:
        pass  # alive, another user's
    except (OSError, ValueError):  # no record, or one left by a killed command
        return None
    return f"`{command.strip()}` (pid {pid}, running for {age:.0f} s)"


def _try(fd: int, mode: int) -> bool:
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


@contextmanager
def lab_lock(path: Path, lab: str, wait: float = 0.0, notify: Callable[[str], None] | None = None,
             shared: bool = False) -> Iterator[None]:
    """Hold the lab's lock (shared: to read it); wait up to `wait` seconds for it, then refuse."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    try:
        if not _try(fd, mode):
            changer = _changer(path)
            if shared:
                busy = f"lab '{lab}' is changing: {changer or 'another labctl command changes it'}"
            else:
                busy = f"lab '{lab}' is busy: {changer or 'another labctl command is reading it'}"
            if wait > 0 and notify is not None:
                notify(f"waiting for {changer or 'another labctl command'} to release lab '{lab}'...")
            try:
                wait_until(lambda: _try(fd, mode), wait, busy, interval=0.2)
            except WaitTimeout:
                raise LabBusyError(
                    busy, hint="wait for it to finish, or pass --wait SECONDS to queue behind it",
                ) from None
        if not shared:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n{time.time()}\nlabctl {' '.join(sys.argv[1:])}\n".encode())
        try:
            yield
        finally:
            if not shared:
                os.ftruncate(fd, 0)  # still held: nobody reads a record of a command that ended
    finally:
        os.close(fd)  # closing the descriptor releases the lock
