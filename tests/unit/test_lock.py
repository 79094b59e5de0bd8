import multiprocessing
import time
from pathlib import Path

import pytest

from labctl.errors import EXIT_BUSY, LabBusyError
from labctl.lock import lab_lock


def _hold(path: str, seconds: float, ready: "multiprocessing.synchronize.Event") -> None:
    with lab_lock(Path(path), "t"):
        ready.set()
        time.sleep(seconds)


def test_second_command_is_refused_with_the_holder_named(tmp_path: Path) -> None:
    ready = multiprocessing.Event()
    proc = multiprocessing.Process(target=_hold, args=(str(tmp_path / "lock"), 3.0, ready))
    proc.start()
    try:
        assert ready.wait(10)
        with pytest.raises(LabBusyError) as err, lab_lock(tmp_path / "lock", "t"):
            pass
        assert err.value.exit_code == EXIT_BUSY
        assert f"pid {proc.pid}" in err.value.message
        assert "--wait" in (err.value.hint or "")
    finally:
        proc.join()


def test_waiting_gets_the_lock_once_released(tmp_path: Path) -> None:
    ready = multiprocessing.Event()
    proc = multiprocessing.Process(target=_hold, args=(str(tmp_path / "lock"), 0.5, ready))
    proc.start()
    assert ready.wait(10)
    told: list[str] = []
    with lab_lock(tmp_path / "lock", "t", wait=10, notify=told.append):
        pass
    proc.join()
    assert told and "waiting" in told[0]
