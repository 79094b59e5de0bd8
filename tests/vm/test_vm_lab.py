"""A real VM lab: three libvirt VMs booted through Vagrant (KVM where it works, qemu's software
emulation where not), provisioned, in one swarm on their private network; the routing mesh
answering on every node; an encrypted overlay; diagnose on the healthy lab and on one fault;
`down` leaving no domain, volume, network or process. The tests run in file order on one lab."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from labctl import libvirt_host, vm_box
from tests.conftest import LabRun

pytestmark = pytest.mark.vm

NAME, SUBNET = "vme2e", "192.168.58.0/24"
PREFIX = f"labctl-{NAME}-"
HOSTS = {"manager": "192.168.58.10", "worker-1": "192.168.58.11", "worker-2": "192.168.58.12"}


def _virsh(*args: str) -> str:
    return subprocess.run(["virsh", "-c", libvirt_host.URI, *args], capture_output=True, text=True,
                          timeout=60).stdout


def _pids(daemon: str) -> set[str]:
    return set(subprocess.run(["pgrep", "-x", daemon], capture_output=True, text=True).stdout.split())


def _lab_processes() -> list[str]:
    """qemu processes of this lab's VMs (libvirt names each guest on its command line)."""
    out = subprocess.run(["pgrep", "-af", f"guest={PREFIX}"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "pgrep" not in line]


def _leftovers() -> list[str]:
    found = [f"domain {d}" for d in _virsh("list", "--all", "--name").split() if d.startswith(PREFIX)]
    found += [f"volume {v}" for v in re.findall(r"^\s*(\S+)", _virsh("vol-list", libvirt_host.POOL), re.M)
              if v.startswith(PREFIX)]
    found += [f"network {n}" for n in _virsh("net-list", "--all", "--name").split() if n == f"labctl-{NAME}"]
    return found + [f"process {p}" for p in _lab_processes()]


@pytest.fixture(scope="module")
def vm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabRun]:
    """The VM lab's runner; what the module started of libvirt is stopped at its end."""
    if os.geteuid() != 0:
        pytest.skip("the libvirt provider's set-up here needs root")
    from labctl.backends.vagrant import probe_libvirt
    why_not = probe_libvirt()
    if why_not:
        pytest.skip(f"libvirt cannot run here: {why_not} (run-tests.sh installs it)")
    home = tmp_path_factory.mktemp("labctl-vm-home")
    lab_file = home / "labctl.toml"
    # The box is named, so the suite never waits on a download: labctl builds it when it is missing.
    lab_file.write_text(f'[lab]\nname = "{NAME}"\nsubnet = "{SUBNET}"\nprovider = "libvirt"\n'
                        f'box = "{vm_box.BOX}"\n')
    env = {**os.environ, "LABCTL_HOME": str(home), "VAGRANT_CHECKPOINT_DISABLE": "1"}
    env.pop("LABCTL_LAB", None)
    daemons_before = {d: _pids(d) for d in libvirt_host.DAEMONS}
    runner = LabRun(NAME, SUBNET, env)
    runner.lab_file = lab_file  # type: ignore[attr-defined]
    try:
        yield runner
    finally:
        if (home / "labs" / NAME).exists():
            runner("down", timeout=900)
        for daemon, before in daemons_before.items():
            for pid in _pids(daemon) - before:  # only what this suite started
                subprocess.run(["kill", pid], check=False)


def run(vm: LabRun, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "labctl", "--lab-file", str(vm.lab_file),  # type: ignore[attr-defined]
                           *args], capture_output=True, text=True, env=vm.env, timeout=timeout)


def test_up_boots_three_vms_in_one_swarm_on_their_private_addresses(vm: LabRun) -> None:
    proc = run(vm, "up", "--json", timeout=3600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    status = json.loads(proc.stdout)
    rows = {h["host"]: h for h in status["hosts"]}
    assert set(rows) == set(HOSTS)
    for host, ip in HOSTS.items():
        assert (rows[host]["private_ip"], rows[host]["swarm_state"]) == (ip, "ready"), rows[host]
    domains = sorted(d for d in _virsh("list", "--name").split() if d.startswith(PREFIX))
    assert domains == [PREFIX + h for h in sorted(HOSTS)]
    driver = json.loads((Path(vm.env["LABCTL_HOME"]) / "labs" / NAME / "vm.json").read_text())["driver"]
    assert f"<domain type='{'kvm' if driver == 'kvm' else 'qemu'}'" in _virsh("dumpxml", PREFIX + "manager")
    for host, ip in HOSTS.items():
        # The swarm advertises the private network (eth1), never the NAT interface.
        out = vm.sh(host, "ip -4 -o addr show dev eth1; docker info --format '{{.Swarm.NodeAddr}}'; "
                    "lsmod; cat /etc/modules-load.d/labctl-swarm.conf").stdout
        assert f"inet {ip}/24" in out and f"\n{ip}\n" in out, out
        loaded = {line.split()[0] for line in out.splitlines() if line and not line.startswith(" ")}
        assert {"ip_vs", "br_netfilter", "vxlan", "esp4"} <= loaded
        assert {"ip_vs", "vxlan", "esp4"} <= set(out.split())


def test_up_again_changes_nothing(vm: LabRun) -> None:
    proc = run(vm, "up")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "all hosts already running" in proc.stdout
    assert "the lab was already up: nothing changed" in proc.stderr + proc.stdout


def _scenario(vm: LabRun, name: str) -> dict:
    proc = run(vm, "scenario", name, "--json", timeout=2400)
    data = json.loads(proc.stdout)
    [result] = data["scenarios"]
    assert proc.returncode == 0, json.dumps(result, indent=1)[-4000:]
    return result


def _steps(result: dict) -> dict[str, str]:
    return {s["title"]: s["status"] for s in result["steps"]}


def test_default_overlay_runs_the_routing_mesh_on_every_node(vm: LabRun) -> None:
    steps = _steps(_scenario(vm, "default-overlay"))
    assert "skip" not in steps.values(), steps
    for host in HOSTS:
        assert steps[f"port 80 of {host} answers through the routing mesh"] == "pass"
    assert steps["port 80 of worker-2, which runs no task, answers through the routing mesh"] == "pass"
    assert not [t for t in steps if "host mode" in t or "mode=host" in t]  # no alternative was needed


@pytest.mark.vm_full
def test_user_defined_overlay_answers_on_8080_through_the_mesh(vm: LabRun) -> None:
    steps = _steps(_scenario(vm, "user-defined-overlay"))
    assert "skip" not in steps.values(), steps
    assert {steps[f"port 8080 of {h} answers through the routing mesh"] for h in HOSTS} == {"pass"}


@pytest.mark.vm_full
def test_an_encrypted_overlay_carries_the_ping_as_esp(vm: LabRun) -> None:
    steps = _steps(_scenario(vm, "standalone-overlay"))
    assert "skip" not in steps.values(), steps
    assert steps["the ping crossed as ESP: worker-1's IPsec state from host1 counted packets"] == "pass"


def _diagnose(vm: LabRun, *args: str) -> dict:
    proc = run(vm, "diagnose", *args, "--json", timeout=600)
    assert proc.returncode in (0, 1), proc.stderr
    return json.loads(proc.stdout)


def _problems(data: dict) -> set[tuple]:
    return {(f["code"], f["host"], f.get("peer"), f.get("port"), f.get("direction"), f.get("where"))
            for f in data["findings"] if f["severity"] in ("error", "warning")}


def test_diagnose_finds_nothing_on_the_healthy_lab(vm: LabRun) -> None:
    data = _diagnose(vm)
    assert data["healthy"] and _problems(data) == set(), data["findings"]


def test_diagnose_names_a_blocked_vxlan_port_and_only_it(vm: LabRun) -> None:
    assert run(vm, "fault", "add", "worker-1", "block", "--port", "4789/udp").returncode == 0
    try:
        data = _diagnose(vm, "worker-1")
        assert {p[:5] for p in _problems(data)} == {
            ("port-dropped", "worker-1", "manager", 4789, "inbound"),
            ("port-dropped", "worker-1", "worker-2", 4789, "inbound")}, data["findings"]
    finally:
        cleared = run(vm, "fault", "clear", timeout=300)
        assert cleared.returncode == 0, cleared.stderr
    assert _diagnose(vm)["healthy"]


def test_down_leaves_no_domain_volume_network_or_process(vm: LabRun) -> None:
    proc = run(vm, "down", timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _leftovers() == []
    assert not (Path(vm.env["LABCTL_HOME"]) / "labs" / NAME).exists()
