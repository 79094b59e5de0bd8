"""labctl installed from its wheel into a fresh virtual environment, away from the
checkout (as `pipx install` does), brings a real lab up and takes it down."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, _docker_ok, _remove_leftovers

pytestmark = pytest.mark.e2e

LAB = "e2e-wheel"
SUBNET = "192.168.66.0/24"
Labctl = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def installed(built_wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with only the wheel and its dependencies (from the package index)."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    proc = subprocess.run([str(venv / "bin/pip"), "install", "-q", str(built_wheel)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"pip install failed:\n{proc.stderr}"
    return venv


@pytest.fixture
def run(installed: Path, tmp_path: Path) -> Iterator[Labctl]:
    if not _docker_ok():
        pytest.skip("no Docker daemon: end-to-end tests need one (see .ci/run)")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "LABCTL_LAB")}
    env["LABCTL_HOME"] = str(tmp_path / "home")
    workdir = tmp_path / "work"
    workdir.mkdir()

    def labctl(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(installed / "bin/labctl"), "--lab", LAB, *args], cwd=workdir, env=env,
                              capture_output=True, text=True, timeout=timeout)

    _remove_leftovers(LAB)
    yield labctl
    labctl("down", timeout=300)
    _remove_leftovers(LAB)


def test_the_installed_wheel_runs_from_its_own_files(installed: Path) -> None:
    code = ("import labctl, diagnostics.runner as r; from labctl.paths import provision_dir, vagrantfile_dir; "
            "print(labctl.__file__); print(vagrantfile_dir()); print(provision_dir()); print(len(r.script('wire.py')))")
    out = subprocess.run([str(installed / "bin/python"), "-c", code], cwd="/", capture_output=True, text=True,
                         check=True).stdout.splitlines()
    for line in out[:3]:
        assert Path(line).resolve().is_relative_to(installed.resolve()), line
        assert not Path(line).resolve().is_relative_to(ROOT), line
    assert Path(out[1], "Vagrantfile").read_bytes() == (ROOT / "Vagrantfile").read_bytes()
    assert os.access(Path(out[2], "node-image", "build-offline.sh"), os.X_OK)
    assert int(out[3]) == len((ROOT / "diagnostics/remote/wire.py").read_bytes())


def test_installed_labctl_brings_a_lab_up_and_down(run: Labctl) -> None:
    up = run("up", "--provider", "docker", "--subnet", SUBNET)
    assert up.returncode == 0, f"up exited {up.returncode}:\n{up.stdout}\n{up.stderr}"
    status = json.loads(run("status", "--json").stdout)
    assert status["healthy"] is True
    assert [(h["host"], h["swarm_state"]) for h in status["hosts"]] == [
        ("manager", "ready"), ("worker-1", "ready"), ("worker-2", "ready")]

    down = run("down", timeout=300)
    assert down.returncode == 0, f"down exited {down.returncode}:\n{down.stdout}\n{down.stderr}"
    left = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=labctl.lab={LAB}"],
                          capture_output=True, text=True, check=True).stdout.split()
    assert left == []
    assert subprocess.run(["docker", "network", "inspect", f"labctl-{LAB}"], capture_output=True).returncode != 0
