"""labctl's own files - the Vagrantfile, provision/ and the diagnostics' remote
scripts - ship in its wheel, byte for byte and with their modes, and are found
through labctl.paths from this checkout."""

from __future__ import annotations

import stat
import subprocess
import zipfile
from pathlib import Path

from labctl.paths import provision_dir, vagrantfile_dir
from tests.conftest import ROOT


def _shipped() -> list[str]:
    """Files of the checkout labctl needs at run time (not Python modules of its packages)."""
    tracked = subprocess.run(["git", "ls-files", "provision", "diagnostics/remote"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split()
    assert "provision/docker.sh" in tracked
    return ["Vagrantfile", *tracked]


def _wheel_name(path: str) -> str:
    return path if path.startswith("diagnostics/") else f"labctl/_resources/{path}"


def test_wheel_ships_the_vagrantfile_and_every_provision_file(built_wheel: Path) -> None:
    with zipfile.ZipFile(built_wheel) as whl:
        entries = {info.filename: info for info in whl.infolist()}
        for path in _shipped():
            name = _wheel_name(path)
            assert name in entries, f"{path} is not in the wheel"
            assert whl.read(name) == (ROOT / path).read_bytes(), f"{name} differs from {path}"
            wheel_exec = (entries[name].external_attr >> 16) & stat.S_IXUSR
            assert wheel_exec == (ROOT / path).stat().st_mode & stat.S_IXUSR, f"{name}: executable bit lost"


def test_resource_paths_find_the_checkouts_files() -> None:
    assert (vagrantfile_dir() / "Vagrantfile").read_bytes() == (ROOT / "Vagrantfile").read_bytes()
    for path in _shipped():
        if path.startswith("provision/"):
            assert (provision_dir() / path.removeprefix("provision/")).is_file(), path
