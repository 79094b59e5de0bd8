"""A lab: its description, its state folder, its backend and its hosts."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import backends, lock
from .backends import Backend
from .errors import LabError, UsageError
from .spec import (
    DEFAULT_NAME,
    LAB_FILE_NAME,
    LabSpec,
    check_lab_name,
    describe,
    free_subnet,
    load_spec,
    read_lab_file,
)
from .ssh import Endpoint, Host
from .state import LabState, all_labs


@dataclasses.dataclass(frozen=True)
class Selection:
    """Which lab a command is about: --lab / LABCTL_LAB, a lab file, or the only lab there is."""

    name: str | None
    lab_file: Path | None
    wait: float = 0.0

    @classmethod
    def make(cls, lab: str | None, lab_file: Path | None, wait: float) -> Selection:
        if lab is not None:
            check_lab_name(lab, "--lab")
        elif os.environ.get("LABCTL_LAB"):
            lab = check_lab_name(os.environ["LABCTL_LAB"], "LABCTL_LAB")
        else:
            lab = None
        if lab_file is not None and not lab_file.is_file():
            raise UsageError(f"lab file {lab_file} does not exist")
        if lab_file is None and Path(LAB_FILE_NAME).is_file():
            lab_file = Path(LAB_FILE_NAME)
        return cls(lab, lab_file, wait)

    def file_name(self) -> str | None:
        if self.lab_file is None:
            return None
        raw, _ = read_lab_file(self.lab_file)
        section = raw.get("lab")
        name = section.get("name") if isinstance(section, dict) else None
        return check_lab_name(name, f"{self.lab_file}: lab.name") if isinstance(name, str) else None

    def lab_name(self) -> str:
        """The name of an existing lab this selection points at."""
        name = self.name or self.file_name()
        if name:
            return name
        labs = all_labs()
        if len(labs) == 1:
            return labs[0]
        return DEFAULT_NAME


def _other_subnets(name: str) -> dict[str, str]:
    """The subnets of the other labs here; a lab whose state is damaged is passed over (its own
    commands say so), not a reason to refuse this one."""
    subnets = {}
    for other in all_labs():
        if other != name:
            try:
                subnets[other] = LabState(other).load_spec().subnet
            except LabError:
                continue
    return subnets


# Seen on TCG VMs (2 host cores, 3 VMs): a 5-replica rolling update outlasts the 120 s that suits
# docker nodes, and a fresh swarm's ingress takes longer than 25 s to reach every peer.
TCG_PACE = 10.0


class Lab:
    def __init__(self, spec: LabSpec, state: LabState):
        self.spec = spec
        self.state = state
        self._hosts: dict[str, Host] = {}
        self.accept_new_host_keys = False  # `up --accept-new-host-keys`: unknown keys are recorded

    @classmethod
    def open(cls, selection: Selection) -> Lab:
        """An existing lab (one that `up` has created)."""
        name = selection.lab_name()
        state = LabState(name)
        if not state.exists():
            labs = all_labs()
            hint = "`labctl up` creates it"
            if labs:
                hint += f"; labs on this machine: {', '.join(labs)} (select one with --lab NAME)"
            raise LabError(f"lab '{name}' is not up", hint=hint)
        return cls(state.load_spec(), state)

    @classmethod
    def for_up(cls, selection: Selection, overrides: dict[str, Any]) -> Lab:
        """The lab `up` should make: lab file + flags, checked against the lab if it exists."""
        overrides = {**overrides, "name": selection.name}
        name = load_spec(selection.lab_file, overrides).name
        state = LabState(name)
        current = state.load_spec() if state.exists() else None
        # Without an explicit subnet a lab keeps its own, or takes a free one.
        others = _other_subnets(name)
        default = current.subnet if current else free_subnet(set(others.values()))
        spec = load_spec(selection.lab_file, overrides, default_subnet=default)
        if current is not None:
            was, now = describe(current), describe(spec)
            diffs = [f"{key}: {was[key]} -> {now[key]}" for key in was if was[key] != now[key]]
            if diffs:
                raise UsageError(
                    f"lab '{spec.name}' is already up with other settings ({'; '.join(diffs)})",
                    hint=f"`labctl --lab {spec.name} down` first, or give the new lab another name with --lab",
                )
            if spec.provider not in (None, current.provider):
                raise UsageError(f"lab '{spec.name}' runs on {current.provider}, not {spec.provider}",
                                 hint=f"`labctl --lab {spec.name} down` first to change provider")
            spec = current
        else:
            mine = ipaddress.ip_network(spec.subnet)
            for other, subnet in others.items():
                if ipaddress.ip_network(subnet).overlaps(mine):
                    raise UsageError(f"subnet {spec.subnet} overlaps lab '{other}'",
                                     hint="pick another with --subnet")
        return cls(spec, state)

    @contextmanager
    def locked(self, wait: float, notify: Any = None, shared: bool = False) -> Iterator[None]:
        """Hold the lab: exclusively to change it, shared to read it."""
        self.state.ensure_dir()
        with lock.lab_lock(self.state.lock_path, self.spec.name, wait, notify, shared):
            if shared and not self.state.exists():  # `down` went first
                raise LabError(f"lab '{self.spec.name}' was removed while this command waited",
                               hint="`labctl up` creates it")
            yield

    def backend(self) -> Backend:
        return backends.create(self.spec, self.state, self.hosts)

    def pace(self) -> float:
        """How many times slower than docker-provider nodes the hosts are: deadlines for the swarm
        to converge stretch by it (VMs under qemu's software emulation)."""
        return TCG_PACE if self.state.load_vm().get("driver") == "qemu" else 1.0

    def endpoints(self) -> dict[str, Endpoint]:
        endpoints = self.backend().endpoints()
        if self.accept_new_host_keys:  # relax a checking policy to ssh's accept-new, for this run
            endpoints = {name: ep if ep.host_keys == "vagrant" else dataclasses.replace(ep, host_keys="accept-new")
                         for name, ep in endpoints.items()}
        return endpoints

    def hosts(self, connect_timeout: float = 8.0) -> dict[str, Host]:
        """Every host of the lab, by name (connections open on first use)."""
        endpoints = self.endpoints()
        missing = [h for h in self.spec.host_names if h not in endpoints]
        if missing:
            raise LabError(f"lab '{self.spec.name}' has no SSH endpoint for {', '.join(missing)}",
                           hint="`labctl up` brings the lab up")
        for name in self.spec.host_names:
            if name not in self._hosts or self._hosts[name].endpoint != endpoints[name]:
                self._hosts[name] = Host(name, endpoints[name], connect_timeout, pace=self.pace())
        return dict(self._hosts)

    def host(self, name_or_alias: str) -> Host:
        return self.hosts()[self.spec.host(name_or_alias).name]

    def close(self) -> None:
        for host in self._hosts.values():
            host.close()
        self._hosts.clear()
