"""`labctl ssh`'s OpenSSH arguments follow the lab's host-key policy (checked with `ssh -G`,
which prints the options ssh would use without connecting)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from labctl.ssh import Endpoint, client_argv

needs_ssh = pytest.mark.skipif(shutil.which("ssh") is None, reason="no OpenSSH client")


def effective(argv: list[str]) -> dict[str, str]:
    """What ssh makes of these arguments: `ssh -G` prints its resolved options."""
    assert argv[0] == "ssh"
    proc = subprocess.run(["ssh", "-G", *argv[1:]], capture_output=True, text=True, check=True,
                          stdin=subprocess.DEVNULL, env={"HOME": "/nonexistent", "PATH": "/usr/bin:/bin"})
    options: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        key, _, value = line.partition(" ")
        options.setdefault(key, value)
    return options


def test_vagrant_hosts_are_not_checked_as_vagrant_ssh_does() -> None:
    argv = client_argv(Endpoint("127.0.0.1", 2222, "vagrant", "/lab/.vagrant/private_key"))
    assert "StrictHostKeyChecking=no" in argv and "UserKnownHostsFile=/dev/null" in argv
    assert argv[-2:] == ["--", "127.0.0.1"]


@pytest.mark.parametrize("policy,expected", [("strict", "yes"), ("accept-new", "accept-new")])
def test_existing_hosts_are_checked_against_known_hosts(
        policy: str, expected: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    known = tmp_path / "my known hosts"
    monkeypatch.setenv("LABCTL_KNOWN_HOSTS", str(known))
    argv = client_argv(Endpoint("54.1.2.3", 22, "admin", "", host_keys=policy))
    assert "StrictHostKeyChecking=no" not in argv and not any("/dev/null" in a for a in argv)
    assert f"StrictHostKeyChecking={expected}" in argv
    assert not any(a.startswith("IdentityFile") for a in argv)  # none: the agent and ~/.ssh keys


@needs_ssh
@pytest.mark.parametrize("policy,expected", [("strict", "true"), ("accept-new", "accept-new"),
                                             ("vagrant", "false")])
def test_ssh_reads_the_policy_and_known_hosts_as_meant(
        policy: str, expected: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    known = tmp_path / 'odd "dir" 100%' / "known_hosts"
    monkeypatch.setenv("LABCTL_KNOWN_HOSTS", str(known))
    key = tmp_path / "keys; $(x) %d" / "id_rsa"
    options = effective(client_argv(Endpoint("10.0.0.5", 2200, "ops", str(key), host_keys=policy)))
    assert options["stricthostkeychecking"] == expected
    assert options["userknownhostsfile"] == ("/dev/null" if policy == "vagrant" else str(known))
    assert options["identityfile"].replace("%%", "%") == str(key)  # -G shows it before %-expansion
    assert (options["user"], options["hostname"], options["port"]) == ("ops", "10.0.0.5", "2200")
