"""The libvirt provider's parts that need no VM: the Vagrantfile's libvirt section as Vagrant
(with vagrant-libvirt) reads it, auto-detection's order (qemu's TCG only as a last resort), the
KVM probe's proof (a real kernel booted under qemu), and preflight's judgements."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from labctl import libvirt_host, preflight, vm_box
from labctl.backends import registry
from labctl.errors import MissingToolError
from labctl.paths import vagrantfile_dir
from labctl.runner import Result
from labctl.spec import build_spec

SPEC = build_spec({"lab": {"name": "vmtest", "provider": "libvirt", "memory": 1536, "cpus": 2,
                           "subnet": "192.168.61.0/24"}})

DUMP = """
require "vagrant"
require "json"
env = Vagrant::Environment.new(cwd: ENV["VAGRANT_CWD"], ui_class: Vagrant::UI::Silent)
puts JSON.generate(env.machine_names.map { |name|
  m = env.machine(name, :libvirt)
  c = m.provider_config
  { "name" => name.to_s, "box" => m.config.vm.box, "boot_timeout" => m.config.vm.boot_timeout,
    "driver" => c.driver, "uri" => c.uri, "pool" => c.storage_pool_name, "prefix" => c.default_prefix,
    "memory" => c.memory, "cpus" => c.cpus, "cpu_mode" => c.cpu_mode, "cpu_model" => c.cpu_model,
    "networks" => m.config.vm.networks.select { |kind, _| kind == :private_network }.map { |_, o| o } }
})
"""


def _has_vagrant_libvirt() -> bool:
    if shutil.which("vagrant") is None or shutil.which("ruby") is None:
        return False
    proc = subprocess.run(["vagrant", "plugin", "list"], capture_output=True, text=True, timeout=60,
                          cwd="/", env={**os.environ, "VAGRANT_CHECKPOINT_DISABLE": "1"})
    return "vagrant-libvirt" in proc.stdout


@pytest.mark.skipif(not _has_vagrant_libvirt(), reason="vagrant-libvirt is not installed")
@pytest.mark.parametrize("driver", ["qemu", "kvm"])
def test_the_libvirt_section_is_read_as_labctl_resolved_it(tmp_path: Path, driver: str) -> None:
    lab_json = tmp_path / "lab.json"
    lab_json.write_text(json.dumps(SPEC.to_json()))
    script = tmp_path / "dump.rb"
    script.write_text(DUMP)
    env = {**os.environ, "VAGRANT_CHECKPOINT_DISABLE": "1", "VAGRANT_CWD": str(vagrantfile_dir()),
           "VAGRANT_DOTFILE_PATH": str(tmp_path / "dotfile"), "VAGRANT_HOME": str(tmp_path / "vagrant.d"),
           "LABCTL_LAB_JSON": str(lab_json), "LABCTL_BOX": vm_box.BOX, "LABCTL_LIBVIRT_DRIVER": driver}
    proc = subprocess.run(["ruby", str(script)], env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    machines = {m["name"]: m for m in json.loads(proc.stdout.strip().splitlines()[-1])}
    assert list(machines) == SPEC.host_names
    for host in SPEC.hosts:
        m = machines[host.name]
        assert (m["box"], m["driver"], m["uri"], m["pool"]) == (vm_box.BOX, driver, libvirt_host.URI,
                                                                libvirt_host.POOL)
        assert (m["prefix"], m["memory"], m["cpus"], m["boot_timeout"]) == ("labctl-vmtest-", 1536, 2, 900)
        # KVM runs the host's CPU model; emulation gets the plain qemu64 (cheaper to emulate)
        assert (m["cpu_mode"], m["cpu_model"]) == (("custom", "qemu64") if driver == "qemu" else
                                                   ("host-model", ""))
        [net] = m["networks"]  # the private network: the second interface, the swarm's address
        assert (net["ip"], net["netmask"], net["libvirt__network_name"], net["libvirt__dhcp_enabled"],
                net["libvirt__forward_mode"]) == (host.ip, "255.255.255.0", SPEC.docker_network, False, "none")


# --- auto-detection -------------------------------------------------------------------------

def _probes(monkeypatch: pytest.MonkeyPatch, virtualbox: str | None, libvirt: str | None,
            libvirt_kvm: str | None, docker: str | None) -> None:
    """Each provider's answer (None: usable); libvirt's fast form is the one with KVM."""
    for name, why_not in (("virtualbox", virtualbox), ("libvirt", libvirt), ("docker", docker)):
        fast = (lambda: libvirt_kvm) if name == "libvirt" else None
        monkeypatch.setitem(registry.REGISTRY, name, dataclasses.replace(
            registry.REGISTRY[name], probe=lambda w=why_not: w, fast_probe=fast))


def test_docker_is_preferred_to_libvirt_without_kvm(monkeypatch: pytest.MonkeyPatch) -> None:
    _probes(monkeypatch, virtualbox="VBoxManage not found", libvirt=None,
            libvirt_kvm="no usable KVM (the CPU shows no vmx/svm flag)", docker=None)
    choice = registry._detect()
    assert choice.provider == "docker"
    assert "libvirt: no usable KVM (the CPU shows no vmx/svm flag)" in choice.reason


def test_libvirt_with_kvm_is_preferred_to_docker(monkeypatch: pytest.MonkeyPatch) -> None:
    _probes(monkeypatch, virtualbox="VBoxManage not found", libvirt=None, libvirt_kvm=None, docker=None)
    assert registry._detect().provider == "libvirt"


def test_tcg_is_the_last_resort_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    _probes(monkeypatch, virtualbox="VBoxManage not found", libvirt=None,
            libvirt_kvm="no usable KVM (x)", docker="no Docker daemon answers `docker version`")
    choice = registry._detect()
    assert choice.provider == "libvirt" and choice.reason.startswith("auto-detected, slow: nothing faster")


def test_nothing_usable_is_one_error_naming_each_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    _probes(monkeypatch, virtualbox="VBoxManage not found", libvirt="virsh not found",
            libvirt_kvm="virsh not found", docker="no Docker daemon")
    with pytest.raises(MissingToolError) as err:
        registry._detect()
    assert err.value.message == ("no Vagrant provider can run here: virtualbox: VBoxManage not found; "
                                 "libvirt: virsh not found; docker: no Docker daemon")


# --- the KVM probe's proof ------------------------------------------------------------------

needs_kernel = pytest.mark.skipif(vm_box.kernel() is None or shutil.which(libvirt_host.QEMU) is None,
                                  reason="no VM box kernel built here (labctl images build-box), or no qemu")


@needs_kernel
def test_the_box_kernel_boots_under_tcg() -> None:
    kernel = vm_box.kernel()
    assert kernel is not None and libvirt_host.boots("tcg", kernel, timeout=60)


@pytest.mark.skipif(shutil.which(libvirt_host.QEMU) is None, reason="no qemu")
def test_a_file_that_is_no_kernel_does_not_count_as_booting(tmp_path: Path) -> None:
    fake = tmp_path / "vmlinuz"
    fake.write_bytes(b"\0" * 4096)
    assert not libvirt_host.boots("tcg", fake, timeout=20)


# --- preflight ------------------------------------------------------------------------------

ROUTES = """\
default via 10.0.2.2 dev eth0 proto dhcp src 10.0.2.15 metric 100
10.0.2.0/24 dev eth0 proto kernel scope link src 10.0.2.15
192.168.61.0/24 dev virbr3 proto kernel scope link src 192.168.61.1
192.168.121.0/24 dev wlan0 proto kernel scope link src 192.168.121.7
local 127.0.0.1 dev lo table local proto kernel scope host src 127.0.0.1
"""


def _fake_routes(monkeypatch: pytest.MonkeyPatch, own: set[str]) -> None:
    monkeypatch.setattr(preflight, "run_local", lambda argv, **kw: Result(0, ROUTES, ""))
    monkeypatch.setattr(preflight, "_own_bridges", lambda spec, provider: own)


def test_a_route_of_another_network_over_the_subnet_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_routes(monkeypatch, own=set())
    checks = {c.item: c for c in preflight._network(SPEC, "libvirt")}
    lab, mgmt = checks["the lab's subnet"], checks["vagrant-libvirt's management network"]
    assert (lab.status, mgmt.status) == (preflight.FAIL, preflight.FAIL)
    assert "`192.168.61.0/24 dev virbr3 proto kernel scope link src 192.168.61.1`" in lab.detail
    assert "`192.168.121.0/24 dev wlan0" in mgmt.detail and "192.168.121.0/24" in mgmt.fix


def test_the_labs_own_bridge_is_no_overlap(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_routes(monkeypatch, own={"virbr3", "wlan0"})
    assert {c.status for c in preflight._network(SPEC, "libvirt")} == {preflight.OK}


def test_virtualbox_host_only_ranges_come_from_networks_conf() -> None:
    text = "# allowed\n* 10.0.0.0/8 192.168.0.0/16\n* 2001::/64\n"
    assert preflight.parse_vbox_ranges(text) == [ipaddress.IPv4Network("10.0.0.0/8"),
                                                 ipaddress.IPv4Network("192.168.0.0/16")]
