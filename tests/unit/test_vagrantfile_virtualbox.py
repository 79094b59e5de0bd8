"""The Vagrantfile's VirtualBox section, read the way Vagrant reads it. VirtualBox cannot run on
our machines, so Vagrant itself is run against the lab file labctl writes: `vagrant validate`
with the virtualbox provider, and each machine's configuration as Vagrant loads it (box, VM name,
the `modifyvm` calls for memory and CPUs, the private network). The only stand-in is a
`VBoxManage` that answers `--version`: Vagrant asks for it before it reads a VirtualBox config."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from labctl.paths import vagrantfile_dir
from labctl.spec import LabSpec, build_spec

pytestmark = pytest.mark.skipif(shutil.which("vagrant") is None or shutil.which("ruby") is None,
                                reason="vagrant (and its ruby) are not installed")

VBOXMANAGE = """#!/bin/sh
case "$1" in --version) echo 7.0.14r161095 ;; *) echo "VBoxManage $* was not expected" >&2; exit 1 ;; esac
"""

# Each machine's configuration as Vagrant builds it for the virtualbox provider.
DUMP = """
require "vagrant"
require "json"
env = Vagrant::Environment.new(cwd: ENV["VAGRANT_CWD"], ui_class: Vagrant::UI::Silent)
puts JSON.generate(env.machine_names.map { |name|
  m = env.machine(name, :virtualbox)
  { "name" => name.to_s, "box" => m.config.vm.box, "hostname" => m.config.vm.hostname,
    "vm_name" => m.provider_config.name,
    "customize" => m.provider_config.customizations.map { |_when, args| args.map(&:to_s) },
    "networks" => m.config.vm.networks.select { |kind, _| kind == :private_network }
                    .map { |_, o| { "ip" => o[:ip], "netmask" => o[:netmask] } } }
})
"""


def _env(tmp_path: Path, spec: LabSpec, root: Path) -> dict[str, str]:
    (tmp_path / "bin").mkdir(exist_ok=True)
    stub = tmp_path / "bin" / "VBoxManage"
    stub.write_text(VBOXMANAGE)
    stub.chmod(0o755)
    lab_json = tmp_path / "lab.json"
    lab_json.write_text(json.dumps(spec.to_json()))  # what labctl writes into the lab's state folder
    return {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}", "VAGRANT_CHECKPOINT_DISABLE": "1",
            "VAGRANT_CWD": str(root), "VAGRANT_DEFAULT_PROVIDER": "virtualbox",
            "VAGRANT_DOTFILE_PATH": str(tmp_path / "dotfile"), "VAGRANT_HOME": str(tmp_path / "vagrant.d"),
            "LABCTL_LAB_JSON": str(lab_json)}


def _validate(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["vagrant", "validate"], env=env, capture_output=True, text=True, timeout=180)


SPEC = build_spec({"lab": {"name": "vbox", "provider": "virtualbox", "memory": 2048, "cpus": 2}})


def test_vagrant_validates_the_virtualbox_section(tmp_path: Path) -> None:
    proc = _validate(_env(tmp_path, SPEC, vagrantfile_dir()))
    assert proc.returncode == 0 and "validated successfully" in proc.stdout, proc.stdout + proc.stderr


def test_each_machine_is_configured_as_the_lab_says(tmp_path: Path) -> None:
    script = tmp_path / "dump.rb"
    script.write_text(DUMP)
    proc = subprocess.run(["ruby", str(script)], env=_env(tmp_path, SPEC, vagrantfile_dir()), capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    machines = {m["name"]: m for m in json.loads(proc.stdout.strip().splitlines()[-1])}
    assert list(machines) == [h.name for h in SPEC.hosts]
    for h in SPEC.hosts:
        m = machines[h.name]
        assert (m["box"], m["hostname"], m["vm_name"]) == (SPEC.box, h.name, SPEC.resource_name(h.name))
        assert m["customize"] == [["modifyvm", "id", "--memory", "2048"], ["modifyvm", "id", "--cpus", "2"]]
        # the private network, a second interface (the first is VirtualBox's NAT): what the swarm advertises
        assert m["networks"] == [{"ip": h.ip, "netmask": SPEC.netmask}]


def test_the_default_subnet_is_inside_virtualboxs_host_only_range() -> None:
    """VirtualBox 6.1.28 and later refuse host-only addresses outside 192.168.56.0/21 unless
    /etc/vbox/networks.conf allows them: the default lab must fit."""
    spec = build_spec({"lab": {"provider": "virtualbox"}})
    assert ipaddress.ip_network(spec.subnet).subnet_of(ipaddress.ip_network("192.168.56.0/21"))


def test_a_setting_virtualbox_does_not_have_is_refused(tmp_path: Path) -> None:
    """The check can fail: a misspelt VirtualBox setting makes `vagrant validate` refuse the file."""
    broken = tmp_path / "broken"
    broken.mkdir()
    text = (vagrantfile_dir() / "Vagrantfile").read_text()
    assert "vb.memory = " in text
    (broken / "Vagrantfile").write_text(text.replace("vb.memory = ", "vb.memroy = ", 1))
    proc = _validate(_env(tmp_path, SPEC, broken))
    assert proc.returncode != 0 and "memroy" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
