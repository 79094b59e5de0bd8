"""Which firewall rule decided a probe's fate, on the host that received it or the one that sent it,
and the command that fixes it.

The nftables trace of the very packet is the ground truth (it sees native nftables tables and
iptables-nft chains). Rule counters are the fallback where the trace cannot see (iptables-legacy,
or a host where the trace did not run): a counter that grew is pinned on a probe only when the
rule surely matches that probe and counted enough packets for every probe it could match;
otherwise the drop is reported with the rule left uncertain.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .evidence import Evidence, Probe, RuleHit
from .firewall import _addr_matches, _opt, _port_matches, describe, matches
from .trace import Verdict

COPIES = 2  # copies per probe in evidence recorded before copies were counted
_KNOWN_MATCHES = {"tcp", "udp", "multiport", "conntrack", "state", "comment"}
_PARTIAL_MATCHES = {"statistic", "limit"}  # match some of the packets they see: a loss, not a cut
_SYN_ONLY = "--tcp-flags FIN,SYN,RST,ACK SYN"  # how iptables-save prints --syn
_NOT_INBOUND = ("FORWARD", "OUTPUT", "POSTROUTING")


@dataclass(frozen=True)
class Fix:
    """What lets a probe through, in the words of the tool that owns the rule: the command to run
    on `host`, and the one that removes the rule itself when a rule (not a chain policy) decided."""

    host: str
    let_through: str  # a command
    remove: str = ""
    ahead: bool = True  # let_through adds an accept ahead of the rule (it does not open a port in the tool)
    keep: str = ""  # how to keep the change across a reboot, when the command alone does not

    def __str__(self) -> str:
        text = f"on {self.host}: `{self.let_through}`" + (" (an accept ahead of the rule)" if self.ahead else "")
        if self.remove:
            text += f", or remove the rule: `{self.remove}`"
        return text + (f"; {self.keep}" if self.keep else "")


@dataclass
class Decision:
    """A firewall stopped the probe's copies (or may have)."""

    rule: str | None  # as the user finds it; None when uncertain
    reject: bool
    evidence: str
    fix: Fix | str  # a sentence when no command can be given
    certain: bool = True
    stopped: int | None = None  # copies it stopped, when that is known (the trace counts each packet)


def certainty(rule: str, probe: Probe, iface: str = "") -> str:
    """Whether an inbound iptables rule matches the probe: yes / no / maybe (a match it cannot judge)."""
    if rule.startswith("-P "):
        return "yes"
    proto = _opt(rule, "-p")
    if proto is not None and (proto.lstrip("!") in (probe.proto, "all")) == proto.startswith("!"):
        return "no"
    if not (_addr_matches(_opt(rule, "-s"), probe.src_ip) and _addr_matches(_opt(rule, "-d"), probe.dst_ip)
            and _port_matches(_opt(rule, "--dport", "--dports", "--destination-port"), probe.port)
            and _port_matches(_opt(rule, "--sport", "--sports", "--source-port"), probe.sport)):
        return "no"
    answer = "yes"
    ifin = _opt(rule, "-i")
    if ifin is not None:
        name = ifin.lstrip("!")
        hit = name == iface or (name.endswith("+") and iface.startswith(name[:-1]))
        if not iface:
            answer = "maybe"
        elif hit == ifin.startswith("!"):
            return "no"
    states = _opt(rule, "--ctstate", "--state")
    if states is not None and ("NEW" in states.lstrip("!").split(",")) == states.startswith("!"):
        return "no"  # every probe is the first packet of its flow
    if ("--syn" in rule or _SYN_ONLY in rule) and probe.proto != "tcp":
        return "no"
    modules = set(re.findall(r"(?:^| )-m (\S+)", rule))
    flags = "--tcp-flags" in rule.replace(_SYN_ONLY, "")
    return answer if modules <= _KNOWN_MATCHES | _PARTIAL_MATCHES and not flags else "maybe"


def _answered(p: Probe) -> bool:
    """Every copy that arrived was answered with a SYN-ACK: no rule on the receiver stopped it."""
    return p.proto == "tcp" and p.receiver_reply == "syn-ack" and (not p.copies or p.answered >= p.received)


def _partial(hit: RuleHit) -> bool:
    return bool(set(re.findall(r"(?:^| )-m (\S+)", hit.rule)) & _PARTIAL_MATCHES)


def _arrived(p: Probe) -> int:
    return p.received if p.copies else COPIES


def _pinned(ev: Evidence, p: Probe, hits: list[RuleHit], iface: str) -> tuple[list[RuleHit], list[RuleHit]]:
    """The rules a probe's drop can be pinned on, and those that may have dropped it."""
    sure, maybe = [], []
    for hit in hits:
        if hit.chain in _NOT_INBOUND or certainty(hit.rule, p, iface) == "no":
            continue
        rivals = [q for q in ev.probes if q.dst == p.dst and q.arrived and not _answered(q)
                  and certainty(hit.rule, q, iface) != "no"]
        alone = [q.id for q in rivals] == [p.id]
        if certainty(hit.rule, p, iface) == "yes" and (hit.pkts >= sum(_arrived(q) for q in rivals)
                                                        or (alone and hit.pkts > 0 and _partial(hit))):
            sure.append(hit)
        else:
            maybe.append(hit)
    return sure, maybe


def _port_spec(p: Probe) -> str:
    return f"{p.port}/{p.proto}"


NFT_KEEP = "to keep it after a reboot, write the same into /etc/nftables.conf"


def fix_for(owner: str, p: Probe, v: Verdict | None = None, hit: RuleHit | None = None,
            outbound: bool = False) -> Fix:
    """The command, in the tool that owns the rule, that lets the probe through: into p.dst, or
    (`outbound`) out of p.src."""
    host = p.src if outbound else p.dst
    if owner == "firewalld" and not outbound:
        return Fix(host, f"firewall-cmd --add-port={_port_spec(p)} --permanent && firewall-cmd --reload",
                   ahead=False)
    if owner == "ufw":
        return Fix(host, f"ufw allow {'out ' if outbound else ''}{_port_spec(p)}", ahead=False)
    if v is not None and owner in ("nft", "firewalld"):
        where = f"{v.family} {v.table} {v.chain}"
        return Fix(host, f"nft insert rule {where} {p.proto} dport {p.port} accept",
                   f"nft delete rule {where} handle {v.handle}" if v.handle is not None else "",
                   keep=NFT_KEEP if owner == "nft" else "")
    tool = "iptables-legacy" if hit is not None and "legacy" in hit.backend else \
        ("ip6tables" if v is not None and v.family == "ip6" else "iptables")
    table = (v.table if v is not None else hit.table if hit is not None else "filter")
    chain = (v.chain if v is not None else hit.chain if hit is not None else ("OUTPUT" if outbound else "INPUT"))
    line = (v.iptables if v is not None else hit.rule if hit is not None else "")
    t = "" if table == "filter" else f"-t {table} "
    return Fix(host, f"{tool} {t}-I {chain} -p {p.proto} --dport {p.port} -j ACCEPT",
               f"{tool} {t}-D {line[3:]}" if line.startswith("-A ") else "")


def name(v: Verdict) -> str:
    """The rule as `nft list ruleset` (or `iptables-save`, for iptables-nft) shows it."""
    if v.iptables:
        return f"{v.host}: {v.table}/{v.chain}: {v.iptables}"
    if v.policy:
        return f"{v.host}: {v.family} {v.table} {v.chain} policy drop"
    handle = f" handle {v.handle}" if v.handle is not None else ""
    return f"{v.host}: {v.family} {v.table} {v.chain}{handle}: {v.rule}"


def receiver(ev: Evidence, p: Probe, iface: str = "") -> Decision | None:
    """Did the receiver's firewall stop probe `p`, which arrived on its interface? None: no firewall
    verdict against it (the trace accepted it, or no rule counted it)."""
    mine = [v for v in ev.verdicts if v.host == p.dst and v.probe == p.id and v.direction == "in"]
    decided = _traced(mine, p, outbound=False)
    if decided is not None:
        return decided
    traced = ev.traced.get(p.dst) == "" and bool(mine)
    # the trace accepted it: only iptables-legacy (which it cannot see) may still have dropped it
    hits = [h for h in ev.rule_hits if h.host == p.dst and (not traced or "legacy" in h.backend)]
    sure, maybe = _pinned(ev, p, hits, iface)
    if p.proto == "tcp" and p.copies and 0 < p.answered < p.received:
        # the answers count the copies it stopped; the rules that counted drops are the suspects
        droppers = [h for h in sure + maybe if h.target in ("DROP", "REJECT")]
        if droppers:
            owner = "ufw" if any(h.chain.startswith("ufw") for h in droppers) else "iptables"
            return Decision("; ".join(describe(h) for h in droppers), any(h.target == "REJECT" for h in droppers),
                            "; ".join(f"{describe(h)} (counted {h.pkts} packet(s) during the probes)"
                                      for h in droppers), fix_for(owner, p, hit=droppers[0]),
                            stopped=p.received - p.answered)
        return None
    if sure and not _answered(p):
        reject = any(h.target == "REJECT" for h in sure)
        owner = "ufw" if any(h.chain.startswith("ufw") for h in sure) else "iptables"
        counts = "; ".join(f"{describe(h)} (counted {h.pkts} packet(s) during the probes)" for h in sure)
        # a counter tells copies apart only when the rule could match no other probe
        alone = all(len([q for q in ev.probes if q.dst == p.dst and q.arrived
                         and certainty(h.rule, q, iface) != "no"]) == 1 for h in sure)
        stopped = min(sum(h.pkts for h in sure), p.received) if alone and p.copies else None
        return Decision("; ".join(describe(h) for h in sure), reject, counts, fix_for(owner, p, hit=sure[0]),
                        stopped=stopped)
    if maybe and not (p.proto == "tcp" and p.receiver_reply):
        counts = "; ".join(f"{describe(h)} (counted {h.pkts})" for h in maybe)
        return Decision(None, False, f"rules that could match it counted drops, but other probes or traffic "
                                     f"could have moved them: {counts}",
                        f"look for the rule on {p.dst} (`iptables-legacy-save -c`); "
                        f"allow {p.proto.upper()} {p.port} from {p.src_ip}", certain=False)
    return None


def _traced(mine: list[Verdict], p: Probe, outbound: bool) -> Decision | None:
    """The trace's account of the probe's copies on one host: the drop it saw, with how many copies."""
    drops = [v for v in mine if v.verdict == "drop"]
    if not drops:
        return None
    v = max(drops, key=lambda d: d.packets)
    how = ("the rule" if not v.policy else "the chain's policy") + (" rejecting" if v.reject else " dropping")
    accepted = sum(x.packets for x in mine if x.verdict == "accept")
    stopped = sum(x.packets for x in drops)
    count = f"{stopped} of {stopped + accepted} copies" if p.copies else "it"
    return Decision(name(v), v.reject, f"the nftables trace shows {how} {count} "
                                       f"(chains crossed: {', '.join(v.chains)})",
                    fix_for(v.owner, p, v, outbound=outbound), stopped=stopped if p.copies else None)


def sender(ev: Evidence, p: Probe) -> Decision | None:
    """Did the sender's own firewall stop the probe on its way out? The trace names the rule; the
    counters of rules on the way out (OUTPUT, POSTROUTING) are the fallback."""
    mine = [v for v in ev.verdicts if v.host == p.src and v.probe == p.id and v.direction == "out"]
    decided = _traced(mine, p, outbound=True)
    if decided is not None:
        return decided
    hits = [h for h in ev.rule_hits if h.host == p.src and h.chain in ("OUTPUT", "POSTROUTING")
            and h.target in ("DROP", "REJECT") and matches(h.rule, p)]
    if not hits:
        return None
    owner = "ufw" if any(h.chain.startswith("ufw") for h in hits) else "iptables"
    return Decision("; ".join(describe(h) for h in hits), any(h.target == "REJECT" for h in hits),
                    "; ".join(f"{describe(h)} (counted {h.pkts} packet(s) during the probes)" for h in hits),
                    fix_for(owner, p, hit=hits[0], outbound=True))
