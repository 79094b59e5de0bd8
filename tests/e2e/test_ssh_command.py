"""`labctl ssh` on a Vagrant lab: Vagrant's hosts get new keys with every rebuild and are reached
as `vagrant ssh` reaches them (no check, nothing recorded); existing hosts: test_existing_hosts.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import LabRun

pytestmark = pytest.mark.e2e


def test_ssh_into_a_vagrant_host_records_no_key(lab: LabRun, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    run = LabRun(lab.name, lab.subnet, {**lab.env, "LABCTL_KNOWN_HOSTS": str(known)})
    proc = run("ssh", "worker-1", input="hostname; exit\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-1:] == ["worker-1"]
    assert not known.exists()
    assert "Permanently added" not in proc.stderr and "Traceback" not in proc.stderr
