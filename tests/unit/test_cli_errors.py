"""Bad input gets one line, a hint and an exit code that means something - never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from labctl.spec import build_spec


def labctl(home: Path, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
           ) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "LABCTL_HOME": str(home), **(env or {})}
    full_env.pop("LABCTL_LAB", None)
    proc = subprocess.run([sys.executable, "-m", "labctl", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=60)
    assert "Traceback" not in proc.stderr + proc.stdout
    return proc


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def fake_lab(home: Path) -> Path:
    """A lab's state as `up` leaves it, pointing at an SSH port where nothing listens."""
    d = home / "labs" / "lab"
    d.mkdir(parents=True)
    spec = build_spec({"lab": {"provider": "docker"}})
    (d / "lab.json").write_text(json.dumps(spec.to_json()))
    endpoints = {h: {"hostname": "127.0.0.1", "port": 1, "user": "vagrant", "key_file": "/nonexistent"}
                 for h in spec.host_names}
    (d / "state.json").write_text(json.dumps({"endpoints": endpoints}))
    return d


def test_command_on_a_lab_that_is_not_up(home: Path) -> None:
    proc = labctl(home, "exec", "manager", "--", "true")
    assert proc.returncode == 1
    assert "lab 'lab' is not up" in proc.stderr
    assert "labctl up" in proc.stderr


def test_unknown_host_is_a_usage_error(home: Path, fake_lab: Path) -> None:
    proc = labctl(home, "exec", "worker-9", "--", "true")
    assert proc.returncode == 2
    assert "no host named 'worker-9'" in proc.stderr
    assert "worker-1 (host2)" in proc.stderr


def test_host_that_does_not_answer_ssh(home: Path, fake_lab: Path) -> None:
    proc = labctl(home, "exec", "host2", "--", "true")
    assert proc.returncode == 1
    assert "worker-1 does not answer SSH at 127.0.0.1:1" in proc.stderr


def test_malformed_lab_file_names_the_line(home: Path, tmp_path: Path) -> None:
    (tmp_path / "labctl.toml").write_text('[lab]\nname = "ok"\nsubnet = "300.1.1.0/24"\n')
    proc = labctl(home, "up", cwd=tmp_path)
    assert proc.returncode == 2
    assert "line 3" in proc.stderr and "lab.subnet" in proc.stderr


def test_unknown_provider(home: Path) -> None:
    proc = labctl(home, "up", "--provider", "hyperv")
    assert proc.returncode == 2
    assert "unknown provider 'hyperv'" in proc.stderr


def test_missing_vagrant_is_reported_with_a_hint(home: Path, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    proc = labctl(home, "up", env={"PATH": str(bin_dir)})
    assert proc.returncode == 3
    assert "Vagrant is not installed" in proc.stderr
    assert "apt-get install vagrant" in proc.stderr
    assert not (home / "labs" / "lab").exists()  # nothing half-made


def test_damaged_state_file_is_named(home: Path, fake_lab: Path) -> None:
    (fake_lab / "state.json").write_text('{"endpoints": {"manager": ')
    proc = labctl(home, "exec", "manager", "--", "true")
    assert proc.returncode == 1
    assert str(fake_lab / "state.json") in proc.stderr
    assert "damaged" in proc.stderr


def test_down_of_a_lab_that_does_not_exist_is_harmless(home: Path) -> None:
    proc = labctl(home, "--lab", "nothing", "down")
    assert proc.returncode == 0
    assert "nothing to remove" in proc.stdout


def test_usage_errors_exit_2(home: Path) -> None:
    assert labctl(home, "no-such-command").returncode == 2
    assert labctl(home, "status", "--format", "fancy").returncode == 2
