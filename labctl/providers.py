"""Which Vagrant provider a lab uses, and why.

Auto-detection tests what each provider relies on - a device file or an
installed plugin is not proof that a VM can run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

from .backends import docker_host
from .errors import MissingToolError, UsageError
from .spec import PROVIDERS


@dataclass(frozen=True)
class Choice:
    provider: str
    reason: str


def _run(*cmd: str, timeout: float = 8) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None


def probe_virtualbox() -> str | None:
    """None when usable, else why not."""
    if shutil.which("VBoxManage") is None:
        return "VBoxManage not found"
    proc = _run("VBoxManage", "list", "hostonlyifs")
    if proc is None or proc.returncode != 0:
        return "VBoxManage does not answer (is the vboxdrv kernel module loaded?)"
    return None


def probe_libvirt() -> str | None:
    if shutil.which("virsh") is None:
        return "virsh not found (libvirt is not installed)"
    proc = _run("virsh", "-c", "qemu:///system", "domcapabilities", "--virttype", "kvm")
    if proc is None or proc.returncode != 0:
        return "libvirtd with KVM does not answer on qemu:///system"
    proc = _run("vagrant", "plugin", "list", timeout=20)
    if proc is None or "vagrant-libvirt" not in proc.stdout:
        return "the vagrant-libvirt plugin is not installed"
    return None


def probe_docker() -> str | None:
    version = docker_host.daemon_version()
    return None if version else "no Docker daemon answers `docker version`"


PROBES = {"virtualbox": probe_virtualbox, "libvirt": probe_libvirt, "docker": probe_docker}


def choose(flag: str | None, lab_file: str | None, existing: str | None) -> Choice:
    """--provider, then LABCTL_PROVIDER, then the lab file, then the lab's current one, then detection."""
    for value, source in (
        (flag, "--provider"),
        (os.environ.get("LABCTL_PROVIDER"), "LABCTL_PROVIDER"),
        (lab_file, "the lab file"),
    ):
        if value and value != "auto":
            if value not in PROVIDERS:
                raise UsageError(f"unknown provider '{value}' (from {source})",
                                 hint=f"use one of: {', '.join(PROVIDERS)}, auto")
            why_not = PROBES[value]()
            if why_not:
                raise MissingToolError(f"provider {value} (from {source}) cannot run here: {why_not}",
                                       hint="install it, or choose another with --provider")
            return Choice(value, f"set by {source}")
    if existing:
        return Choice(existing, "the lab already runs on it")
    skipped: list[str] = []
    for name in PROVIDERS:
        why_not = PROBES[name]()
        if why_not is None:
            tried = f" ({'; '.join(skipped)})" if skipped else ""
            return Choice(name, f"auto-detected{tried}")
        skipped.append(f"{name}: {why_not}")
    raise MissingToolError(
        "no Vagrant provider can run here: " + "; ".join(skipped),
        hint="install VirtualBox or libvirt, or start a Docker daemon for the docker provider",
    )
