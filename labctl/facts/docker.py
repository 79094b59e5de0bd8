"""Docker and swarm state: `docker info`, the manager's node list, overlays, services."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .. import validate
from ..ssh import Result
from .base import Fact, FactError

DEFAULT_DATA_PORT = 4789


@dataclass(frozen=True)
class SwarmInfo:
    """What a host's dockerd says of its swarm membership (`docker info`'s Swarm)."""

    state: str  # inactive, pending, active, error, locked
    node_id: str
    node_addr: str
    is_manager: bool
    error: str
    remote_managers: tuple[str, ...]
    data_path_port: int = 0  # only managers know it (Cluster)
    default_addr_pool: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SwarmInfo:
        cluster = data.get("Cluster") or {}
        return cls(
            state=data.get("LocalNodeState") or "inactive",
            node_id=data.get("NodeID") or "",
            node_addr=data.get("NodeAddr") or "",
            is_manager=bool(data.get("ControlAvailable")),
            error=data.get("Error") or "",
            remote_managers=tuple(m.get("Addr", "") for m in data.get("RemoteManagers") or []),
            data_path_port=int(cluster.get("DataPathPort") or 0),
            default_addr_pool=tuple(cluster.get("DefaultAddrPool") or ()),
        )

    @classmethod
    def parse(cls, text: str) -> SwarmInfo:
        return cls.from_json(json.loads(text))


INACTIVE = SwarmInfo("inactive", "", "", False, "", ())


@dataclass(frozen=True)
class DockerState:
    """The daemon (running or why not), its version, node name and swarm membership."""

    running: bool
    error: str  # why it does not answer
    version: str = ""
    name: str = ""
    swarm: SwarmInfo = INACTIVE


@dataclass(frozen=True)
class DockerInfo(Fact[DockerState]):
    """`docker info` as JSON. Newer clients exit 0 when the daemon is down and say so only
    in ServerErrors; older ones exit 1 with the reason on stderr."""

    command = "docker info --format '{{json .}}'"
    what = "swarm state"

    def parse(self, result: Result) -> DockerState:
        text = result.out.strip()
        try:
            data = json.loads(text) if text else {}
        except ValueError:
            if result.ok:
                raise FactError(f"`docker info` printed no swarm state: {text[:200]!r}") from None
            data = {}
        if not isinstance(data, dict) or not isinstance(data.get("Swarm") or {}, dict):
            raise FactError(f"`docker info` printed no swarm state: {text[:200]!r}")
        errors = data.get("ServerErrors") or []
        if not result.ok or errors or not data.get("ServerVersion"):
            why = "; ".join(map(str, errors)) if isinstance(errors, list) else str(errors)
            return DockerState(False, (why or result.err.strip() or text or f"exit {result.rc}")[-300:])
        return DockerState(True, "", str(data["ServerVersion"]), str(data.get("Name") or ""),
                           SwarmInfo.from_json(data.get("Swarm") or {}))


@dataclass(frozen=True)
class DataPathPort(Fact[int]):
    """The swarm's VXLAN port (0 where the host does not know it: a worker, no swarm)."""

    command = DockerInfo.command  # one run of `docker info` serves both in a round trip
    what = "swarm state"

    def parse(self, result: Result) -> int:
        return DockerInfo().parse(result).swarm.data_path_port

    def check(self, value: int, host: str) -> int:
        return validate.port(value, reported_by=host) if value else 0


@dataclass(frozen=True)
class DockerdProcess(Fact[bool]):
    """Whether a dockerd process exists (it may run without answering)."""

    command = "pgrep -x dockerd"

    def parse(self, result: Result) -> bool:
        return result.ok


@dataclass(frozen=True)
class NodeEntry:
    """One node of the manager's node list, with the advertised address."""

    node_id: str
    hostname: str
    role: str
    state: str  # ready, down, unknown
    availability: str
    addr: str
    leader: bool

    @classmethod
    def parse_inspect(cls, text: str) -> list[NodeEntry]:
        entries = []
        for node in json.loads(text) if text.strip() else []:
            status = node.get("Status") or {}
            spec = node.get("Spec") or {}
            entries.append(cls(
                node_id=node["ID"],
                hostname=(node.get("Description") or {}).get("Hostname", ""),
                role=spec.get("Role", ""),
                state=status.get("State", ""),
                availability=spec.get("Availability", ""),
                addr=status.get("Addr", ""),
                leader=bool((node.get("ManagerStatus") or {}).get("Leader")),
            ))
        return entries


@dataclass(frozen=True)
class NodeList(Fact[list[NodeEntry]]):
    """The swarm's nodes, as a manager knows them (a worker's command fails)."""

    command = "docker node ls -q | xargs -r docker node inspect --"
    what = "node list"

    def parse(self, result: Result) -> list[NodeEntry]:
        # the pipe's status is xargs's: a worker's refusal shows as no nodes and an error
        if not result.ok or (not result.out.strip() and result.err.strip()):
            raise FactError(f"cannot list the swarm's nodes: {result.tail(2)}")
        return NodeEntry.parse_inspect(result.out)

    def check(self, value: list[NodeEntry], host: str) -> list[NodeEntry]:
        for entry in value:  # node IDs go into `docker node rm`
            validate.node_id(entry.node_id, reported_by=host)
        return value


@dataclass(frozen=True)
class Overlay:
    name: str
    id: str
    subnets: list[str]
    vnis: list[int]
    mtu: int
    encrypted: bool
    ingress: bool
    local_containers: int
    peers: list[str]


@dataclass(frozen=True)
class OverlayNetworks(Fact[list[Overlay]]):
    """The overlay networks this host knows, with VNIs and peers (`inspect -v`)."""

    command = "docker network ls -q --filter driver=overlay | xargs -r docker network inspect -v --"
    what = "overlay networks"

    def parse(self, result: Result) -> list[Overlay]:
        if not result.ok or not result.out.strip():
            return []
        nets = []
        for n in json.loads(result.out):
            opts = n.get("Options") or {}
            vnis = [int(v) for v in (opts.get("com.docker.network.driver.overlay.vxlanid_list") or "").split(",") if v]
            nets.append(Overlay(
                name=n.get("Name", ""), id=n.get("Id", ""),
                subnets=[c.get("Subnet", "") for c in (n.get("IPAM") or {}).get("Config") or []],
                vnis=vnis, mtu=int(opts.get("com.docker.network.driver.mtu") or 0),
                encrypted="encrypted" in opts, ingress=bool(n.get("Ingress")),
                local_containers=len(n.get("Containers") or {}),
                peers=[p.get("IP", "") for p in n.get("Peers") or []],
            ))
        return nets


@dataclass(frozen=True)
class Service:
    name: str
    mode: str  # vip, dnsrr
    published: list[int] = field(default_factory=list)  # ingress (routing mesh) ports


@dataclass(frozen=True)
class Services(Fact[list[Service]]):
    """The swarm's services (a manager's; elsewhere none)."""

    command = "docker service ls -q | xargs -r docker service inspect --"
    what = "service list"

    def parse(self, result: Result) -> list[Service]:
        if not result.ok or not result.out.strip():
            return []
        found = []
        for s in json.loads(result.out):
            spec = s.get("Spec") or {}
            ep = spec.get("EndpointSpec") or {}
            found.append(Service(spec.get("Name", ""), ep.get("Mode", "vip"),
                                 [p.get("PublishedPort") for p in ep.get("Ports") or []
                                  if p.get("PublishMode", "ingress") == "ingress"]))
        return found
