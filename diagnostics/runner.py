"""Ships the packet prober (diagnostics/remote/wire.py) to a host over SSH and reads its answers."""

from __future__ import annotations

import json
import secrets
import shlex
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from labctl.errors import LabError
from labctl.runner import Result
from labctl.ssh import Host, fan_out, run_rerunnable


def script(name: str) -> bytes:
    """A script the hosts run (package data: diagnostics/remote)."""
    return (resources.files("diagnostics") / "remote" / name).read_bytes()


@dataclass
class WireJob:
    """One wire.py run on a host, in its own thread: READY, then PKT lines, then RESULT."""

    host: Host
    config: dict[str, Any]
    timeout: float
    on_packet: Callable[[dict[str, Any]], None] | None = None
    script: str = "wire.py"  # or another script of diagnostics/remote that speaks the same protocol
    ready: threading.Event = field(default_factory=threading.Event)
    sent: threading.Event = field(default_factory=threading.Event)  # probe mode: its probes are out
    settled: threading.Event = field(default_factory=threading.Event)  # probe mode: all seen
    signalled: bool = False  # its stop file was made
    told_sent: bool = False  # its "every host has sent" file was made
    signal_error: str = ""  # a go/stop/sent file of its that could not be made, and why
    result: dict[str, Any] | None = None
    error: str = ""
    _thread: threading.Thread | None = None

    def _line(self, line: str) -> None:
        if line == "READY":
            self.ready.set()
        elif line == "SENT":
            self.sent.set()
        elif line == "SETTLED":
            self.settled.set()
        elif line.startswith("PKT ") and self.on_packet is not None:
            packet = _json_object(line[4:])
            if packet is not None:
                self.on_packet(packet)
        elif line.startswith("RESULT "):
            result = _json_object(line[7:])
            if result is None:
                self.error = f"{self.script} printed a malformed result: {line[7:87]!r}"
                return
            if result.get("error"):  # it could not do its work at all (no capture socket, say)
                self.error = str(result["error"])
                return
            result["packets"] = packets(result)
            self.result = result

    def _work(self) -> None:
        try:
            res = self.host.run(f"python3 - {shlex.quote(json.dumps(self.config))}", sudo=True,
                                stdin=script(self.script), timeout=self.timeout, on_line=self._line)
            if self.result is None:
                self.error = self.error or res.tail(3) or f"exit {res.rc}"
        except LabError as exc:
            self.error = exc.message
        except Exception as exc:  # in a thread: an error here must become the job's error, not a traceback
            self.result = None
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.ready.set()  # never leave a waiter hanging
            self.sent.set()
            self.settled.set()

    def start(self) -> WireJob:
        self._thread = threading.Thread(target=self._work, daemon=True)
        self._thread.start()
        return self

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def packets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The decoded packets of a wire.py result, of the shape the readers expect (others dropped)."""
    raw = result.get("packets")
    if not isinstance(raw, list):
        return []
    return [p for p in raw if isinstance(p, dict) and isinstance(p.get("inner", {}), dict)]


SETTLE_GRACE = 0.05  # s: once every host has sent, how long all may take to settle before the sent files go out


def signal_file(tag: str) -> str:
    return f"/tmp/labctl-diag-{tag}-{secrets.token_hex(4)}"


def touch_all(jobs: list[WireJob], key: str) -> None:
    """Create each job's go/stop file (the barrier between hosts). A touch whose session was
    lost is made again (touching twice is touching once); one that still fails is kept in the
    jobs' `signal_error`, as the reason they never went or stopped."""
    live = [j for j in jobs if not j.error]

    def touch(host: Host) -> Result:
        command = "touch " + " ".join(shlex.quote(j.config[key]) for j in live if j.host is host)
        return run_rerunnable(host, command, sudo=True, timeout=10, check=True)

    hosts = list({j.host.name: j.host for j in live}.values())  # a host's jobs share one touch
    for name, result in fan_out(hosts, touch).items():
        if isinstance(result, BaseException):
            why = result.message if isinstance(result, LabError) else f"{type(result).__name__}: {result}"
            for job in live:
                if job.host.name == name:
                    job.signal_error = job.signal_error or f"its {key.replace('_', ' ')} could not be made ({why})"


def settle(jobs: list[WireJob], key: str, timeout: float) -> None:
    """Once every job has seen all it will see, stop them all through their `key` file
    (a job that has not settled by `timeout` stops at its own deadline, and so do the others)."""
    deadline = time.monotonic() + timeout
    for job in jobs:
        if not job.settled.wait(max(0.0, deadline - time.monotonic())):
            return
    live = [j for j in jobs if not j.error and j.result is None]
    touch_all(live, key)
    for job in live:
        job.signalled = True


def cleanup(jobs: list[WireJob], keys: list[str]) -> None:
    """Remove signal files a failed run (or one that ended before its signal) may have left."""
    fan_out([j.host for j in jobs],
            lambda h: h.run("rm -f " + " ".join(shlex.quote(j.config[k]) for j in jobs if j.host is h
                                                 for k in keys if j.config.get(k)), sudo=True, timeout=10))


def all_sent(jobs: list[WireJob], key: str, timeout: float) -> None:
    """Once every job has sent its probes, tell those still waiting (through their `key` file), so
    that each keeps capturing for its reply window after the last host's probes, not after its own:
    a host that got its go signal late is not taken for a lossy one. Nothing to tell when all settled."""
    deadline = time.monotonic() + timeout
    for job in jobs:
        job.sent.wait(max(0.0, deadline - time.monotonic()))
    grace = time.monotonic() + SETTLE_GRACE  # answers on a healthy network take milliseconds
    for job in jobs:
        if not job.settled.wait(max(0.0, grace - time.monotonic())):
            break
    if all(j.settled.is_set() for j in jobs):
        return
    live = [j for j in jobs if not j.error and j.result is None]
    touch_all(live, key)
    for job in live:
        job.told_sent = True


@contextmanager
def barrier(jobs: list[WireJob], key: str, ready_timeout: float, stop_key: str = "",
            settle_timeout: float = 0.0, sent_key: str = "") -> Iterator[None]:
    """Wait until every job's capture is open, run the body (nothing, or the traffic to watch),
    then signal every job through its `key` file (with `sent_key`: and once all have sent, through
    that file; with `stop_key`: and once all have settled, through that file) and wait for all;
    files a run did not consume are removed."""
    pace = max((getattr(job.host, "pace", 1.0) for job in jobs), default=1.0)  # slow hosts get longer
    ready_timeout, settle_timeout = ready_timeout * pace, settle_timeout * pace
    deadline = time.monotonic() + ready_timeout
    interrupted = False
    try:
        for job in jobs:
            job.ready.wait(max(0.0, deadline - time.monotonic()))
        yield
        touch_all(jobs, key)
        if sent_key:
            all_sent(jobs, sent_key, settle_timeout)
        if stop_key:
            settle(jobs, stop_key, settle_timeout)
        for job in jobs:
            job.join()
    except KeyboardInterrupt:
        # Ctrl-C: no host is waited for (one may hang); the host-side scripts end at their own
        # deadlines and remove the signal files they were given.
        interrupted = True
        raise
    finally:
        if not interrupted:
            failed = [j for j in jobs if j.result is None]
            unread = [j for j in jobs if j.signalled and j.result is not None and not j.result.get("stopped")]
            untold = [j for j in jobs if j.told_sent and j.result is not None and not j.result.get("sent_seen")]
            if failed:
                cleanup(failed, [k for k in (key, stop_key, sent_key) if k])
            if unread:
                cleanup(unread, [stop_key])
            if untold:
                cleanup(untold, [sent_key])
