"""iptables rule counters (iptables-save -c) and which rule matches which probe."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from labctl.errors import LabError
from labctl.runner import run_local

from .evidence import Probe, RuleHit


def parse_counters(text: str, backend: str = "iptables-save") -> dict[str, dict[str, Any]]:
    """Rule key -> {table, chain, rule, target, pkts} for every rule and chain policy."""
    rules: dict[str, dict[str, Any]] = {}
    table = ""
    seen: dict[str, int] = {}
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:]
            continue
        m = re.match(r"^:(\S+) (\S+) \[(\d+):\d+\]", line)
        if m and m.group(2) != "-":
            rules[f"{backend}|{table}|{m.group(1)}|policy"] = {
                "backend": backend, "table": table, "chain": m.group(1), "rule": f"-P {m.group(1)} {m.group(2)}",
                "target": m.group(2), "pkts": int(m.group(3))}
            continue
        m = re.match(r"^\[(\d+):\d+\] (-A (\S+) .*)$", line)
        if m:
            rule, chain = m.group(2), m.group(3)
            n = seen.get(rule, 0)
            seen[rule] = n + 1
            t = re.search(r" -j (\S+)", rule)
            rules[f"{backend}|{table}|{rule}|{n}"] = {
                "backend": backend, "table": table, "chain": chain, "rule": rule,
                "target": t.group(1) if t else "", "pkts": int(m.group(1))}
    return rules


def delta(host: str, before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]) -> list[RuleHit]:
    """DROP / REJECT rules and policies whose packet counters grew."""
    hits = []
    for key, a in after.items():
        grown = a["pkts"] - before.get(key, {"pkts": 0})["pkts"]
        if grown > 0 and a["target"] in ("DROP", "REJECT"):
            hits.append(RuleHit(host=host, backend=a["backend"], table=a["table"], chain=a["chain"],
                                rule=a["rule"], target=a["target"], pkts=grown))
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
            hits += delta(host, parse_counters(old, tool), parse_counters(text, tool))
    return hits


def local_counters() -> dict[str, dict[str, Any]]:
    """This machine's counters (the path between docker-provider nodes); empty when unreadable."""
    try:
        proc = run_local(["iptables-save", "-c", "-t", "filter"], timeout=5)
    except LabError:  # not installed, or hung on the xtables lock
        return {}
    return parse_counters(proc.out) if proc.ok else {}


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
