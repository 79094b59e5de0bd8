"""What each host of a lab is doing: provider state, addresses, Docker, swarm."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from . import facts
from .errors import LabError
from .facts import NodeEntry, SwarmInfo
from .lab import Lab
from .ssh import Host, background, fan_out, split_results


@dataclass
class HostStatus:
    host: str
    aliases: str
    role: str
    provider_state: str
    private_ip: str
    ssh: str
    docker: str
    swarm_role: str
    swarm_state: str
    availability: str
    advertise_addr: str
    problem: str


def _probe(host: Host, manager: bool) -> tuple[str, SwarmInfo | None, list[NodeEntry] | None]:
    """dockerd's version ("" when it does not answer), the swarm membership and, on the
    manager, its node list: one round trip."""
    wanted: list[facts.Fact[Any]] = [facts.DockerInfo(), facts.NodeList()] if manager else [facts.DockerInfo()]
    readings = facts.read_many(host, wanted, timeout=20)
    state = readings.get(facts.DockerInfo())
    if state is None or not state.running:
        return "", None, None
    return state.version, state.swarm, readings.get(facts.NodeList()) if manager else None


def collect(lab: Lab, provider_states: dict[str, str] | None = None) -> list[HostStatus]:
    """Every host's status; the provider's own report is asked for unless given."""
    spec = lab.spec
    states_future = background(lab.backend().states) if provider_states is None else None
    try:
        hosts = lab.hosts(connect_timeout=3)
    except LabError:
        hosts = {}
    probes, unanswered = split_results(fan_out(list(hosts.values()), lambda h: _probe(h, h.name == spec.manager.name)))
    nodes: dict[str, NodeEntry] = {}
    manager_probe = probes.get(spec.manager.name)
    if manager_probe is not None and manager_probe[1] and manager_probe[1].is_manager:
        nodes = {n.node_id: n for n in manager_probe[2] or []}
    if states_future is not None:
        try:
            provider_states = states_future.result()
        except LabError:
            provider_states = {}
    endpoints = lab.endpoints()
    rows = []
    for h in spec.hosts:
        probe = probes.get(h.name)
        ep = endpoints.get(h.name)
        row = HostStatus(
            host=h.name, aliases=",".join(h.aliases), role=h.role,
            provider_state=(provider_states or {}).get(h.name, "unknown"), private_ip=h.ip,
            ssh=f"{ep.user}@{ep.hostname}:{ep.port}" if ep else "-",
            docker="-", swarm_role="-", swarm_state="-", availability="-", advertise_addr="-", problem="",
        )
        if probe is None:
            if row.provider_state not in ("running", "unknown"):
                row.problem = f"host is {row.provider_state.replace('_', ' ')}: `labctl up` brings it back"
            else:
                row.problem = "does not answer SSH" if h.name in unanswered else "no SSH endpoint"
        else:
            version, info, _ = probe
            row.docker = version or "not running"
            if not version:
                row.problem = "dockerd is not running"
            elif info is not None:
                row.swarm_state = info.state
                row.advertise_addr = info.node_addr or "-"
                node = nodes.get(info.node_id)
                if node is not None:
                    row.swarm_role = node.role + (" (leader)" if node.leader else "")
                    row.swarm_state = node.state
                    row.availability = node.availability
                elif info.state == "active" and nodes:
                    row.problem = "not a member of this lab's swarm"
                if info.error:
                    row.problem = info.error
                if info.state == "inactive":
                    row.problem = "not in the swarm"
                elif info.node_addr and info.node_addr != h.ip:
                    row.problem = f"advertises {info.node_addr}, not {h.ip}"
        rows.append(row)
    return rows


def healthy(rows: list[HostStatus]) -> bool:
    return all(not r.problem and r.swarm_state == "ready" for r in rows)


def to_json(lab: Lab, rows: list[HostStatus]) -> str:
    return json.dumps({
        "lab": lab.spec.name, "provider": lab.spec.provider, "subnet": lab.spec.subnet,
        "healthy": healthy(rows), "hosts": [asdict(r) for r in rows],
    }, indent=2)
