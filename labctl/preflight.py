"""Preflight: what would stop a lab from booting or its swarm from working, found before
anything is booted - the provider's health, kernel features, memory and disk, and the lab's
subnet against this machine's routes. Each problem is one sentence with its fix."""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from . import facts, libvirt_host, local_docker, vm_box
from .backends import vagrant
from .errors import LabError
from .runner import Result, run_local
from .spec import DEFAULT_SUBNET_POOL, LabSpec

OK, WARN, FAIL = "ok", "warn", "fail"
VM_DISK_GIB = 3  # a VM's overlay on the box grows to about this with Docker and images
LIBVIRT_MANAGEMENT_NET = ipaddress.ip_network("192.168.121.0/24")  # vagrant-libvirt's default


@dataclass(frozen=True)
class BridgeNetfilter(facts.Fact[facts.Capability]):
    """br_netfilter: its sysctls exist only while the module is in the kernel."""

    command = "test -e /proc/sys/net/bridge/bridge-nf-call-iptables"

    def parse(self, result: Result) -> facts.Capability:
        return facts.Capability(result.ok, "" if result.ok else "no /proc/sys/net/bridge")


# What the swarm needs of a kernel, how it is tested, and what it costs to lack it.
KERNEL_FEATURES: tuple[tuple[str, facts.Fact[facts.Capability], str, str], ...] = (
    ("vxlan", facts.VxlanSupport(), FAIL, "overlay networks carry nothing"),
    ("br_netfilter", BridgeNetfilter(), WARN, "bridged traffic bypasses iptables"),
    ("ip_vs", facts.IpvsSupport(), WARN, "no routing mesh and no service VIPs: the scenarios show the "
     "tutorial's alternatives"),
    ("esp4", facts.EspSupport(), WARN, "no encrypted overlays (--opt encrypted)"),
)


@dataclass(frozen=True)
class Check:
    area: str  # provider, kernel, resources, network
    item: str
    status: str  # ok, warn, fail
    detail: str
    fix: str = ""

    def to_json(self) -> dict[str, str]:
        return asdict(self)


def run(spec: LabSpec, provider: str, fresh: bool = True) -> list[Check]:
    """Every check for a lab of `spec` on `provider`; `fresh`: the lab has not booted yet
    (memory and disk are checked only then: a running lab uses its own already)."""
    checks = _provider(spec, provider)
    checks += _kernel(provider)
    if fresh:
        checks += _resources(spec, provider)
    checks += _network(spec, provider)
    return checks


def failures(checks: list[Check]) -> list[Check]:
    return [c for c in checks if c.status == FAIL]


def require(spec: LabSpec, provider: str, fresh: bool) -> None:
    """Preflight at the start of `up`: refuse before anything boots when a check fails."""
    failed = failures(run(spec, provider, fresh=fresh))
    if failed:
        lines = "; ".join(f"{c.item}: {c.detail}" + (f" (fix: {c.fix})" if c.fix else "") for c in failed)
        raise LabError(f"preflight found {len(failed)} problem{'s' if len(failed) > 1 else ''}: {lines}",
                       hint="`labctl preflight` shows every check")


# --- provider -------------------------------------------------------------------------------

def _provider(spec: LabSpec, provider: str) -> list[Check]:
    checks = []
    if provider != "existing":
        found = shutil.which("vagrant")
        checks.append(Check("provider", "vagrant", OK if found else FAIL, found or "not installed",
                            "" if found else "apt-get install vagrant"))
    if provider == "libvirt":
        checks += _libvirt()
    elif provider == "virtualbox":
        checks += _virtualbox(spec)
    elif provider == "docker":
        why = vagrant.probe_docker()
        checks.append(Check("provider", "docker daemon", FAIL if why else OK, why or local_docker.daemon_version()
                            or "answers", "start dockerd (bootstrap.sh starts one)" if why else ""))
    return checks


def _libvirt() -> list[Check]:
    why = vagrant.probe_libvirt()
    checks = [Check("provider", "libvirt and vagrant-libvirt", FAIL if why else OK, why or "installed",
                    "apt-get install libvirt-daemon-system vagrant-libvirt qemu-system-x86 qemu-utils" if why else "")]
    if why:
        return checks
    if libvirt_host.answers():
        checks.append(Check("provider", "libvirtd", OK, f"answers on {libvirt_host.URI}"))
    elif os.geteuid() == 0 or Path("/run/systemd/system").is_dir():
        checks.append(Check("provider", "libvirtd", OK, "not running: `labctl up` starts it"))
    else:
        checks.append(Check("provider", "libvirtd", FAIL, "not running, and starting it needs root",
                            "as root: `virtlogd -d && libvirtd -d` (or `systemctl start libvirtd`)"))
    problem = libvirt_host.kvm_problem(vm_box.kernel())
    checks.append(Check("provider", "KVM", OK if problem is None else WARN,
                        "a guest kernel boots on it" if problem is None and vm_box.kernel() else
                        "usable" if problem is None else
                        f"no usable KVM ({problem}): the VMs run under qemu's TCG, several times slower",
                        "" if problem is None else "enable hardware virtualisation (VT-x/AMD-V, or nested "
                        "virtualisation for a VM) to make the lab fast"))
    return checks


def _virtualbox(spec: LabSpec) -> list[Check]:
    version = _version("VBoxManage", "--version")
    checks = [Check("provider", "VirtualBox", OK if version else FAIL, version or "VBoxManage not found",
                    "" if version else "install VirtualBox (https://www.virtualbox.org/wiki/Linux_Downloads)")]
    allowed = _vbox_ranges()
    subnet = ipaddress.IPv4Network(spec.subnet)
    if not any(subnet.subnet_of(r) for r in allowed):
        checks.append(Check("provider", "host-only range", FAIL,
                            f"{spec.subnet} is outside VirtualBox's allowed host-only ranges "
                            f"({', '.join(map(str, allowed))})",
                            f"use a subnet inside them (--subnet 192.168.56.0/24), or add `* {spec.subnet}` "
                            "to /etc/vbox/networks.conf"))
    else:
        checks.append(Check("provider", "host-only range", OK, f"{spec.subnet} is allowed"))
    return checks


def _vbox_ranges() -> list[ipaddress.IPv4Network]:
    """VirtualBox >= 6.1.28 allows host-only networks only in /etc/vbox/networks.conf, by default
    192.168.56.0/21."""
    try:
        return parse_vbox_ranges(Path("/etc/vbox/networks.conf").read_text())
    except OSError:
        return [ipaddress.IPv4Network(DEFAULT_SUBNET_POOL)]


def parse_vbox_ranges(text: str) -> list[ipaddress.IPv4Network]:
    ranges = []
    for token in re.findall(r"^\s*\*\s+(.+)$", text, re.M):
        for word in token.split():
            try:
                ranges.append(ipaddress.IPv4Network(word, strict=False))
            except ValueError:
                continue
    return ranges


def _version(*argv: str) -> str | None:
    if shutil.which(argv[0]) is None:
        return None
    try:
        result = run_local(argv, timeout=20)
    except LabError:
        return None
    return result.out.strip().splitlines()[0] if result.ok and result.out.strip() else None


# --- kernel ---------------------------------------------------------------------------------

def _kernel(provider: str) -> list[Check]:
    if provider in ("libvirt", "virtualbox"):
        return [Check("kernel", "VM kernel", OK, "each VM runs its own kernel (Debian's: vxlan, ip_vs, "
                      "br_netfilter, esp4 as modules, loaded by provisioning)")]
    if provider != "docker":
        return [Check("kernel", "hosts' kernels", OK, "checked on the hosts by `labctl up` and the scenarios")]
    # Docker-in-docker nodes share this machine's kernel: tested here, as on a host.
    if os.geteuid() != 0:  # a test link or ESP state needs root; the nodes' own checks tell later
        return [Check("kernel", "this machine's kernel", WARN, "not tested: that needs root",
                      "run `labctl preflight` as root")]
    checks = []
    for module, fact, severity, cost in KERNEL_FEATURES:
        try:
            result = run_local(("sh", "-c", fact.command), timeout=fact.timeout)
            capability = fact.parse(result)
        except LabError as exc:
            capability = facts.Capability(None, exc.message)
        if capability.ok:
            checks.append(Check("kernel", module, OK, "this machine's kernel has it (the nodes share it)"))
        elif capability.ok is None:
            checks.append(Check("kernel", module, WARN, f"could not be tested here: {capability.error}"))
        else:
            checks.append(Check("kernel", module, severity,
                                f"this machine's kernel, which the nodes share, lacks it: {cost}",
                                f"`modprobe {module}`, or a kernel with it; or VMs (--provider libvirt), "
                                "which have their own"))
    return checks


# --- resources ------------------------------------------------------------------------------

def _meminfo(key: str) -> int | None:
    try:
        match = re.search(rf"^{key}:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
    except OSError:
        return None
    return int(match.group(1)) // 1024 if match else None


def _resources(spec: LabSpec, provider: str) -> list[Check]:
    if provider == "existing":
        return []
    vms = provider in ("libvirt", "virtualbox")
    need_mib = len(spec.hosts) * spec.memory + 512 if vms else 1024
    have = _meminfo("MemAvailable")
    checks = []
    if have is not None:
        enough = have >= need_mib
        checks.append(Check("resources", "memory", OK if enough else FAIL,
                            f"{have} MiB available, {need_mib} MiB needed"
                            + (f" ({len(spec.hosts)} VMs x {spec.memory} MiB)" if vms else ""),
                            "" if enough else "free memory, or lower `memory` in the lab file (at least 768 "
                            "for a VM)"))
    where = libvirt_host.POOL_DIR.parent if provider == "libvirt" else (
        Path("/var/lib/docker") if provider == "docker" else Path.home())
    need_gib = len(spec.hosts) * VM_DISK_GIB + (2 if provider == "libvirt" else 0) if vms else 3
    probe = where
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free_gib = shutil.disk_usage(probe).free / 2**30
    enough = free_gib >= need_gib
    checks.append(Check("resources", "disk", OK if enough else FAIL,
                        f"{free_gib:.1f} GiB free at {where}, {need_gib} GiB needed",
                        "" if enough else f"free space at {where}"))
    return checks


# --- network --------------------------------------------------------------------------------

def _own_bridges(spec: LabSpec, provider: str) -> set[str]:
    """The interfaces of the lab's own network on this machine (they route its subnet)."""
    own = set()
    if provider == "docker":
        try:
            own.add(local_docker.bridge_name(spec.docker_network))
        except LabError:
            pass  # not made yet
    elif provider == "libvirt" and shutil.which("virsh") and libvirt_host.answers():
        for net in (spec.docker_network, "vagrant-libvirt"):
            info = libvirt_host.virsh("net-info", net)
            match = re.search(r"^Bridge:\s+(\S+)", info.out, re.M)
            if info.ok and match:
                own.add(match.group(1))
    return own


def routes() -> list[tuple[ipaddress.IPv4Network, str, str]]:
    """This machine's IPv4 routes: (destination, device, the route as `ip` prints it)."""
    try:
        result = run_local(("ip", "-4", "route", "show", "table", "all"), timeout=10)
    except LabError:
        return []
    found = []
    for line in result.out.splitlines():
        words = line.split()
        if not words or words[0] in ("default", "broadcast", "local", "unreachable", "prohibit", "blackhole"):
            continue
        try:
            dest = ipaddress.IPv4Network(words[0], strict=False)
        except ValueError:
            continue
        device = words[words.index("dev") + 1] if "dev" in words else ""
        found.append((dest, device, line.strip()))
    return found


def _network(spec: LabSpec, provider: str) -> list[Check]:
    if provider == "existing":
        return []
    subnet = ipaddress.ip_network(spec.subnet)
    own = _own_bridges(spec, provider)
    checks = []
    wanted = [(subnet, "the lab's subnet", "--subnet with a free /24, or `subnet` in the lab file")]
    if provider == "libvirt":
        wanted.append((LIBVIRT_MANAGEMENT_NET, "vagrant-libvirt's management network",
                       "free 192.168.121.0/24 on this machine (vagrant-libvirt's NAT network for the VMs)"))
    for net, what, fix in wanted:
        clashes = [text for dest, device, text in routes()
                   if dest.overlaps(net) and device not in own and dest.prefixlen > 0]
        if clashes:
            checks.append(Check("network", what, FAIL, f"{net} overlaps this machine's route "
                                f"`{clashes[0]}`: the hosts' traffic would not reach each other", fix))
        else:
            checks.append(Check("network", what, OK, f"{net} overlaps no route of this machine"))
    return checks
