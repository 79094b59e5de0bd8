"""Shared fixtures. End-to-end tests run against one real lab (docker provider)
made for the test session under its own LABCTL_HOME, name and subnet, and
destroyed at the end; leftovers of an interrupted earlier run are removed first."""

from __future__ import annotations

import fcntl
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

E2E_LAB = os.environ.get("LABCTL_TEST_LAB", "e2e")
E2E_SUBNET = os.environ.get("LABCTL_TEST_SUBNET", "192.168.60.0/24")


@dataclass
class LabRun:
    """Runs labctl against the test lab, as a user would type it."""

    name: str
    subnet: str
    env: dict[str, str]

    def __call__(self, *args: str, timeout: float = 600, check: bool = False,
                 input: str | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "labctl", "--lab", self.name, *args],
            capture_output=True, text=True, env=self.env, timeout=timeout, input=input,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"labctl {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def lock_blocks(self, mode: int) -> bool:
        """Is the lab's lock held so that `mode` (fcntl.LOCK_EX: any holder; fcntl.LOCK_SH: a
        changing command) cannot be had right now?"""
        fd = os.open(Path(self.env["LABCTL_HOME"]) / "labs" / self.name / "lock", os.O_RDONLY)
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)

    def with_env(self, **env: str) -> LabRun:
        """The same lab, run with some environment variables changed."""
        return LabRun(self.name, self.subnet, {**self.env, **env})

    def sh(self, host: str, command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """A shell command on a lab host (as root)."""
        return self("exec", host, "--", f"sudo sh -c '{command}'" if "'" not in command
                    else f"sudo sh -c \"{command}\"", timeout=timeout)


def wait_for_line(stream: IO[str], text: str, timeout: float) -> str:
    """Read a process's output until a line holds `text` (returned); fail after `timeout` s.
    The rest of the output is read on in the background (and dropped)."""
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in iter(stream.readline, ""):
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"no line with {text!r} within {timeout:g} s; seen: {seen}") from None
        if text in line:
            return line
        seen.append(line.rstrip())


def _docker_ok() -> bool:
    return shutil.which("docker") is not None and subprocess.run(
        ["docker", "info"], capture_output=True).returncode == 0


def _remove_leftovers(name: str) -> None:
    label = f"label=labctl.lab={name}"
    ids = subprocess.run(["docker", "ps", "-aq", "--filter", label], capture_output=True, text=True).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", "-v", *ids], capture_output=True)
    subprocess.run(["docker", "network", "rm", f"labctl-{name}"], capture_output=True)


@pytest.fixture(scope="session")
def lab_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("labctl-home")


@pytest.fixture(scope="session")
def labrun(lab_home: Path) -> LabRun:
    env = os.environ.copy()
    env["LABCTL_HOME"] = str(lab_home)
    env.pop("LABCTL_LAB", None)
    return LabRun(E2E_LAB, E2E_SUBNET, env)


@pytest.fixture(scope="session")
def lab(labrun: LabRun) -> Iterator[LabRun]:
    """A real lab, up and healthy; destroyed when the session ends."""
    if not _docker_ok():
        pytest.skip("no Docker daemon: end-to-end tests need one (see .ci/run)")
    _remove_leftovers(labrun.name)
    labrun("up", "--provider", "docker", "--subnet", labrun.subnet, check=True, timeout=900)
    yield labrun
    labrun("down", timeout=300)
    _remove_leftovers(labrun.name)


@pytest.fixture
def healthy_lab(lab: LabRun) -> Iterator[LabRun]:
    """The session's lab, healed by `up` after a test that broke it."""
    yield lab
    lab("up", check=True, timeout=600)


ROOT = Path(__file__).resolve().parent.parent


def source_files() -> list[str]:
    """The checkout's files as a clone has them (tracked and new, not ignored)."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    return [f for f in out.split("\0") if f and os.path.lexists(ROOT / f)]


@pytest.fixture(scope="session")
def built_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """labctl's wheel, built by pip from a copy of the checkout (symbolic links kept as
    links, no stale build/ directory), as `pip wheel .` in a fresh clone builds it."""
    src = tmp_path_factory.mktemp("labctl-src")
    for name in source_files():
        target = src / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target, follow_symlinks=False)
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"pip wheel failed:\n{proc.stdout}\n{proc.stderr}"
    wheels = list(out.glob("labctl-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]
