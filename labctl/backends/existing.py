"""Hosts that already exist (cloud instances, a rack, ...), reached over SSH only.

`up` provisions them like any other host; `down` dismantles the swarm and what
labctl made on them, never the hosts themselves.
"""

from __future__ import annotations

from collections.abc import Callable

from .. import swarm
from ..errors import LabError
from ..spec import LabSpec
from ..ssh import Endpoint, fan_out, split_results
from ..state import LabState
from .base import Boot, HostsFn, OnLine


def probe() -> str | None:
    """Nothing to install: the hosts are described in the lab file."""
    return None


class ExistingBackend:
    name = "existing"
    keeps_hosts = True
    up_state = "reachable"

    def __init__(self, spec: LabSpec, state: LabState, hosts: HostsFn):
        self.spec = spec
        self.state = state
        self._hosts = hosts

    def _answers(self) -> dict[str, bool | BaseException]:
        return fan_out(list(self._hosts().values()), lambda h: h.run("true", timeout=15).ok)

    def preparations(self) -> list[tuple[str, Callable[[OnLine], Boot]]]:
        return []

    def ready(self, on_line: OnLine) -> str | None:
        return None  # checking that the hosts answer is all `up` does here

    def up(self, on_line: OnLine) -> Boot:
        """Nothing to boot: every host must answer SSH."""
        on_line("checking that every host answers SSH")
        for name, answer in self._answers().items():
            if isinstance(answer, LabError):
                raise answer
            if answer is not True:
                raise LabError(f"{name} does not answer SSH: {answer}",
                               hint="check ssh_host, ssh_port, ssh_user and ssh_key in the lab file")
        return Boot(f"{len(self.spec.hosts)} existing hosts answer SSH", changed=False)

    def endpoints(self) -> dict[str, Endpoint]:
        return {h.name: Endpoint(h.ssh_host or "", h.ssh_port, h.ssh_user or "root", h.ssh_key or "",
                                 host_keys=self.spec.host_keys)
                for h in self.spec.hosts}

    def states(self) -> dict[str, str]:
        return {name: "reachable" if answer is True else "unreachable" for name, answer in self._answers().items()}

    def destroy(self, on_line: OnLine) -> str:
        """Leave the swarm on every host (workers first); the hosts stay."""
        hosts = self._hosts()
        workers = [hosts[w.name] for w in self.spec.workers]
        for group in (workers, [hosts[self.spec.manager.name]]):
            _, errors = split_results(fan_out(group, lambda h: swarm.leave(h, force=True)))
            for name, error in errors.items():
                on_line(f"{name}: {error}")
        on_line("swarm dismantled; the hosts themselves are kept")
        return "swarm dismantled, hosts kept"

    def local_bridge(self) -> str | None:
        return None

    def leftovers(self) -> list[str]:
        """Hosts still in a swarm (the hosts themselves are never removed)."""
        infos, errors = split_results(fan_out(list(self._hosts().values()), swarm.swarm_info))
        return [f"{name}: swarm membership unknown ({error})" for name, error in errors.items()] + \
            [f"{name}: still in a swarm ({info.state})" for name, info in infos.items() if info.state != "inactive"]
