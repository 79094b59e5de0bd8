"""Every host's firewall as a set of lines (rules and policies of iptables-nft, iptables-legacy,
native nftables, ufw's and firewalld's state), and what changed between two readings: a fix that
opened more than the fault needs (a flush, a policy turned to ACCEPT, a firewall switched off, an
accept of every port) is told from one that let the needed traffic through."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..lab import Lab
from ..runner import run_local
from ..ssh import fan_out

READ = {
    "iptables": "iptables-nft-save 2>/dev/null; ip6tables-nft-save 2>/dev/null",
    "legacy": "iptables-legacy-save 2>/dev/null; ip6tables-legacy-save 2>/dev/null",
    "nft": "nft -s list ruleset 2>/dev/null",
    "daemons": "command -v ufw >/dev/null && ufw status 2>/dev/null | head -1; "
               "command -v firewall-cmd >/dev/null && echo firewalld $(firewall-cmd --state 2>&1)",
}
MARK = "@@labctl-section:"
DAEMON_ON = {"Status: active": "ufw", "firewalld running": "firewalld"}  # lines of READ["daemons"]
XTABLES = re.compile(r"^table (ip|ip6|arp|bridge) (filter|nat|mangle|raw|security)$")  # iptables-nft's own


def _iptables(text: str, kind: str) -> list[str]:
    out: list[str] = []
    table = ""
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith(":"):
            chain, policy = line[1:].split()[:2]
            # ACCEPT is where a built-in chain starts: an empty iptables-legacy table, which a
            # single legacy command leaves in the kernel for good, reads as no table at all
            if policy not in ("-", "ACCEPT"):
                out.append(f"{kind} {table}: policy {chain} {policy}")
        elif line.startswith("-A "):
            out.append(f"{kind} {table}: {line}")
    return out


def _nft(text: str) -> list[str]:
    out: list[str] = []
    table = chain = ""
    for raw in text.splitlines():
        line = raw.strip()
        if raw.startswith("table "):
            table, chain = line.rstrip(" {"), ""
        elif line.startswith("chain ") and table:
            chain = line.rstrip(" {").split()[1]
        elif line in ("}", "") or not table or XTABLES.match(table) or not chain:
            continue
        elif line.startswith("type "):
            policy = re.search(r"policy (\w+)", line)
            out.append(f"nft {table} {chain}: policy {policy.group(1) if policy else 'accept'}")
        else:
            out.append(f"nft {table} {chain}: {line}")
    return out


def read(lab: Lab) -> dict[str, list[str]]:
    """host -> its firewall's lines (sorted); "this machine" -> its DOCKER-USER chain, where path
    faults live."""
    script = " ; ".join(f"echo {MARK}{key}; {{ {cmd}; }}" for key, cmd in READ.items())
    found: dict[str, list[str]] = {}
    for name, res in fan_out(list(lab.hosts().values()),
                             lambda h: h.run(script, sudo=True, timeout=30)).items():
        if isinstance(res, BaseException):
            found[name] = [f"unreadable: {res}"]
            continue
        parts = {p.split("\n", 1)[0]: p.split("\n", 1)[1] if "\n" in p else "" for p in res.out.split(MARK)[1:]}
        lines = _iptables(parts.get("iptables", ""), "iptables") + _iptables(parts.get("legacy", ""), "legacy")
        lines += _nft(parts.get("nft", "")) + [x.strip() for x in parts.get("daemons", "").splitlines() if x.strip()]
        found[name] = sorted(set(lines))
    if lab.backend().local_bridge() is not None:
        local = run_local(["iptables", "-S", "DOCKER-USER"], timeout=30)
        found["this machine"] = sorted(f"iptables filter: {x}" for x in local.out.splitlines() if x.startswith("-A "))
    return found


def _restrictive(line: str) -> bool:
    text = line.lower()
    return (bool(re.search(r"-j (drop|reject)\b", text)) or bool(re.search(r"policy \S+ drop$|: policy drop$", text))
            or (bool(re.search(r"\b(drop|reject)\b", text)) and line.startswith("nft "))
            or line in DAEMON_ON)


def _opens_all(line: str) -> bool:
    """An accept that lets in more than given ports: no port at all, or a range of them."""
    if line.startswith(("iptables ", "legacy ")):
        if not re.search(r"-j ACCEPT$", line) or " filter: " not in line:
            return False
        if re.search(r"--ctstate|--state|-i lo\b|-o lo\b|-p icmp", line):
            return False
        ports = re.findall(r"--dports? (\S+)", line)
        return not ports or any(":" in p for p in ports)
    if line.startswith("nft ") and line.endswith("accept"):
        if re.search(r"ct state|iif(name)? \"?lo|icmp", line):
            return False
        ports = re.findall(r"dport (\S+)", line)
        return not ports or any("-" in p for p in ports)
    return False


@dataclass
class Change:
    removed: dict[str, list[str]] = field(default_factory=dict)
    added: dict[str, list[str]] = field(default_factory=dict)
    too_broad: list[str] = field(default_factory=list)  # sentences: what was opened beyond the fault

    def lines(self) -> list[str]:
        out = [f"{host}: removed {x}" for host, xs in self.removed.items() for x in xs]
        return out + [f"{host}: added {x}" for host, xs in self.added.items() for x in xs]


def compare(before: dict[str, list[str]], after: dict[str, list[str]],
            fault: dict[str, list[str]]) -> Change:
    """What changed from `before` (the broken lab) to `after`; `fault`: the lines the drill itself
    added (their removal is the fix)."""
    change = Change()
    for host in sorted(set(before) | set(after)):
        old, new = set(before.get(host, [])), set(after.get(host, []))
        ours = set(fault.get(host, []))
        removed, added = sorted(old - new), sorted(new - old)
        if removed:
            change.removed[host] = removed
        if added:
            change.added[host] = added
        switched_off = [line for line in removed if line in DAEMON_ON]
        for line in switched_off:
            change.too_broad.append(f"{host}: {DAEMON_ON[line]} was switched off (it said `{line}`), which "
                                    "opens every port it guarded; allow the port the fault needs instead")
        for line in removed:
            if line in ours or line in DAEMON_ON or not _restrictive(line):
                continue
            if switched_off and _owned_by_daemon(line):
                continue  # went with the daemon, told above
            change.too_broad.append(f"{host}: removed `{_bare(line)}`, which was not the fault")
        for line in added:
            if _opens_all(line):
                change.too_broad.append(f"{host}: added `{_bare(line)}`, which lets in more than the fault needs")
    return change


def _owned_by_daemon(line: str) -> bool:
    """A rule or chain policy ufw or firewalld writes (and takes away when switched off)."""
    return ": policy " in line or bool(re.search(r"\bufw6?-|\bf2b-|nft (inet|ip|ip6) firewalld ", line))


def _bare(line: str) -> str:
    """The rule as its tool prints it: without the backend and table it was read from."""
    if line.startswith(("iptables ", "legacy ", "nft ")) and ": " in line:
        return line.split(": ", 1)[1]
    return line
