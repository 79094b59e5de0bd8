"""The protocol every backend offers to the rest of labctl."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..ssh import Endpoint, Host

OnLine = Callable[[str], None]
HostsFn = Callable[..., dict[str, Host]]  # the lab's hosts, by name (optional connect_timeout=)


@dataclass(frozen=True)
class Boot:
    summary: str
    changed: bool


class Backend(Protocol):
    name: str  # the provider: virtualbox, libvirt, docker, existing
    keeps_hosts: bool  # `down` dismantles what labctl made on the hosts, not the hosts themselves
    up_state: str  # what `states()` reports for a host that `up` just saw answering

    def preparations(self) -> list[tuple[str, Callable[[OnLine], Boot]]]:
        """What must be made on this machine before the hosts can boot: (title, work) pairs; each
        work says what it did, and whether it changed anything."""

    def ready(self, on_line: OnLine) -> str | None:
        """A summary if every host already answers (then `up` boots nothing), else None."""

    def up(self, on_line: OnLine) -> Boot:
        """Create or start every host (idempotent); afterwards every host has an endpoint."""

    def endpoints(self) -> dict[str, Endpoint]:
        """SSH endpoints of the hosts, as last known (no slow provider call)."""

    def states(self) -> dict[str, str]:
        """Each host's state as its provider reports it (running, stopped, not created...)."""

    def destroy(self, on_line: OnLine) -> str:
        """Remove every host and whatever the backend made for the lab; a summary."""

    def local_bridge(self) -> str | None:
        """The bridge on this machine that carries the traffic between the hosts, if there is one
        (where `fault add ... path-drop` drops packets, and diagnose reads its counters)."""

    def leftovers(self) -> list[str]:
        """What `destroy` should have removed and is still there (empty: all gone)."""
