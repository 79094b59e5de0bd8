"""Facts gathered from the hosts: what each host reports, and what its probes saw on the wire.

Everything here is JSON-serialisable (dataclasses of plain values), so evidence
can be recorded and fed back to the rules in tests.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .trace import Verdict

DEFAULT_DATA_PORT = 4789
SPORT_BASE = 47100  # probes use source ports 47100-48099 (the remote capture filter)
SPORT_LAST = 48099
COPIES = 8  # packets per probe group: enough to tell a partial loss (12.5 % steps) from a cut


@dataclass
class HostFacts:
    """One host's own state (read by labctl.facts), or why it could not be read."""

    name: str
    ip: str  # the lab's private address of the host
    role: str
    reachable: bool = True  # False: labctl cannot use the host (no SSH, or its state unreadable)
    error: str = ""
    answered: bool = False  # not reachable, yet SSH answered: what it printed could not be read
    docker: dict[str, Any] = field(default_factory=dict)
    interfaces: list[dict[str, Any]] = field(default_factory=list)
    routes: list[str] = field(default_factory=list)
    routes_to_peers: dict[str, dict[str, str]] = field(default_factory=dict)
    kernel: dict[str, Any] = field(default_factory=dict)
    overlays: list[dict[str, Any]] = field(default_factory=list)
    vxlan: list[dict[str, Any]] = field(default_factory=list)
    services: list[dict[str, Any]] = field(default_factory=list)
    nodes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def docker_running(self) -> bool:
        return self.reachable and bool(self.docker.get("running"))

    @property
    def swarm_active(self) -> bool:
        return self.docker_running and self.docker.get("swarm_state") == "active"

    @property
    def node_addr(self) -> str:
        return str(self.docker.get("node_addr") or "")

    def local_addrs(self) -> dict[str, str]:
        """Address -> interface."""
        return {a.split("/")[0]: i["name"] for i in self.interfaces for a in i.get("addrs", [])}

    def iface(self, name: str) -> dict[str, Any]:
        return next((i for i in self.interfaces if i["name"] == name), {})

    def underlay(self) -> str:
        """The interface this host uses to reach its peers (the most common answer of `ip route get`)."""
        devs = [r.get("dev", "") for r in self.routes_to_peers.values() if r.get("dev")]
        return max(set(devs), key=devs.count) if devs else ""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HostFacts:
        """Facts as a host reported them; a field of the wrong kind is a ValueError."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        kinds = {"docker": dict, "routes_to_peers": dict, "kernel": dict, "interfaces": list, "routes": list,
                 "overlays": list, "vxlan": list, "services": list, "nodes": list}
        for key, kind in kinds.items():
            value = data.get(key)
            items = value.values() if isinstance(value, dict) and key == "routes_to_peers" else \
                value if isinstance(value, list) and key not in ("routes",) else []
            if value is not None and (not isinstance(value, kind) or not all(isinstance(i, dict) for i in items)):
                raise ValueError(f"the host reported a malformed '{key}'")
        return cls(**{k: v for k, v in data.items() if k in fields})


@dataclass
class Probe:
    """A group of `copies` packets (source ports sport .. sport+copies-1) of one kind from src to
    dst, and what both ends' captures saw of them: the booleans say whether any copy got that far,
    the counts how many did (evidence recorded before copies were counted has copies == 0)."""

    id: int
    src: str
    dst: str
    src_ip: str
    dst_ip: str
    proto: str  # tcp / udp
    port: int
    purpose: str  # "swarm control" / "gossip" / "VXLAN data path"
    sport: int = 0
    left_sender: bool | None = None  # seen leaving the sender's underlay interface
    send_error: str = ""  # why the sender's kernel refused copies (errno names: EPERM)
    arrived: bool | None = None  # seen on the receiver's interface (before its firewall)
    receiver_reply: str = ""  # what the receiver sent back: syn-ack, rst, icmp-3/3
    reply_arrived: str = ""  # what came back to the sender's interface
    third_party_icmp: str = ""  # an ICMP error about the probe from neither end (the path): "icmp-3/13 from IP"
    notes: list[str] = field(default_factory=list)
    copies: int = 0  # packets sent in this group
    send_failed: int = 0  # copies the sender's kernel refused (send_error says why)
    left: int = 0  # copies seen leaving the sender
    received: int = 0  # copies seen arriving on the receiver
    answered: int = 0  # TCP: copies the receiver answered (SYN-ACK, RST or ICMP seen leaving it)
    answers_back: int = 0  # TCP: answers seen arriving back on the sender
    path_icmp: int = 0  # copies a third party answered with an ICMP error

    @property
    def label(self) -> str:
        return f"{self.proto.upper()} {self.port}"

    @property
    def sports(self) -> range:
        return range(self.sport, self.sport + max(self.copies, 1))

    def loss(self) -> float | None:
        """The share of copies that did not make it as far as the captures see: for TCP, whose answer
        did not come back; for UDP, that did not arrive on the receiver's interface (rules.probe_groups
        also counts those a rule on the receiver dropped). None when it was not measured."""
        if not self.copies or self.left_sender is None or self.arrived is None:
            return None
        made = self.answers_back if self.proto == "tcp" else self.received
        return round(1 - made / self.copies, 3)

    def summary(self) -> dict[str, Any]:
        """The group's counts, as `diagnose --json` reports them."""
        out: dict[str, Any] = {"src": self.src, "dst": self.dst, "proto": self.proto, "port": self.port,
                               "copies": self.copies, "left": self.left, "arrived": self.received}
        if self.proto == "tcp":
            out.update(answered=self.answered, answers_back=self.answers_back)
        if self.send_error:
            out["send_error"] = self.send_error
        out["loss"] = self.loss()
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Probe:
        return cls(**data)


@dataclass
class RuleHit:
    """A firewall rule (or chain policy) that dropped or rejected packets during the probes."""

    host: str
    backend: str
    table: str
    chain: str
    rule: str
    target: str
    pkts: int

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RuleHit:
        return cls(**data)


@dataclass
class PathMtu:
    """The largest IP packet (DF set) that went from src to dst, measured with VXLAN-port probes."""

    src: str
    dst: str
    src_ip: str
    dst_ip: str
    iface: str = ""  # the sender's interface towards dst
    iface_mtu: int = 0  # its configured MTU (the largest size tried)
    size: int = 0  # the largest size carried (0: none carried, not measured)
    limit: int = 0  # the smallest size lost (0: none lost up to iface_mtu)
    icmp_mtu: int = 0  # next-hop MTU of an ICMP "fragmentation needed" from the path
    icmp_from: str = ""
    cached_before: int = 0  # the PMTU the sender's kernel had cached for dst before (0: none)
    flushed: bool = False  # the probes taught the kernel a PMTU, and it was flushed
    error: str = ""

    @property
    def measured(self) -> bool:
        return self.size > 0 and not self.error

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PathMtu:
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in fields})


@dataclass
class Evidence:
    lab: str
    focus: str | None  # the host asked about, or None for the whole lab
    data_port: int
    hosts: dict[str, HostFacts]
    probes: list[Probe] = field(default_factory=list)
    rule_hits: list[RuleHit] = field(default_factory=list)
    path_rule_hits: list[RuleHit] = field(default_factory=list)  # rules on the machine between the hosts
    probe_errors: dict[str, str] = field(default_factory=dict)
    capture_drops: dict[str, int] = field(default_factory=dict)  # packets a host's capture could not keep
    seconds: float = 0.0
    path_mtu: list[PathMtu] = field(default_factory=list)  # empty in evidence recorded before it existed
    # overlay peers first missing, then present when the facts were read again:
    # {host, peer, network, missing (what was missing), seconds (until it appeared)}
    converging: list[dict[str, Any]] = field(default_factory=list)
    recheck_seconds: float = 0.0  # how long missing overlay peers were waited for
    verdicts: list[Verdict] = field(default_factory=list)  # the nftables trace's account of each probe
    traced: dict[str, str] = field(default_factory=dict)  # host -> "" when its trace ran, else why not

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Evidence:
        return cls(
            lab=data["lab"], focus=data.get("focus"), data_port=data.get("data_port", DEFAULT_DATA_PORT),
            hosts={k: HostFacts.from_json(v) for k, v in data["hosts"].items()},
            probes=[Probe.from_json(p) for p in data.get("probes", [])],
            rule_hits=[RuleHit.from_json(r) for r in data.get("rule_hits", [])],
            path_rule_hits=[RuleHit.from_json(r) for r in data.get("path_rule_hits", [])],
            probe_errors=data.get("probe_errors", {}), capture_drops=data.get("capture_drops", {}),
            seconds=data.get("seconds", 0.0),
            path_mtu=[PathMtu.from_json(p) for p in data.get("path_mtu", [])],
            converging=data.get("converging", []), recheck_seconds=data.get("recheck_seconds", 0.0),
            verdicts=[Verdict.from_json(v) for v in data.get("verdicts", [])], traced=data.get("traced", {}),
        )


def plan_probes(hosts: dict[str, HostFacts], focus: str | None, data_port: int, copies: int = COPIES,
                first_sport: int = SPORT_BASE, first_id: int = 0) -> list[Probe]:
    """Every port the swarm needs, for every ordered pair of hosts (those involving `focus`): one
    group of `copies` packets each, every copy with its own source port."""
    probes: list[Probe] = []
    names = list(hosts)
    for src in names:
        for dst in names:
            if src == dst or (focus and focus not in (src, dst)):
                continue
            a, b = hosts[src], hosts[dst]
            wanted = [("tcp", 7946, "gossip"), ("udp", 7946, "gossip"), ("udp", data_port, "VXLAN data path")]
            if b.role == "manager" or b.docker.get("is_manager"):
                wanted.insert(0, ("tcp", 2377, "swarm control"))
            for proto, port, purpose in wanted:
                n = len(probes)
                probes.append(Probe(id=first_id + n, src=src, dst=dst, src_ip=a.ip, dst_ip=b.ip, proto=proto,
                                    port=port, purpose=purpose, sport=first_sport + n * copies, copies=copies))
    if probes and probes[-1].sports[-1] > SPORT_LAST:
        raise ValueError(f"{len(probes)} probe groups of {copies} copies need more source ports than "
                         f"{SPORT_BASE}-{SPORT_LAST}")
    return probes


def copies_for(groups: int, first_sport: int = SPORT_BASE) -> int:
    """As many copies per group as the source port range holds, at most COPIES (big labs get fewer)."""
    return max(1, min(COPIES, (SPORT_LAST + 1 - first_sport) // max(groups, 1)))


def _tcp_kind(flags: str) -> str:
    if "R" in flags:
        return "rst"
    if "S" in flags and "A" in flags:
        return "syn-ack"
    return f"tcp-{flags}"


def read_captures(probes: list[Probe], packets: dict[str, list[dict[str, Any]]],
                  send_errors: dict[str, dict[str, str]]) -> None:
    """Fill each probe group's wire facts from both hosts' decoded captures, copy by copy
    (`send_errors`: per host, source port -> errno name of the copies its kernel refused)."""
    for p in probes:
        sent = packets.get(p.src, [])
        recv = packets.get(p.dst, [])
        sports = set(p.sports)
        if p.src in packets:
            left = {k.get("sport") for k in sent if k.get("dir") == "out" and k.get("dst") == p.dst_ip
                    and k.get("sport") in sports and k.get("proto") == p.proto and k.get("dport") == p.port}
            p.left, p.left_sender = len(left), bool(left)
            refused = [e for s, e in send_errors.get(p.src, {}).items() if s.isdigit() and int(s) in sports]
            p.send_failed = len(refused)
            p.send_error = ", ".join(sorted(set(refused)))
            back: set[Any] = set()
            third: set[Any] = set()
            for k in sent:
                if k.get("dir") != "in":
                    continue
                if k.get("proto") == "tcp" and k.get("dport") in sports and k.get("src") == p.dst_ip:
                    p.reply_arrived = p.reply_arrived or _tcp_kind(str(k.get("flags", "")))
                    back.add(k.get("dport"))
                quoted = k.get("quoted") or {}
                if k.get("proto") == "icmp" and quoted.get("sport") in sports and quoted.get("dst") == p.dst_ip:
                    kind = f"icmp-{k.get('type')}/{k.get('code')}"
                    if k.get("src") == p.dst_ip:
                        p.reply_arrived = p.reply_arrived or kind
                        back.add(quoted.get("sport"))
                    else:
                        p.third_party_icmp = p.third_party_icmp or f"{kind} from {k.get('src')}"
                        third.add(quoted.get("sport"))
            p.answers_back, p.path_icmp = len(back), len(third)
        if p.dst in packets:
            came = {k.get("sport") for k in recv if k.get("dir") == "in" and k.get("src") == p.src_ip
                    and k.get("sport") in sports and k.get("proto") == p.proto and k.get("dport") == p.port}
            p.received, p.arrived = len(came), bool(came)
            answered: set[Any] = set()
            for k in recv:
                if k.get("dir") != "out":
                    continue
                if k.get("proto") == "tcp" and k.get("dport") in sports and k.get("dst") == p.src_ip:
                    p.receiver_reply = p.receiver_reply or _tcp_kind(str(k.get("flags", "")))
                    answered.add(k.get("dport"))
                quoted = k.get("quoted") or {}
                if k.get("proto") == "icmp" and quoted.get("sport") in sports and k.get("dst") == p.src_ip:
                    p.receiver_reply = p.receiver_reply or f"icmp-{k.get('type')}/{k.get('code')}"
                    answered.add(quoted.get("sport"))
            p.answered = len(answered)
            if p.src in packets:  # a copy that arrived has left, whatever the sender's capture kept
                p.left = len(left | came)
                p.left_sender = p.left > 0
