"""What a diagnosis works on: the lab's description and its hosts, handed over by the command
line, so that diagnostics stand on host access and facts alone."""

from __future__ import annotations

from dataclasses import dataclass

from labctl.spec import LabSpec
from labctl.ssh import Host


@dataclass(frozen=True)
class Target:
    spec: LabSpec
    hosts: dict[str, Host]
    # The hosts' traffic crosses a bridge on this machine (the docker provider): its firewall
    # counters are evidence too.
    path_here: bool = False
