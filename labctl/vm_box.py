"""The libvirt provider's box: `debian/bookworm64` where Vagrant can download it, otherwise
labctl's own `labctl/bookworm`, built offline from Debian's packages by provision/vm-box
(as the docker provider's node image is) and added to Vagrant under that name."""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from . import libvirt_host
from .errors import LabError
from .paths import provision_dir
from .runner import Result, run_local
from .spec import DEFAULT_BOX

BOX = "labctl/bookworm"
PROVIDER = "libvirt"
BUILD_TIMEOUT = 3600.0
REGISTRY_URL = f"https://vagrantcloud.com/api/v2/box/{DEFAULT_BOX}"
# How vagrant-libvirt names the copy of a box it uploads into the storage pool.
POOL_VOLUME_PREFIX = BOX.replace("/", "-VAGRANTSLASH-") + "_vagrant_box_image_"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "labctl" / "vm-box"


def kernel() -> Path | None:
    """The box's kernel, kept when the box was built (the KVM probe boots it)."""
    path = cache_dir() / "vmlinuz"
    return path if path.is_file() else None


def box_dir() -> Path:
    return provision_dir() / "vm-box"


def inputs_hash() -> str:
    digest = hashlib.sha256()
    files = sorted(p for p in box_dir().rglob("*") if p.is_file())
    for path in [*files, provision_dir() / "node-image" / "vagrant-insecure.pub"]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def added(box: str) -> bool:
    """Whether Vagrant has `box` for libvirt."""
    result = _vagrant("box", "list", "--machine-readable", timeout=60)
    names, providers = [], []
    for line in result.out.splitlines():
        fields = line.split(",")
        if len(fields) >= 4 and fields[2] == "box-name":
            names.append(fields[3])
        elif len(fields) >= 4 and fields[2] == "box-provider":
            providers.append(fields[3])
    return (box, PROVIDER) in zip(names, providers, strict=False)


def _vagrant(*args: str, timeout: float, check: bool = False) -> Result:
    # Run outside any project: Vagrant loads the Vagrantfile of its working directory even for
    # `box` commands, and labctl's own refuses to load without a lab.
    cache_dir().mkdir(parents=True, exist_ok=True)
    return run_local(("vagrant", *args), timeout=timeout, cwd=cache_dir(), check=check,
                     env={"VAGRANT_CHECKPOINT_DISABLE": "1", "VAGRANT_CWD": str(cache_dir())})


def current() -> bool:
    stamp = cache_dir() / "inputs"
    return stamp.is_file() and stamp.read_text().strip() == inputs_hash()


def registry_reachable(timeout: float = 5) -> bool:
    try:
        with urllib.request.urlopen(urllib.request.Request(REGISTRY_URL, method="HEAD"), timeout=timeout):
            return True
    except (urllib.error.URLError, OSError, ValueError):
        return False


def resolve(box: str) -> tuple[str, str]:
    """The box a libvirt lab boots, and why: a box the lab file names is used as it is."""
    if box != DEFAULT_BOX:
        return box, "set in the lab file"
    if added(DEFAULT_BOX):
        return DEFAULT_BOX, "already added to Vagrant"
    if registry_reachable():
        return DEFAULT_BOX, "Vagrant downloads it"
    return BOX, f"{DEFAULT_BOX} cannot be downloaded here: labctl's own box, built offline"


def _pool_volumes_in_use() -> tuple[list[str], list[str]]:
    """The pool's copies of this box, and the lab volumes backed by them."""
    if not libvirt_host.answers() or not libvirt_host.virsh("pool-info", libvirt_host.POOL).ok:
        return [], []
    names = [line.split()[0] for line in libvirt_host.virsh("vol-list", libvirt_host.POOL).out.splitlines()[2:]
             if line.split()]
    copies = [n for n in names if n.startswith(POOL_VOLUME_PREFIX)]
    users = []
    for name in names:
        if name in copies:
            continue
        xml = libvirt_host.virsh("vol-dumpxml", name, "--pool", libvirt_host.POOL).out
        if any(f"/{copy}<" in xml for copy in copies):
            users.append(name)
    return copies, users


def build(on_line: Callable[[str], None], mirror: str | None = None) -> str:
    """(Re)build labctl/bookworm and add it to Vagrant; a summary."""
    if os.geteuid() != 0:
        raise LabError("building the VM box needs root (debootstrap and loop devices)",
                       hint="run `labctl images build-box` as root")
    copies, users = _pool_volumes_in_use()
    if users:
        raise LabError(f"{BOX} is in use by VMs of a lab ({', '.join(users)})",
                       hint="`labctl down` the libvirt labs first, then rebuild the box")
    out = cache_dir()
    out.mkdir(parents=True, exist_ok=True)
    argv = ["sh", str(box_dir() / "build.sh"), str(out)] + ([mirror] if mirror else [])
    run_local(argv, timeout=BUILD_TIMEOUT, on_line=on_line, check=True,
              hint="the build script's output above says which step failed")
    box_file = out / "labctl-bookworm.box"
    try:
        on_line(f"adding {BOX} to Vagrant")
        _vagrant("box", "add", "--force", "--name", BOX, "--provider", PROVIDER, str(box_file), timeout=600,
                 check=True)
    finally:
        box_file.unlink(missing_ok=True)  # Vagrant keeps its own copy
    for copy in copies:  # vagrant-libvirt would go on booting its upload of the old box
        libvirt_host.virsh("vol-delete", copy, "--pool", libvirt_host.POOL)
    (out / "inputs").write_text(inputs_hash() + "\n")
    return f"{BOX} built from Debian's packages and added to Vagrant"
