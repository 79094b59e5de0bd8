"""Hosts that already exist (cloud instances, a rack, ...), reached over SSH only.

`up` provisions them like any other host; `down` dismantles the swarm and what
labctl made on them, never the hosts themselves.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import LabError
from ..spec import LabSpec
from ..ssh import Endpoint, Host, fan_out
from ..swarm import swarm_info


def endpoints(spec: LabSpec, accept_new: bool = False) -> dict[str, Endpoint]:
    policy = "accept-new" if accept_new else spec.host_keys
    return {
        h.name: Endpoint(h.ssh_host or "", h.ssh_port, h.ssh_user or "root", h.ssh_key or "", host_keys=policy)
        for h in spec.hosts
    }


class ExistingBackend:
    name = "existing"

    def __init__(self, spec: LabSpec, hosts: Callable[[], dict[str, Host]]):
        self.spec = spec
        self._hosts = hosts

    def _answers(self) -> dict[str, bool | BaseException]:
        return fan_out(list(self._hosts().values()), lambda h: h.run("true", timeout=15).ok)

    def up(self, on_line: Callable[[str], None]) -> None:
        """Nothing to boot: every host must answer SSH."""
        on_line("checking that every host answers SSH")
        for name, answer in self._answers().items():
            if isinstance(answer, LabError):
                raise answer
            if answer is not True:
                raise LabError(f"{name} does not answer SSH: {answer}",
                               hint="check ssh_host, ssh_port, ssh_user and ssh_key in the lab file")

    def endpoints(self) -> dict[str, Endpoint]:
        return {name: host.endpoint for name, host in self._hosts().items()}

    def states(self) -> dict[str, str]:
        return {name: "reachable" if answer is True else "unreachable" for name, answer in self._answers().items()}

    def destroy(self, on_line: Callable[[str], None]) -> None:
        """Leave the swarm on every host (workers first); the hosts stay."""
        hosts = self._hosts()
        workers = [hosts[w.name] for w in self.spec.workers]
        for group in (workers, [hosts[self.spec.manager.name]]):
            results = fan_out(group, lambda h: h.run("docker swarm leave --force", sudo=True, timeout=60))
            for name, result in results.items():
                if isinstance(result, BaseException):
                    on_line(f"{name}: {result}")
        on_line("swarm dismantled; the hosts themselves are kept")

    def leftovers(self) -> list[str]:
        """Hosts still in a swarm (the hosts themselves are never removed)."""
        left = []
        for name, info in fan_out(list(self._hosts().values()), swarm_info).items():
            if isinstance(info, BaseException):
                left.append(f"{name}: swarm membership unknown ({info})")
            elif info.state != "inactive":
                left.append(f"{name}: still in a swarm ({info.state})")
        return left
