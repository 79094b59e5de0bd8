"""A lab of hosts that already exist, reached over SSH only (no Vagrant): three
SSH + Docker hosts started here with `docker run` of the node image."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from labctl.wait import wait_until
from tests.conftest import LabRun, _docker_ok

pytestmark = pytest.mark.e2e

NET = "labctl-e2e-existing-net"
SUBNET = "192.168.65.0/24"
IMAGE = "labctl-node:bookworm"
NODE_ARGS = [
    "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
    "--device-cgroup-rule", "a *:* rwm", "--cgroupns", "host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "-v", "/var/lib/docker", "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
]
HOSTS = {"manager": "192.168.65.10", "worker-1": "192.168.65.11", "worker-2": "192.168.65.12"}


def docker(*args: str, check: bool = True) -> str:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {proc.stderr}")
    return proc.stdout.strip()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sshd_answers(port: int) -> bool:
    """Does an sshd answer on this port with its banner? (docker's port proxy accepts the
    connection and hangs up while the container's sshd is not up yet)"""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.settimeout(2)
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def wait_for_sshd(port: int) -> None:
    wait_until(lambda: sshd_answers(port), 60, f"an sshd answering on 127.0.0.1:{port}", interval=0.2)


def cleanup() -> None:
    ids = docker("ps", "-aq", "--filter", "label=labctl.test=existing", check=False).split()
    if ids:
        docker("rm", "-f", "-v", *ids, check=False)
    docker("network", "rm", NET, check=False)


@pytest.fixture(scope="module")
def existing(lab: LabRun, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabRun]:
    if not _docker_ok() or not docker("images", "-q", IMAGE, check=False):
        pytest.skip("needs Docker and the node image (the session's lab builds it)")
    cleanup()
    tmp = tmp_path_factory.mktemp("existing")
    key_dir = tmp / "my keys; $(touch pwned)"  # spaces and shell characters: passed, never interpreted
    key_dir.mkdir()
    key = paramiko.RSAKey.generate(2048)
    key.write_private_key_file(str(key_dir / "id_rsa"))
    public = f"{key.get_name()} {key.get_base64()}"
    docker("network", "create", "--subnet", SUBNET, NET)
    ports = {name: free_port() for name in HOSTS}  # fixed: they must survive a container restart
    for name, ip in HOSTS.items():
        docker("run", "-d", "--name", f"labctl-e2e-existing-{name}", "--hostname", name, "--label",
               "labctl.test=existing", "--network", NET, "--ip", ip, "-p", f"127.0.0.1:{ports[name]}:22",
               *NODE_ARGS, IMAGE)
        docker("exec", f"labctl-e2e-existing-{name}", "sh", "-c",
               f"echo '{public}' > /home/vagrant/.ssh/authorized_keys")
    lines = ['[lab]', 'name = "e2e-existing"', 'provider = "existing"', 'ssh_user = "vagrant"',
             f'ssh_key = "{key_dir / "id_rsa"}"']
    for name, ip in HOSTS.items():
        lines += [f'[hosts.{name}]', f'ip = "{ip}"', 'ssh_host = "127.0.0.1"', f'ssh_port = {ports[name]}']
    lab_file = tmp / "labctl.toml"
    lab_file.write_text("\n".join(lines) + "\n")
    env = {**lab.env, "LABCTL_KNOWN_HOSTS": str(tmp / "known_hosts")}
    run = LabRun("e2e-existing", SUBNET, env)
    run.lab_file = lab_file  # type: ignore[attr-defined]
    for port in ports.values():
        wait_for_sshd(port)
    yield run
    run("down")
    cleanup()
    assert not list(Path(tmp).glob("**/pwned")) and not Path("pwned").exists()


def swarm_state(name: str) -> str:
    return docker("exec", f"labctl-e2e-existing-{name}", "docker", "info", "--format",
                  "{{.Swarm.LocalNodeState}}", check=False)


def test_unknown_host_keys_are_refused_by_default(existing: LabRun) -> None:
    proc = existing("--lab-file", str(existing.lab_file), "up")  # type: ignore[attr-defined]
    assert proc.returncode == 1
    assert "is not in" in proc.stderr and "known_hosts" in proc.stderr
    assert "--accept-new-host-keys" in proc.stderr
    assert swarm_state("manager") != "active"  # nothing half-made


def test_up_provisions_existing_hosts_and_records_their_keys(existing: LabRun) -> None:
    lab_file = str(existing.lab_file)  # type: ignore[attr-defined]
    proc = existing("--lab-file", lab_file, "up", "--accept-new-host-keys")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "provider existing" in proc.stdout
    assert "3 existing hosts answer SSH" in proc.stdout
    assert len(Path(existing.env["LABCTL_KNOWN_HOSTS"]).read_text().splitlines()) == 3
    nodes = json.loads(docker("exec", "labctl-e2e-existing-manager", "sh", "-c",
                              "docker node inspect $(docker node ls -q)"))
    assert sorted((n["Description"]["Hostname"], n["Status"]["State"], n["Status"]["Addr"]) for n in nodes) == [
        (name, "ready", ip) for name, ip in HOSTS.items()]
    # the keys are known now: a plain re-run checks them strictly and changes nothing
    again = existing("--lab-file", lab_file, "up")
    assert again.returncode == 0 and "nothing changed" in again.stdout
    status = json.loads(existing("status", "--json").stdout)
    assert status["healthy"] is True
    assert {h["provider_state"] for h in status["hosts"]} == {"reachable"}
    assert existing("exec", "host2", "--", "hostname").stdout.strip() == "worker-1"


def test_a_changed_host_key_is_refused(existing: LabRun) -> None:
    name = "labctl-e2e-existing-worker-2"
    docker("exec", name, "sh", "-c", "rm -f /etc/ssh/ssh_host_*")
    docker("restart", name)  # the node's init makes new host keys
    wait_for_sshd(int(docker("port", name, "22").rsplit(":", 1)[1]))
    proc = existing("exec", "worker-2", "--", "true")
    assert proc.returncode == 1
    assert "CHANGED" in proc.stderr and "ssh-keygen -R" in proc.stderr
    proc = existing("--lab-file", str(existing.lab_file), "up", "--accept-new-host-keys")  # type: ignore[attr-defined]
    assert proc.returncode == 1 and "CHANGED" in proc.stderr
    # `labctl ssh` checks host keys the same way: refused for the changed host, not for the others
    proc = existing("ssh", "worker-2", input="exit\n")
    assert proc.returncode == 255 and "Host key verification failed" in proc.stderr, proc.stderr
    proc = existing("ssh", "manager", input="echo ok; exit\n")
    assert proc.returncode == 0 and "ok" in proc.stdout.split(), proc.stdout + proc.stderr


def test_down_dismantles_the_swarm_but_keeps_the_hosts(existing: LabRun) -> None:
    known = Path(existing.env["LABCTL_KNOWN_HOSTS"])
    # forget worker-2's old key (as the hint says) so `down` can reach it
    port = docker("port", "labctl-e2e-existing-worker-2", "22").rsplit(":", 1)[1]
    subprocess.run(["ssh-keygen", "-R", f"[127.0.0.1]:{port}", "-f", str(known)], capture_output=True, check=True)
    assert existing("--lab-file", str(existing.lab_file), "up",  # type: ignore[attr-defined]
                    "--accept-new-host-keys").returncode == 0
    proc = existing("ssh", "worker-2", input="echo ok; exit\n")  # its new key is known now
    assert proc.returncode == 0 and "ok" in proc.stdout.split(), proc.stdout + proc.stderr
    proc = existing("down")
    assert proc.returncode == 0, proc.stderr
    assert "hosts kept" in proc.stdout
    for name in HOSTS:
        assert swarm_state(name) == "inactive"
        assert docker("inspect", "-f", "{{.State.Running}}", f"labctl-e2e-existing-{name}") == "true"
    assert existing("status").returncode == 1  # the lab is gone from labctl's state
