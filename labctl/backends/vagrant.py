"""The Vagrant backend: one Vagrantfile, providers virtualbox, libvirt and docker."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable

import vagrant

from .. import libvirt_host, local_docker, node_image, vm_box
from ..errors import LabError, MissingToolError
from ..paths import vagrantfile_dir
from ..runner import Result, run_local
from ..spec import LabSpec
from ..ssh import Endpoint, all_answer
from ..sshconfig import parse_ssh_config
from ..state import LabState, write_private
from .base import Boot, HostsFn, OnLine


def require_vagrant() -> str:
    path = shutil.which("vagrant")
    if path is None:
        raise MissingToolError(
            "Vagrant is not installed",
            hint="install it (Debian: apt-get install vagrant), or see the README's set-up",
        )
    return path


def _answers(*cmd: str, timeout: float = 8) -> Result | None:
    """A probe's command, or None when it cannot run or hangs."""
    try:
        return run_local(cmd, timeout=timeout)
    except LabError:
        return None


def probe_virtualbox() -> str | None:
    if shutil.which("VBoxManage") is None:
        return "VBoxManage not found"
    proc = _answers("VBoxManage", "list", "hostonlyifs")
    if proc is None or not proc.ok:
        return "VBoxManage does not answer (is the vboxdrv kernel module loaded?)"
    return None


def probe_libvirt() -> str | None:
    """libvirt as asked for: KVM where it works, qemu's TCG where not (found out at `up`)."""
    for tool, package in (("virsh", "libvirt-clients"), ("libvirtd", "libvirt-daemon-system"),
                          (libvirt_host.QEMU, "qemu-system-x86")):
        if shutil.which(tool) is None:
            return f"{tool} not found (apt-get install {package})"
    proc = _answers("vagrant", "plugin", "list", timeout=20)
    if proc is None or "vagrant-libvirt" not in proc.out:
        return "the vagrant-libvirt plugin is not installed (apt-get install vagrant-libvirt)"
    return None


def probe_libvirt_kvm() -> str | None:
    """libvirt for auto-detection: only with a usable KVM (TCG is a last resort)."""
    why_not = probe_libvirt()
    if why_not is None:
        problem = libvirt_host.kvm_problem(vm_box.kernel())
        why_not = f"no usable KVM ({problem})" if problem else None
    return why_not


def probe_docker() -> str | None:
    return None if local_docker.daemon_version() else "no Docker daemon answers `docker version`"


def _reap_children(timeout: float = 300) -> None:
    """Wait for this process's children (the interrupted `vagrant`) to exit."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.2)


class VagrantBackend:
    keeps_hosts = False
    up_state = "running"

    def __init__(self, spec: LabSpec, state: LabState, hosts: HostsFn):
        if spec.provider is None:
            raise LabError("no provider chosen for the lab")  # resolved before a backend is made
        require_vagrant()
        self.name = spec.provider
        self.spec = spec
        self.state = state
        self._hosts = hosts
        root = str(vagrantfile_dir())
        env = os.environ.copy()  # python-vagrant's env= replaces the whole environment
        env.update(
            VAGRANT_CHECKPOINT_DISABLE="1",
            VAGRANT_NO_COLOR="1",
            VAGRANT_CWD=root,
            VAGRANT_DOTFILE_PATH=str(state.vagrant_dotfile),
            VAGRANT_DEFAULT_PROVIDER=spec.provider,
            LABCTL_LAB_JSON=str(state.spec_path),
        )
        env.update(self._vm_env(state.load_vm() if state.dir.is_dir() else {}))
        self._vagrant = vagrant.Vagrant(
            root=root, env=env, err_cm=vagrant.make_file_cm(str(state.vagrant_log))
        )

    @staticmethod
    def _vm_env(vm: dict[str, str]) -> dict[str, str]:
        keys = {"box": "LABCTL_BOX", "driver": "LABCTL_LIBVIRT_DRIVER"}
        return {env: vm[key] for key, env in keys.items() if key in vm}

    def _failure(self, action: str, lines: list[str]) -> LabError:
        try:
            log = self.state.vagrant_log.read_text().strip().splitlines()
        except OSError:
            log = []
        if any("another process is already executing an action" in line for line in log):
            return LabError(f"`vagrant {action}` refused: another Vagrant process is working on this lab's machines",
                            hint="wait for it to finish (`pgrep -af vagrant` shows it), then run the command again")
        detail = [line.strip() for line in (log[-8:] or lines[-8:]) if line.strip()]
        reason = detail[-1] if detail else "no output"
        for line in detail:  # Vagrant's first error sentence is usually the most useful
            if "error" in line.lower() or "could not" in line.lower():
                reason = line
                break
        return LabError(f"`vagrant {action}` failed: {reason}", hint=f"full output: {self.state.vagrant_log}")

    def preparations(self) -> list[tuple[str, Callable[[OnLine], Boot]]]:
        if self.spec.provider == "libvirt":
            return self._libvirt_preparations()
        image = self.spec.node_image
        if self.spec.provider != "docker" or node_image.current(image):
            return []
        stale = node_image.present(image)

        def build(on_line: OnLine) -> Boot:
            on_line(f"node image {'built from older inputs' if stale else 'missing'}: building it (about a minute)")
            return Boot(f"built with {node_image.build(image, 'auto', on_line)}", changed=True)
        return [(f"build node image {image}", build)]

    def _libvirt_preparations(self) -> list[tuple[str, Callable[[OnLine], Boot]]]:
        """The box (built when it is labctl's and missing), then libvirtd, its pool and the driver.
        Box and driver are decided at the first `up` and kept: a lab's VMs are defined with them."""
        vm = self.state.load_vm()
        box, box_why = (vm["box"], "as at the lab's first `up`") if "box" in vm else vm_box.resolve(self.spec.box)
        steps: list[tuple[str, Callable[[OnLine], Boot]]] = []
        if box == vm_box.BOX and not vm_box.added(box):
            def build(on_line: OnLine) -> Boot:
                on_line(f"{box} is missing ({box_why}): building it from Debian's packages (about 5 minutes)")
                return Boot(vm_box.build(on_line), changed=True)
            steps.append((f"build VM box {box}", build))

        def prepare(on_line: OnLine) -> Boot:
            done = [d for d in (libvirt_host.ensure_kvm_device(), libvirt_host.ensure_daemons(),
                                 libvirt_host.ensure_pool()) if d]
            if "driver" in vm:
                accel = libvirt_host.Accel(vm["driver"], vm.get("accel_why", ""))
            else:
                on_line("finding out whether KVM runs a guest here")
                accel = libvirt_host.choose_accel(vm_box.kernel())
            chosen = {"box": box, "driver": accel.driver, "accel_why": accel.why}
            self.state.save_vm(chosen)
            self._vagrant.env.update(self._vm_env(chosen))
            if box == vm_box.BOX and not vm_box.current():
                on_line(f"{box} was built from older inputs: `labctl images build-box` rebuilds it")
            return Boot("; ".join([*done, f"box {box}", f"libvirt ({accel.describe()})"]),
                        changed=bool(done) or "driver" not in vm)
        steps.append(("prepare libvirt", prepare))
        return steps

    def ready(self, on_line: OnLine) -> str | None:
        try:
            known = self.state.endpoints()
        except LabError as exc:
            # Only a cache of what Vagrant reports: rebuild it rather than stop.
            on_line(f"{exc.message}: asking Vagrant again")
            self.state.save({})
            return None
        if known.keys() >= set(self.spec.host_names):
            if self.spec.provider == "docker":
                local_docker.attach_to_network(self.spec, self._tracked(), on_line)
            on_line("checking whether the hosts already answer")
            if all_answer(self._hosts(connect_timeout=3)):
                return "all hosts already running"
        return None

    def up(self, on_line: OnLine) -> Boot:
        self._vagrant_up(on_line)
        endpoints = self._ssh_config()
        missing = [h for h in self.spec.host_names if h not in endpoints]
        if missing:
            raise LabError(f"Vagrant reports no SSH endpoint for {', '.join(missing)}",
                           hint=f"see {self.state.vagrant_log}")
        self.state.save_endpoints(endpoints)
        how = self.name
        vm = self.state.load_vm()
        if self.spec.provider == "libvirt" and "driver" in vm:
            how += ", " + libvirt_host.Accel(vm["driver"], vm.get("accel_why", "")).describe()
        return Boot(f"{len(endpoints)} hosts up ({how})", changed=True)

    def _vagrant_up(self, on_line: OnLine) -> None:
        if self.spec.provider == "docker":
            local_docker.ensure_network(self.spec)
            # A `vagrant up` interrupted after `docker run` leaves a container
            # Vagrant does not know; its name would block the next create.
            local_docker.remove_untracked_nodes(self.spec.name, set(self._tracked().values()), on_line)
        elif self.spec.provider == "libvirt":
            for item in libvirt_host.remove_untracked(self._libvirt_prefix, self.spec.host_names,
                                                      set(self._tracked())):
                on_line(f"removed {item}, which an interrupted run left behind")
        write_private(self.state.vagrant_log, "")  # Vagrant appends to it; owner-only like all state
        lines: list[str] = []
        try:
            for line in self._vagrant.up(provider=self.spec.provider, stream_output=True):
                line = line.rstrip()
                lines.append(line)
                if line.strip():
                    on_line(line.strip())
        except subprocess.CalledProcessError:
            raise self._failure("up", lines) from None
        except KeyboardInterrupt:
            # Vagrant got the same Ctrl-C and cleans up its current step; leaving
            # before it finishes would leave its machine locks held for the next run.
            on_line("interrupted: waiting for Vagrant to finish cleaning up")
            _reap_children()
            raise
        if self.spec.provider == "docker":
            local_docker.attach_to_network(self.spec, self._tracked(), on_line)

    def _tracked(self) -> dict[str, str]:
        """host -> the id of the container or domain Vagrant recorded for it."""
        ids = {}
        for host in self.spec.host_names:
            id_file = self.state.vagrant_dotfile / "machines" / host / self.name / "id"
            if id_file.is_file():
                ids[host] = id_file.read_text().strip()
        return ids

    def endpoints(self) -> dict[str, Endpoint]:
        return self.state.endpoints()

    def _ssh_config(self) -> dict[str, Endpoint]:
        try:
            # One call for every machine: each `vagrant` call costs a second or two.
            text = self._vagrant.ssh_config()
        except subprocess.CalledProcessError:
            return {}
        return parse_ssh_config(text, self.spec.host_names)

    def states(self) -> dict[str, str]:
        try:
            return {s.name: s.state for s in self._vagrant.status()}
        except subprocess.CalledProcessError:
            raise self._failure("status", []) from None

    def local_bridge(self) -> str | None:
        # VirtualBox and libvirt bridge their networks here too, but labctl has only proven
        # its path faults and counters on the docker provider's bridge.
        return local_docker.bridge_name(self.spec.docker_network) if self.spec.provider == "docker" else None

    def leftovers(self) -> list[str]:
        if self.spec.provider == "docker":
            # Docker itself is the authority on containers and networks (and cheaper than Vagrant).
            return local_docker.lab_leftovers(self.spec.name)
        found = [f"{self.spec.provider} machine {name} ({state})" for name, state in self.states().items()
                 if state != "not_created"]
        if self.spec.provider == "libvirt":
            found += libvirt_host.lab_leftovers(self._libvirt_prefix, self.spec.docker_network)
        return found

    @property
    def _libvirt_prefix(self) -> str:
        return f"labctl-{self.spec.name}-"  # the Vagrantfile's default_prefix

    def destroy(self, on_line: OnLine) -> str:
        try:
            self._vagrant.destroy()
        except subprocess.CalledProcessError:
            raise self._failure("destroy", []) from None
        finally:
            if self.spec.provider == "docker":
                local_docker.remove_lab_leftovers(self.spec.name, on_line)
            elif self.spec.provider == "libvirt" and libvirt_host.answers():
                # what an interrupted `vagrant up` made and Vagrant no longer knows
                for item in libvirt_host.remove_lab_leftovers(self._libvirt_prefix, self.spec.docker_network):
                    on_line(f"removed {item}")
        return f"hosts, networks and volumes of {self.spec.provider} removed (checked)"
