"""What the kernel's nftables trace (diagnostics/remote/nfttrace.py) says happened to each probe
packet: the chains it crossed and the rule or policy that accepted or dropped it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

IPT_TABLES = ("filter", "raw", "mangle", "nat", "security")
_PACKET = re.compile(r"^trace id (\S+) \S+ \S+ \S+ packet: (.*)$")
_RULE = re.compile(r"^trace id (\S+) (\S+) (\S+) (\S+) rule (.*?)(?: # handle (\d+))? \(verdict (\w+)[^)]*\)$")
_POLICY = re.compile(r"^trace id (\S+) (\S+) (\S+) (\S+) policy (\w+)$")
_OTHER = re.compile(r"^trace id (\S+) (\S+) (\S+) (\S+) ")


@dataclass
class Verdict:
    """One probe packet's fate on one host, as the nftables trace told it."""

    host: str
    probe: int  # Probe.id
    direction: str  # in (the host received it) / out (the host sent it)
    verdict: str  # accept / drop
    family: str = ""  # of the rule or policy that dropped it
    table: str = ""
    chain: str = ""
    handle: int | None = None
    rule: str = ""  # nft syntax; "" when a chain policy decided
    iptables: str = ""  # the same rule as iptables-save prints it, when iptables-nft wrote it
    chains: list[str] = field(default_factory=list)  # "family table chain", in the order crossed
    packets: int = 1  # the probe's copies that met this fate

    @property
    def policy(self) -> bool:
        return self.verdict == "drop" and not self.rule

    @property
    def reject(self) -> bool:
        return " reject" in f" {self.rule}" or "-j REJECT" in self.iptables

    @property
    def owner(self) -> str:
        """The tool that wrote the deciding rule: firewalld, ufw, iptables or nft."""
        if self.family == "inet" and self.table == "firewalld":
            return "firewalld"
        if any(c.split()[-1].startswith(("ufw-", "ufw6-")) for c in self.chains):
            return "ufw"
        return "iptables" if self.iptables else "nft"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Verdict:
        return cls(**data)


@dataclass
class _Packet:
    headers: str = ""
    chains: list[str] = field(default_factory=list)
    drop: tuple[str, str, str, int | None, str] | None = None  # family, table, chain, handle, rule


def _field(headers: str, name: str) -> str:
    m = re.search(rf"(?:^| ){re.escape(name)} (\S+)", headers)
    return m.group(1).strip('"') if m else ""


def parse(lines: list[str]) -> dict[str, _Packet]:
    """Trace id -> what the trace says of that packet."""
    packets: dict[str, _Packet] = {}
    for line in lines:
        m = _PACKET.match(line)
        if m:
            packets.setdefault(m.group(1), _Packet()).headers = m.group(2)
            continue
        m = _RULE.match(line) or _POLICY.match(line) or _OTHER.match(line)
        if not m:
            continue
        pkt = packets.setdefault(m.group(1), _Packet())
        chain = " ".join(m.group(2, 3, 4))
        if not pkt.chains or pkt.chains[-1] != chain:
            pkt.chains.append(chain)
        if pkt.drop is not None:
            continue
        if m.re is _RULE and m.group(7) == "drop":
            handle = int(m.group(6)) if m.group(6) else None
            rule = re.sub(r"counter packets \d+ bytes \d+", "counter", m.group(5)).strip()
            pkt.drop = (m.group(2), m.group(3), m.group(4), handle, rule)
        elif m.re is _POLICY and m.group(5) == "drop":
            pkt.drop = (m.group(2), m.group(3), m.group(4), None, "")
    return packets


def iptables_line(chains: dict[str, Any], family: str, table: str, chain: str, handle: int | None) -> str:
    """The iptables-save line of an iptables-nft rule (or "-P CHAIN DROP" for its policy); "" when
    the chain is not one iptables knows (a native nftables table)."""
    listing = chains.get(f"{family} {table} {chain}")
    if not isinstance(listing, dict) or family not in ("ip", "ip6") or table not in IPT_TABLES:
        return ""
    save = str(listing.get("save") or "")
    if not re.search(rf"^\*{re.escape(table)}$", save, re.M) or not re.search(rf"^:{re.escape(chain)} ", save, re.M):
        return ""
    section = save.split(f"*{table}\n", 1)[-1].split("\nCOMMIT", 1)[0]
    if handle is None:
        return f"-P {chain} DROP"
    lines = [x for x in section.splitlines() if x.startswith(f"-A {chain} ")]
    handles = [h for h in listing.get("handles", []) if isinstance(h, int)]
    if len(lines) != len(handles) or handle not in handles:
        return ""
    return lines[handles.index(handle)]


def verdicts(host: str, host_ip: str, probes: list[Any], result: dict[str, Any]) -> list[Verdict]:
    """Each probe packet this host traced, matched to its probe by source port and address; one
    Verdict per probe, direction and outcome, counting the copies that met it."""
    lines = [x for x in result.get("lines", []) if isinstance(x, str)]
    chains = result.get("chains") if isinstance(result.get("chains"), dict) else {}
    assert isinstance(chains, dict)
    out: dict[tuple[int, str, str, str], Verdict] = {}
    for pkt in parse(lines).values():
        saddr, daddr = _field(pkt.headers, "ip saddr"), _field(pkt.headers, "ip daddr")
        sport = _field(pkt.headers, "tcp sport") or _field(pkt.headers, "udp sport")
        if not sport.isdigit():
            continue
        inbound = " iif " in f" {pkt.headers}"
        for p in probes:
            if int(sport) not in p.sports:
                continue
            if inbound and p.dst == host and p.src_ip == saddr:
                direction = "in"
            elif not inbound and p.src == host and p.dst_ip == daddr and host_ip in (saddr, ""):
                direction = "out"
            else:
                continue
            if pkt.drop is None:
                v = Verdict(host, p.id, direction, "accept", chains=pkt.chains)
            else:
                family, table, chain, handle, rule = pkt.drop
                v = Verdict(host, p.id, direction, "drop", family, table, chain, handle, rule,
                            iptables_line(chains, family, table, chain, handle), pkt.chains)
            key = (p.id, direction, v.verdict, v.rule)
            if key in out:
                out[key].packets += 1
            else:
                out[key] = v
    return list(out.values())


def tracer_config(sports: list[int], signals: dict[str, str], timeout: float, after_sent: float,
                  listen: float = 2.0) -> dict[str, Any]:
    """The tracer's run: the source ports to trace, the barrier's signal files (go, sent, stop), its
    deadline, how long it goes on once every host has sent (for the copies still on their way), and
    how long it waits for the monitor to listen before it says READY."""
    ranges: list[list[int]] = []
    for port in sorted(set(sports)):
        if ranges and ranges[-1][1] == port - 1:
            ranges[-1][1] = port
        else:
            ranges.append([port, port])
    return {"sports": ranges, **signals, "timeout": timeout, "after_sent": after_sent, "listen": listen}
