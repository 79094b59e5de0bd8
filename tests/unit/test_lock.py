import multiprocessing
import os
import time
from pathlib import Path

import pytest

from labctl.errors import EXIT_BUSY, LabBusyError, LabError
from labctl.lab import Lab
from labctl.lock import lab_lock
from labctl.spec import build_spec
from labctl.state import LabState


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


def _hold_shared(path: str, seconds: float, ready: "multiprocessing.synchronize.Event") -> None:
    with lab_lock(Path(path), "t", shared=True):
        ready.set()
        time.sleep(seconds)


def test_readers_share_the_lab(tmp_path: Path) -> None:
    ready = multiprocessing.Event()
    proc = multiprocessing.Process(target=_hold_shared, args=(str(tmp_path / "lock"), 3.0, ready))
    proc.start()
    try:
        assert ready.wait(10)
        started = time.monotonic()
        with lab_lock(tmp_path / "lock", "t", shared=True):
            assert time.monotonic() - started < 0.5
    finally:
        proc.terminate()
        proc.join()


def test_a_reader_is_told_the_lab_is_changing(tmp_path: Path) -> None:
    ready = multiprocessing.Event()
    proc = multiprocessing.Process(target=_hold, args=(str(tmp_path / "lock"), 3.0, ready))
    proc.start()
    try:
        assert ready.wait(10)
        with pytest.raises(LabBusyError) as err, lab_lock(tmp_path / "lock", "t", shared=True):
            pass
        assert err.value.exit_code == EXIT_BUSY
        assert err.value.message.startswith("lab 't' is changing: `labctl ")
        assert f"(pid {proc.pid}, running for " in err.value.message
        assert "--wait" in (err.value.hint or "")
    finally:
        proc.terminate()
        proc.join()


def test_a_waiting_reader_reads_once_the_change_is_done(tmp_path: Path) -> None:
    ready = multiprocessing.Event()
    proc = multiprocessing.Process(target=_hold, args=(str(tmp_path / "lock"), 0.5, ready))
    proc.start()
    assert ready.wait(10)
    told: list[str] = []
    with lab_lock(tmp_path / "lock", "t", wait=10, notify=told.append, shared=True):
        proc.join(0.1)
        assert proc.exitcode == 0  # the changer is done before the reader reads

    assert told and f"pid {proc.pid}" in told[0]


def test_a_changer_is_refused_while_a_reader_reads_and_no_stale_record_is_named(tmp_path: Path) -> None:
    with lab_lock(tmp_path / "lock", "t"):  # an earlier change, done
        pass
    assert (tmp_path / "lock").read_text() == ""
    ready = multiprocessing.Event()
    proc = multiprocessing.Process(target=_hold_shared, args=(str(tmp_path / "lock"), 3.0, ready))
    proc.start()
    try:
        assert ready.wait(10)
        with pytest.raises(LabBusyError) as err, lab_lock(tmp_path / "lock", "t"):
            pass
        assert err.value.message == "lab 't' is busy: another labctl command is reading it"
    finally:
        proc.terminate()
        proc.join()


def test_a_killed_changer_is_named_by_nobody(tmp_path: Path) -> None:
    ready = multiprocessing.Event()
    proc = multiprocessing.Process(target=_hold, args=(str(tmp_path / "lock"), 30.0, ready))
    proc.start()
    assert ready.wait(10)
    proc.kill()
    proc.join()
    assert f"{proc.pid}\n" in (tmp_path / "lock").read_text()  # its record is left behind
    ready = multiprocessing.Event()
    reader = multiprocessing.Process(target=_hold_shared, args=(str(tmp_path / "lock"), 3.0, ready))
    reader.start()
    try:
        assert ready.wait(10)  # the lock died with the changer
        with pytest.raises(LabBusyError) as err, lab_lock(tmp_path / "lock", "t"):
            pass
        assert f"pid {proc.pid}" not in err.value.message
    finally:
        reader.terminate()
        reader.join()


def _hold_and_remove(home: str, seconds: float, ready: "multiprocessing.synchronize.Event") -> None:
    os.environ["LABCTL_HOME"] = home
    state = LabState("t")
    with Lab(state.load_spec(), state).locked(0):
        ready.set()
        time.sleep(seconds)
        state.remove()  # as `down` does


def test_a_reader_that_waited_for_down_is_told_the_lab_is_gone(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABCTL_HOME", str(tmp_path))
    state = LabState("t")
    state.save_spec(build_spec({"lab": {"name": "t", "subnet": "192.168.77.0/24", "provider": "docker"}}))
    ready = multiprocessing.Event()
    proc = multiprocessing.Process(target=_hold_and_remove, args=(str(tmp_path), 0.5, ready))
    proc.start()
    assert ready.wait(10)
    with pytest.raises(LabError, match="was removed while this command waited"), \
            Lab(state.load_spec(), state).locked(10, shared=True):
        pass
    proc.join()
