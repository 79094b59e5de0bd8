"""Shared fixtures. End-to-end tests run against one real lab (docker provider)
made for the test session under its own LABCTL_HOME, name and subnet, and
destroyed at the end; leftovers of an interrupted earlier run are removed first."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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

    def sh(self, host: str, command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """A shell command on a lab host (as root)."""
        return self("exec", host, "--", f"sudo sh -c '{command}'" if "'" not in command
                    else f"sudo sh -c \"{command}\"", timeout=timeout)


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
