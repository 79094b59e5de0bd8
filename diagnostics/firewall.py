"""Which firewall rules counted the probes (iptables-save -c, parsed by labctl.facts) and which
rule matches which probe."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from labctl.errors import LabError
from labctl.facts import FirewallRule, parse_rules
from labctl.runner import run_local

from .evidence import Probe, RuleHit


def delta(host: str, before: dict[str, FirewallRule], after: dict[str, FirewallRule]) -> list[RuleHit]:
    """DROP / REJECT rules and policies whose packet counters grew."""
    hits = []
    for key, a in after.items():
        old = before.get(key)
        grown = a.pkts - (old.pkts if old else 0)
        if grown > 0 and a.target in ("DROP", "REJECT"):
            hits.append(RuleHit(host=host, backend=a.backend, table=a.table, chain=a.chain,
                                rule=a.rule, target=a.target, pkts=grown))
    return hits


def hits_from_saves(host: str, result: dict[str, Any]) -> list[RuleHit]:
    """The DROP/REJECT rules that counted packets between the `iptables-save -c` texts a
    host-side script took before and after (per backend)."""
    before, after = result.get("counters_before") or {}, result.get("counters_after") or {}
    hits: list[RuleHit] = []
    if not isinstance(before, dict) or not isinstance(after, dict):
        return hits  # not what wire.py prints: no counters to compare
    for tool, text in after.items():
        old = before.get(tool, "")
        if isinstance(text, str) and isinstance(old, str):
            hits += delta(host, parse_rules(old, tool), parse_rules(text, tool))
    return hits


def local_counters() -> dict[str, FirewallRule]:
    """This machine's counters (the path between docker-provider nodes); empty when unreadable."""
    try:
        proc = run_local(["iptables-save", "-c", "-t", "filter"], timeout=5)
    except LabError:  # not installed, or hung on the xtables lock
        return {}
    return parse_rules(proc.out) if proc.ok else {}


def _opt(rule: str, *names: str) -> str | None:
    for name in names:
        m = re.search(rf"(?:^| )(!\s+)?{re.escape(name)} (\S+)", rule)
        if m:
            return ("!" if m.group(1) else "") + m.group(2)
    return None


def _addr_matches(spec: str | None, ip: str) -> bool:
    if spec is None:
        return True
    neg = spec.startswith("!")
    spec = spec.lstrip("!")
    try:
        inside = ipaddress.ip_address(ip) in ipaddress.ip_network(spec, strict=False)
    except ValueError:
        return True
    return inside != neg


def _port_matches(spec: str | None, port: int) -> bool:
    if spec is None:
        return True
    neg = spec.startswith("!")
    spec = spec.lstrip("!")
    ok = False
    for part in spec.split(","):
        lo, _, hi = part.partition(":")
        try:
            ok = ok or int(lo or 0) <= port <= int(hi or lo or 65535)
        except ValueError:
            return True
    return ok != neg


def matches(rule: str, probe: Probe, reply: bool = False) -> bool:
    """Whether an iptables rule (in iptables-save syntax) would match the probe (or its reply)."""
    if rule.startswith("-P "):
        return True  # a policy drops whatever reaches the end of its chain
    src, dst = (probe.dst_ip, probe.src_ip) if reply else (probe.src_ip, probe.dst_ip)
    sport, dport = (probe.port, probe.sport) if reply else (probe.sport, probe.port)
    proto = _opt(rule, "-p")
    if proto is not None and proto.lstrip("!") not in (probe.proto, "all"):
        return proto.startswith("!")
    return (_addr_matches(_opt(rule, "-s"), src) and _addr_matches(_opt(rule, "-d"), dst)
            and _port_matches(_opt(rule, "--dport", "--dports", "--destination-port"), dport)
            and _port_matches(_opt(rule, "--sport", "--sports", "--source-port"), sport))


def describe(hit: RuleHit) -> str:
    """The rule as findings name it: host, table/chain, rule."""
    return f"{hit.host}: {hit.table}/{hit.chain}: {hit.rule}"


def counted(hits: list[RuleHit]) -> str:
    return "; ".join(f"{describe(h)} (counted {h.pkts} packet(s) during the probes)" for h in hits)
