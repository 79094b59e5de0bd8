"""Firewall rules with their packet counters (`iptables-save -c`).

iptables-nft and iptables-legacy print the same syntax; comment lines ("# Warning:
iptables-legacy tables present") are skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..ssh import Result
from .base import Fact, FactError


@dataclass(frozen=True)
class FirewallRule:
    backend: str  # the command that printed it
    table: str
    chain: str
    rule: str  # iptables-save syntax: "-A INPUT ..." or "-P INPUT DROP" for a policy
    target: str
    pkts: int


def parse_rules(text: str, backend: str = "iptables-save") -> dict[str, FirewallRule]:
    """Rule key -> rule, for every rule and built-in chain policy. Keys are stable between
    two saves: identical rules in one chain are numbered."""
    rules: dict[str, FirewallRule] = {}
    table = ""
    seen: dict[str, int] = {}
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:]
            continue
        m = re.match(r"^:(\S+) (\S+) \[(\d+):\d+\]", line)
        if m and m.group(2) != "-":
            rules[f"{backend}|{table}|{m.group(1)}|policy"] = FirewallRule(
                backend, table, m.group(1), f"-P {m.group(1)} {m.group(2)}", m.group(2), int(m.group(3)))
            continue
        m = re.match(r"^\[(\d+):\d+\] (-A (\S+) .*)$", line)
        if m:
            rule, chain = m.group(2), m.group(3)
            n = seen.get(rule, 0)
            seen[rule] = n + 1
            t = re.search(r" -j (\S+)", rule)
            rules[f"{backend}|{table}|{rule}|{n}"] = FirewallRule(
                backend, table, chain, rule, t.group(1) if t else "", int(m.group(1)))
    return rules


@dataclass(frozen=True)
class FirewallRules(Fact[dict[str, FirewallRule]]):
    command = "iptables-save -c"
    what = "firewall rules"

    def parse(self, result: Result) -> dict[str, FirewallRule]:
        if not result.ok:
            raise FactError(f"`iptables-save` failed: {result.tail(2)}")
        return parse_rules(result.out)


def dropping(rules: dict[str, FirewallRule], ports: tuple[int, ...]) -> list[FirewallRule]:
    """Rules that drop or reject traffic to one of `ports` (by --dport)."""
    wanted = {str(p) for p in ports}
    return [r for r in rules.values() if r.target in ("DROP", "REJECT")
            and (m := re.search(r"--dport (\S+)", r.rule)) is not None and m.group(1) in wanted]
