"""Ships the scripts in diagnostics/remote/ to a host over SSH and reads their answers."""

from __future__ import annotations

import json
import secrets
import shlex
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labctl.errors import LabError
from labctl.ssh import Host, fan_out

REMOTE_DIR = Path(__file__).parent / "remote"


def script(name: str) -> bytes:
    return (REMOTE_DIR / name).read_bytes()


def run_json(host: Host, name: str, config: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
    """Run a remote script that prints one JSON object (last line)."""
    result = host.run(f"python3 - {shlex.quote(json.dumps(config))}", sudo=True, stdin=script(name),
                      timeout=timeout)
    lines = [line for line in result.out.splitlines() if line.strip()]
    if not result.ok or not lines:
        raise LabError(f"{host.name}: diagnostics script {name} failed: {result.tail(3)}",
                       hint="the host needs python3 (and python3-scapy for probes and captures)")
    try:
        data = json.loads(lines[-1])
    except ValueError:
        raise LabError(f"{host.name}: diagnostics script {name} printed no result: {result.tail(2)}") from None
    if not isinstance(data, dict):
        raise LabError(f"{host.name}: diagnostics script {name} printed no result")
    return data


@dataclass
class WireJob:
    """One wire.py run on a host, in its own thread: READY, then PKT lines, then RESULT."""

    host: Host
    config: dict[str, Any]
    timeout: float
    on_packet: Callable[[dict[str, Any]], None] | None = None
    ready: threading.Event = field(default_factory=threading.Event)
    result: dict[str, Any] | None = None
    error: str = ""
    _thread: threading.Thread | None = None

    def _line(self, line: str) -> None:
        if line == "READY":
            self.ready.set()
        elif line.startswith("PKT ") and self.on_packet is not None:
            self.on_packet(json.loads(line[4:]))
        elif line.startswith("RESULT "):
            self.result = json.loads(line[7:])

    def _work(self) -> None:
        try:
            res = self.host.run(f"python3 - {shlex.quote(json.dumps(self.config))}", sudo=True,
                                stdin=script("wire.py"), timeout=self.timeout, on_line=self._line)
            if self.result is None:
                self.error = res.tail(3) or f"exit {res.rc}"
        except LabError as exc:
            self.error = exc.message
        finally:
            self.ready.set()  # never leave a waiter hanging

    def start(self) -> WireJob:
        self._thread = threading.Thread(target=self._work, daemon=True)
        self._thread.start()
        return self

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()


def signal_file(tag: str) -> str:
    return f"/tmp/labctl-diag-{tag}-{secrets.token_hex(4)}"


def touch_all(jobs: list[WireJob], key: str) -> None:
    """Create each job's go/stop file (the barrier between hosts)."""
    live = [j for j in jobs if not j.error]
    fan_out([j.host for j in live],
            lambda h: h.run("touch " + " ".join(shlex.quote(j.config[key]) for j in live if j.host is h),
                            sudo=True, timeout=10))


def cleanup(jobs: list[WireJob], key: str) -> None:
    """Remove signal files a failed run may have left."""
    fan_out([j.host for j in jobs],
            lambda h: h.run("rm -f " + " ".join(shlex.quote(j.config[key]) for j in jobs if j.host is h),
                            sudo=True, timeout=10))


@contextmanager
def barrier(jobs: list[WireJob], key: str, ready_timeout: float) -> Iterator[None]:
    """Wait until every job's capture is open, run the body (nothing, or the traffic to watch),
    then signal every job through its `key` file and wait for all; a failed run's files are removed."""
    deadline = time.monotonic() + ready_timeout
    for job in jobs:
        job.ready.wait(max(0.0, deadline - time.monotonic()))
    try:
        yield
        touch_all(jobs, key)
        for job in jobs:
            job.join()
    finally:
        if any(j.result is None for j in jobs):
            cleanup(jobs, key)
