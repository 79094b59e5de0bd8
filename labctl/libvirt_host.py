"""This machine's libvirt, for the libvirt provider: its daemons (started here where no
service manager runs them), the storage pool labctl's VMs live in, whether KVM really runs
a guest or qemu's software emulation (TCG) has to, and what a lab left behind in libvirt."""

from __future__ import annotations

import grp
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from .errors import LabError, MissingToolError
from .runner import Result, run_local
from .wait import WaitTimeout, wait_until

URI = "qemu:///system"
POOL = "labctl"
POOL_DIR = Path("/var/lib/libvirt/images/labctl")
QEMU = "qemu-system-x86_64"
DAEMONS = ("virtlogd", "libvirtd")  # virtlogd first: libvirtd hands it every VM's console log
# A kernel that boots under KVM prints its first lines within a second; a KVM that cannot run
# a guest (nested virtualisation without VMX, say) hangs silently or aborts.
KVM_BOOT_DEADLINE = 12.0


def virsh(*args: str, timeout: float = 30) -> Result:
    return run_local(("virsh", "-c", URI, *args), timeout=timeout)


def answers() -> bool:
    try:
        return virsh("version", timeout=10).ok
    except LabError:
        return False


def _running(daemon: str) -> bool:
    for pid_dir in Path("/proc").iterdir():
        if pid_dir.name.isdigit():
            try:
                if (pid_dir / "comm").read_text().strip() == daemon:
                    return True
            except OSError:
                continue
    return False


def ensure_daemons() -> str | None:
    """libvirtd answering on qemu:///system; what was started to get there, or None."""
    if answers():
        return None
    if shutil.which("libvirtd") is None:
        raise MissingToolError("libvirtd is not installed",
                               hint="apt-get install libvirt-daemon-system qemu-system-x86 vagrant-libvirt")
    if Path("/run/systemd/system").is_dir():
        run_local(("systemctl", "start", "virtlogd", "libvirtd"), timeout=60, check=True)
        started = "started virtlogd and libvirtd (systemctl)"
    else:
        if os.geteuid() != 0:
            raise LabError("libvirtd is not running, and starting it needs root",
                           hint="start it as root: `virtlogd -d && libvirtd -d`")
        made = []
        for daemon in DAEMONS:
            if not _running(daemon):
                run_local((daemon, "-d"), timeout=30, check=True)
                made.append(daemon)
        started = f"started {' and '.join(made)} (no service manager runs them here)" if made else ""
    try:
        wait_until(answers, 30, "libvirtd answers on " + URI, interval=0.2)
    except WaitTimeout:
        raise LabError(f"libvirtd does not answer on {URI}",
                       hint="look at its log (/var/log/libvirt/libvirtd.log), or run `libvirtd` in a terminal") \
            from None
    return started or None


def ensure_kvm_device() -> str | None:
    """/dev/kvm as Debian's udev rule leaves it (group kvm, mode 0660), where no udev ran.
    libvirt probes qemu as root, where KVM opens, but checks the probe's validity as its qemu
    user: with a root-only /dev/kvm every domain definition re-probes qemu (seconds each)."""
    kvm = Path("/dev/kvm")
    try:
        st = kvm.stat()
        gid = grp.getgrnam("kvm").gr_gid
    except (OSError, KeyError):
        return None
    if st.st_gid == gid and st.st_mode & 0o060 == 0o060:
        return None
    if os.geteuid() != 0:
        return None
    os.chown(kvm, -1, gid)
    os.chmod(kvm, (st.st_mode & 0o7777) | 0o060)
    return "gave /dev/kvm to group kvm (mode 0660), as udev does"


def ensure_pool() -> str | None:
    """The `labctl` dir storage pool, defined and active; what was done, or None."""
    info = virsh("pool-info", POOL)
    if info.ok and re.search(r"^State:\s+running", info.out, re.M):
        return None
    done = []
    if not info.ok:
        POOL_DIR.mkdir(parents=True, exist_ok=True)
        for args in (("pool-define-as", POOL, "dir", "--target", str(POOL_DIR)), ("pool-autostart", POOL)):
            _check(virsh(*args), args)
        done.append(f"defined storage pool {POOL} ({POOL_DIR})")
    _check(virsh("pool-start", POOL), ("pool-start", POOL))
    done.append(f"started storage pool {POOL}")
    return "; ".join(done)


def _check(result: Result, args: tuple[str, ...]) -> None:
    if not result.ok:
        raise LabError(f"`virsh {' '.join(args)}` failed: {result.tail(2)}",
                       hint="`virsh -c qemu:///system pool-list --all` shows the storage pools")


@dataclass(frozen=True)
class Accel:
    driver: str  # vagrant-libvirt's: "kvm", or "qemu" for software emulation
    why: str  # why KVM is not used ("" when it is)

    def describe(self) -> str:
        return "KVM" if self.driver == "kvm" else f"qemu TCG: no usable KVM ({self.why}); slow"

    def to_json(self) -> dict[str, str]:
        return {"driver": self.driver, "why": self.why}


def boots(accel: str, kernel: Path, timeout: float = KVM_BOOT_DEADLINE) -> bool:
    """Whether `kernel` starts printing under qemu with `accel` ("kvm" or "tcg") before the
    deadline: the proof that this accelerator runs a real guest, not only that /dev/kvm opens."""
    cpu = ("-cpu", "host") if accel == "kvm" else ()
    try:
        result = run_local((QEMU, "-accel", accel, *cpu, "-m", "256", "-display", "none", "-nodefaults",
                            "-no-user-config", "-no-reboot", "-serial", "stdio", "-kernel", str(kernel),
                            "-append", "console=ttyS0 panic=-1 loglevel=4"), timeout=timeout)
    except LabError:
        return False  # hung: ended at the deadline
    return "Linux version" in result.out or "Kernel panic" in result.out


def kvm_problem(kernel: Path | None) -> str | None:
    """Why KVM cannot run the lab's VMs here, or None when a guest kernel was seen booting on it."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
    except OSError as exc:
        return f"/dev/kvm: {exc.strerror}"
    os.close(fd)
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        flags = ""
    if not re.search(r"^flags\s*:.*\b(vmx|svm)\b", flags, re.M):
        return "the CPU shows no vmx/svm flag"
    if shutil.which(QEMU) is None:
        return f"{QEMU} is not installed"
    if kernel is None or not kernel.is_file():
        return None  # nothing to boot yet: the flags and the device are all there is to go on
    if not boots("kvm", kernel):
        return f"a kernel printed nothing under KVM within {KVM_BOOT_DEADLINE:g} s"
    return None


def choose_accel(kernel: Path | None) -> Accel:
    problem = kvm_problem(kernel)
    return Accel("kvm", "") if problem is None else Accel("qemu", problem)


def lab_leftovers(prefix: str, network: str) -> list[str]:
    """libvirt domains and volumes named with the lab's prefix, and the lab's network."""
    if shutil.which("virsh") is None or not answers():
        return []
    found = []
    domains = virsh("list", "--all", "--name")
    found += [f"libvirt domain {d}" for d in domains.out.split() if d.startswith(prefix)]
    volumes = virsh("vol-list", POOL)
    found += [f"libvirt volume {line.split()[0]}" for line in volumes.out.splitlines()[2:]
              if line.split() and line.split()[0].startswith(prefix)]
    networks = virsh("net-list", "--all", "--name")
    found += [f"libvirt network {n}" for n in networks.out.split() if n == network]
    return found


def remove_untracked(prefix: str, hosts: list[str], tracked: set[str]) -> list[str]:
    """A host's domain or disk volume that Vagrant has no record of (an interrupted `vagrant up`
    makes the volumes before it defines the domains): removed, or the next `up` refuses
    ("Volume for domain is already created"). What was removed."""
    if not answers():
        return []
    removed = []
    domains = set(virsh("list", "--all", "--name").out.split())
    volumes = {line.split()[0] for line in virsh("vol-list", POOL).out.splitlines()[2:] if line.split()}
    for host in hosts:
        if host in tracked:
            continue
        name = prefix + host
        if name in domains:
            virsh("destroy", name)
            virsh("undefine", name, "--remove-all-storage")
            removed.append(f"libvirt domain {name}")
        if f"{name}.img" in volumes:
            virsh("vol-delete", f"{name}.img", "--pool", POOL)
            removed.append(f"libvirt volume {name}.img")
    return removed


def remove_lab_leftovers(prefix: str, network: str) -> list[str]:
    """Remove what `lab_leftovers` finds (only names of this lab); what was removed."""
    removed = []
    for item in lab_leftovers(prefix, network):
        kind, name = item.removeprefix("libvirt ").split(" ", 1)
        if kind == "domain":
            virsh("destroy", name)
            virsh("undefine", name, "--remove-all-storage")
        elif kind == "volume":
            virsh("vol-delete", name, "--pool", POOL)
        else:
            virsh("net-destroy", name)
            virsh("net-undefine", name)
        removed.append(item)
    return removed
