"""Hostile values on the real lab: a one-line usage error, and nothing run on any host or here;
output files that cannot be written are one error line after the work, not a traceback."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import LabRun

pytestmark = pytest.mark.e2e

HOSTS = ("manager", "worker-1", "worker-2")
MARKER = f"/tmp/labctl-hostile-{uuid.uuid4().hex[:10]}"


def one_error_line(stderr: str) -> str:
    """The error: one line (and a hint line) at the end; progress notes may come before it."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr
    errors = [i for i, line in enumerate(lines) if line.startswith("error: ")]
    assert len(errors) == 1, stderr
    rest = lines[errors[0] + 1:]
    assert rest == [] or (len(rest) == 1 and rest[0].startswith("hint: ")), stderr
    return lines[errors[0]]


def marker_anywhere(lab: LabRun) -> list[str]:
    found = [h for h in HOSTS if lab("exec", h, "--", f"test -e {MARKER}").returncode == 0]
    return found + (["this machine"] if Path(MARKER).exists() else [])


def with_env(lab: LabRun, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "labctl", "--lab", lab.name, *args], capture_output=True,
                          text=True, env={**lab.env, **env}, timeout=300)


@pytest.mark.parametrize("args", [
    ["scenario", "run", "standalone-overlay", "--alpine-image", f"x;touch {MARKER}"],
    ["scenario", "run", "standalone-overlay", "--images", "registry", "--alpine-image", f"x;touch {MARKER}"],
    ["scenario", "run", "container-to-service", "--images", "registry", "--nginx-image", f"$(touch {MARKER})"],
    ["diagnose", "ping", f"a;touch {MARKER}", "b"],
    ["diagnose", "ping", "container01-alpine", f"$(touch {MARKER})"],
    ["fault", "add", "worker-1", "wrong-advertise", "--addr", f"192.168.60.99;touch {MARKER}"],
])
def test_a_hostile_value_is_refused_and_runs_nothing(lab: LabRun, args: list[str]) -> None:
    proc = lab(*args, timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    one_error_line(proc.stderr)
    assert marker_anywhere(lab) == []


def test_a_hostile_image_from_the_environment_is_refused(lab: LabRun) -> None:
    proc = with_env(lab, {"LABCTL_ALPINE_IMAGE": f"x;touch {MARKER}", "LABCTL_SCENARIO_IMAGES": "registry"},
                    "scenario", "run", "standalone-overlay")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "LABCTL_ALPINE_IMAGE" in one_error_line(proc.stderr)
    assert marker_anywhere(lab) == []


def test_output_files_that_cannot_be_written(lab: LabRun) -> None:
    # /proc takes no new files: each command does its work, then fails to write, in one line
    proc = lab("diagnose", "--save-evidence", "/proc/labctl-evidence.json")
    assert proc.returncode == 1
    assert "cannot write --save-evidence file /proc/labctl-evidence.json" in one_error_line(proc.stderr)
    proc = lab("capture", "manager", "--seconds", "1", "--write", "/proc/labctl.pcap")
    assert proc.returncode == 1
    assert "cannot write --write file /proc/labctl.pcap" in one_error_line(proc.stderr)
    # a registry image the hosts may not reach: the scenario may fail, its report is written anyway
    proc = lab("scenario", "run", "default-bridge", "--images", "registry", "--report", "/proc/labctl-report.md",
               timeout=600)
    assert proc.returncode == 1
    assert "cannot write --report file /proc/labctl-report.md" in one_error_line(proc.stderr)
