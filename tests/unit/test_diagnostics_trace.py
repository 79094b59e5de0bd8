"""Per-probe ground truth: the nftables trace (recorded from `nft monitor trace` in a network
namespace: a native table with a drop and a tcp-reset reject, iptables-nft with a REJECT and a
multiport/conntrack DROP) and the counter fallback's refusal to pin a rule on the wrong probe."""

from __future__ import annotations

import json
from pathlib import Path

from diagnostics import verdict
from diagnostics.evidence import Evidence, HostFacts, Probe, RuleHit
from diagnostics.rules import Finding, analyze, root_cause
from diagnostics.trace import Verdict, parse, verdicts

DATA = Path(__file__).parent.parent / "data" / "diagnostics"
A, B = "10.99.0.1", "10.99.0.2"


def probe(pid: int, proto: str, port: int, src: str = "a", src_ip: str = A, **kw: object) -> Probe:
    return Probe(id=pid, src=src, dst="b", src_ip=src_ip, dst_ip=B, proto=proto, port=port, purpose="x",
                 sport=47100 + pid, left_sender=True, arrived=True, **kw)  # type: ignore[arg-type]


PROBES = [probe(0, "udp", 4789), probe(1, "tcp", 7946, receiver_reply="rst"),
          probe(2, "tcp", 2377, receiver_reply="icmp-3/10"), probe(3, "udp", 7946),
          probe(4, "udp", 7946)]


def recorded() -> dict:
    return json.loads((DATA / "nft-trace-netns.json").read_text())


def test_each_traced_packet_is_matched_to_its_probe_with_the_deciding_rule() -> None:
    got = {v.probe: v for v in verdicts("b", B, PROBES, recorded())}
    assert set(got) == {0, 1, 2, 3}  # probe 4 was never traced
    assert (got[0].family, got[0].table, got[0].chain, got[0].handle, got[0].rule) == \
        ("inet", "fw", "in", 2, "udp dport 4789 drop")
    assert got[0].owner == "nft" and not got[0].reject and got[0].chains == ["ip filter INPUT", "inet fw in"]
    assert got[1].reject and got[1].rule == "tcp dport 7946 reject with tcp reset"
    assert got[2].iptables == "-A INPUT -p tcp -m tcp --dport 2377 -j REJECT --reject-with icmp-host-prohibited"
    assert got[2].owner == "iptables" and got[2].rule == "tcp dport 2377 counter reject with icmp type host-prohibited"
    assert got[3].iptables.startswith("-A INPUT -s 10.99.0.1/32 -p udp -m multiport --dports 7946,8000")


def test_policy_and_accept_lines() -> None:
    lines = ["trace id 1 ip filter INPUT packet: iif \"eth1\" ip saddr 10.99.0.1 ip daddr 10.99.0.2 udp sport 47100 "
             "udp dport 4789", "trace id 1 ip filter INPUT rule jump ufw-before-input # handle 9 (verdict jump "
             "ufw-before-input)", "trace id 1 ip filter ufw-before-input verdict return",
             "trace id 1 ip filter INPUT policy drop",
             "trace id 2 ip filter INPUT packet: iif \"eth1\" ip saddr 10.99.0.1 ip daddr 10.99.0.2 udp sport 47103 "
             "udp dport 7946", "trace id 2 ip filter INPUT rule udp dport 7946 accept # handle 20 (verdict accept)"]
    parsed = parse(lines)
    assert parsed["1"].drop == ("ip", "filter", "INPUT", None, "") and parsed["2"].drop is None
    got = {v.probe: v for v in verdicts("b", B, PROBES, {"lines": lines, "chains": {}})}
    assert got[0].policy and got[0].owner == "ufw" and got[3].verdict == "accept"
    assert verdict.name(got[0]) == "b: ip filter INPUT policy drop"


def evidence(probes: list[Probe], hits: list[RuleHit], verdicts_: list[Verdict] | None = None,
             traced: bool = False) -> Evidence:
    hosts = {n: HostFacts(name=n, ip=ip, role="worker", docker={"running": True, "swarm_state": "active"})
             for n, ip in (("a", A), ("b", B), ("c", "10.99.0.3"))}
    return Evidence(lab="t", focus=None, data_port=4789, hosts=hosts, probes=probes, rule_hits=hits,
                    verdicts=verdicts_ or [], traced={"b": ""} if traced else {})


DEFAULT_DENY = [probe(0, "tcp", 7946, receiver_reply="syn-ack", reply_arrived="syn-ack"), probe(1, "udp", 7946),
                probe(2, "udp", 4789), probe(3, "tcp", 7946, "c", "10.99.0.3", receiver_reply="syn-ack",
                                             reply_arrived="syn-ack"),
                probe(4, "udp", 7946, "c", "10.99.0.3"), probe(5, "udp", 4789, "c", "10.99.0.3")]
POLICY = RuleHit("b", "iptables-save", "filter", "INPUT", "-P INPUT DROP", "DROP", 4)


def test_default_deny_counters_never_pin_the_policy_on_open_ports() -> None:
    """The policy counted 4 packets: the two VXLAN probes (twice each), but the counters cannot
    say which; answered TCP probes are never blamed; without a trace the drop is a warning."""
    found = {(f.code, f.severity, f.peer, f.port, f.proto, f.rule) for f in analyze(evidence(DEFAULT_DENY, [POLICY]))}
    assert all(sev == "warning" and rule is None and proto == "udp" for _, sev, _, _, proto, rule in found)


def test_default_deny_with_the_trace_blames_only_the_closed_port() -> None:
    traced = [Verdict("b", p.id, "in", "accept") for p in DEFAULT_DENY if p.port == 7946] + \
             [Verdict("b", p.id, "in", "drop", "ip", "filter", "INPUT", None, "", "-P INPUT DROP",
                      ["ip filter INPUT", "ip filter ufw-before-input"]) for p in DEFAULT_DENY if p.port == 4789]
    findings = analyze(evidence(DEFAULT_DENY, [POLICY], traced, traced=True))
    assert {(f.code, f.severity, f.peer, f.port) for f in findings} == \
        {("port-dropped", "error", "a", 4789), ("port-dropped", "error", "c", 4789)}
    assert all(f.fix == "on b: `ufw allow 4789/udp`" and f.rule == "b: filter/INPUT: -P INPUT DROP" for f in findings)


def test_legacy_rule_is_pinned_when_it_surely_matches_and_counted_enough() -> None:
    probes = [probe(0, "tcp", 2377), probe(1, "tcp", 2377, "c", "10.99.0.3"), probe(2, "udp", 4789)]
    rule = RuleHit("b", "iptables-legacy-save", "filter", "INPUT", "-A INPUT -p tcp -m tcp --dport 2377 -j DROP",
                   "DROP", 9)
    accepted = [Verdict("b", p.id, "in", "accept") for p in probes]
    findings = analyze(evidence(probes, [rule], accepted, traced=True))
    assert {(f.code, f.severity, f.peer, f.port) for f in findings} == \
        {("port-dropped", "error", "a", 2377), ("port-dropped", "error", "c", 2377)}
    assert "`iptables-legacy -D INPUT -p tcp -m tcp --dport 2377 -j DROP`" in findings[0].fix
    # an iptables-nft counter is not believed over a trace that accepted the packet
    nft_rule = RuleHit(**{**rule.__dict__, "backend": "iptables-save"})
    found = analyze(evidence(probes, [nft_rule], accepted, traced=True))
    assert found and all(f.rule is None and "no iptables rule counted it" in f.evidence for f in found)


def test_certainty_of_iptables_matches() -> None:
    p = probe(0, "udp", 4789)
    assert verdict.certainty("-A INPUT -p udp -m multiport --dports 4000:5000,8000 -j DROP", p) == "yes"
    assert verdict.certainty("-A INPUT -p udp -m multiport --dports 7946,8000 -j DROP", p) == "no"
    assert verdict.certainty("-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j DROP", p) == "no"
    assert verdict.certainty("-A INPUT -m state --state NEW -j DROP", p) == "yes"
    assert verdict.certainty("-A INPUT -i eth0 -j DROP", p, "eth1") == "no"
    assert verdict.certainty("-A INPUT -i eth+ -j DROP", p, "eth1") == "yes"
    assert verdict.certainty("-A INPUT -m set --match-set bad src -j DROP", p) == "maybe"
    assert verdict.certainty("-A INPUT -s 10.0.0.0/8 ! -p tcp -j DROP", p) == "yes"


def test_fix_in_the_owning_tool() -> None:
    p = probe(0, "udp", 4789)
    v = Verdict("b", 0, "in", "drop", "inet", "fw", "in", 7, "udp dport 4789 drop")
    assert str(verdict.fix_for("nft", p, v)) == (
        "on b: `nft insert rule inet fw in udp dport 4789 accept` (an accept ahead of the rule), or remove the rule: "
        "`nft delete rule inet fw in handle 7`; to keep it after a reboot, write the same into /etc/nftables.conf")
    assert str(verdict.fix_for("firewalld", p)) == \
        "on b: `firewall-cmd --add-port=4789/udp --permanent && firewall-cmd --reload`"
    assert Verdict("b", 0, "in", "drop", "inet", "firewalld", "filter_INPUT", 3, "reject").owner == "firewalld"


def load(name: str) -> Evidence:
    return Evidence.from_json(json.loads((DATA / f"{name}.json").read_text()))


def test_recorded_native_nft_drop_is_found_with_its_rule() -> None:
    """Recorded on a real lab: `inet fw in udp dport 4789 drop` on worker-2, a rule without counters."""
    found = [f for f in analyze(load("nft-drop-4789")) if f.severity != "info"]
    assert {(f.code, f.host, f.peer, f.port, f.where) for f in found} == \
        {("port-dropped", "worker-2", "manager", 4789, "receiver"), ("port-dropped", "worker-2", "worker-1", 4789,
                                                                     "receiver")}
    assert all(f.rule == "worker-2: inet fw in handle 2: udp dport 4789 drop" and
               "`nft delete rule inet fw in handle 2`" in f.fix for f in found)


def test_recorded_ufw_default_deny_blames_only_the_closed_port() -> None:
    """Recorded: ufw default deny incoming, 22/tcp, 2377/tcp and 7946 allowed, 4789/udp not."""
    found = [f for f in analyze(load("ufw-default-deny")) if f.severity != "info"]
    assert {(f.code, f.host, f.peer, f.port, f.proto) for f in found} == \
        {("port-dropped", "worker-2", "manager", 4789, "udp"), ("port-dropped", "worker-2", "worker-1", 4789, "udp")}
    assert all(f.fix == "on worker-2: `ufw allow 4789/udp`" for f in found)


def test_recorded_healthy_traced_lab_is_clean() -> None:
    ev = load("nft-healthy-traced")
    assert all(v.verdict == "accept" for v in ev.verdicts) and ev.traced
    assert [f for f in analyze(ev) if f.severity != "info"] == []


def test_copies_that_met_the_same_fate_are_counted_once_each() -> None:
    lines = [f"trace id {n} ip filter INPUT packet: iif \"eth1\" ip saddr 10.99.0.1 ip daddr 10.99.0.2 "
             f"udp sport {47100 + n} udp dport 4789" for n in range(4)]
    lines += [f"trace id {n} ip filter INPUT rule udp dport 4789 meta random mod 2 0 drop # handle 5 (verdict drop)"
              for n in (0, 2)]
    group = probe(0, "udp", 4789, copies=4, received=4)
    got = verdicts("b", B, [group], {"lines": lines, "chains": {}})
    assert sorted((v.verdict, v.packets) for v in got) == [("accept", 2), ("drop", 2)]
    ev = Evidence(lab="t", focus=None, data_port=4789, hosts={}, probes=[group], verdicts=got, traced={"b": ""})
    decided = verdict.receiver(ev, group)
    assert decided is not None and decided.stopped == 2 and "2 of 4 copies" in decided.evidence


def test_the_senders_trace_names_its_output_rule() -> None:
    lines = ["trace id 9 inet egress out packet: oif \"eth1\" ip saddr 10.99.0.1 ip daddr 10.99.0.2 "
             "udp sport 47100 udp dport 4789",
             "trace id 9 inet egress out rule ip daddr 10.99.0.2 drop # handle 4 (verdict drop)"]
    p = Probe(id=0, src="a", dst="b", src_ip=A, dst_ip=B, proto="udp", port=4789, purpose="x", sport=47100,
              left_sender=False, arrived=False, send_error="EPERM")
    got = verdicts("a", A, [p], {"lines": lines, "chains": {}})
    assert [(v.direction, v.verdict, v.handle) for v in got] == [("out", "drop", 4)]
    ev = Evidence(lab="t", focus=None, data_port=4789, hosts={}, probes=[p], verdicts=got, traced={"a": ""})
    decided = verdict.sender(ev, p)
    assert decided is not None and decided.rule == "a: inet egress out handle 4: ip daddr 10.99.0.2 drop"
    assert str(decided.fix) == (
        "on a: `nft insert rule inet egress out udp dport 4789 accept` (an accept ahead of the rule), or remove the "
        "rule: `nft delete rule inet egress out handle 4`; to keep it after a reboot, write the same into "
        "/etc/nftables.conf")


def test_one_rule_behind_several_ports_is_the_cause_named_once() -> None:
    rule = "worker-1: inet firewalld filter_INPUT handle 9: reject with icmpx admin-prohibited"

    def rejected(peer: str, port: int) -> Finding:
        fix = verdict.Fix("worker-1", f"firewall-cmd --add-port={port}/udp --permanent && firewall-cmd --reload",
                          ahead=False)
        return Finding("port-rejected", "error", "worker-1", f"worker-1 rejects UDP {port} from {peer}", "...",
                       str(fix), peer=peer, port=port, proto="udp", direction="inbound", where="receiver", rule=rule,
                       fix_parts=fix)
    text = root_cause([rejected(peer, port) for peer in ("manager", "worker-2") for port in (4789, 7946)])
    assert text.startswith("Most likely cause: one rule in worker-1's firewall stops UDP 4789 and UDP 7946 "
                           f"(manager -> worker-1, worker-2 -> worker-1): {rule}. ")
    assert text.count(rule) == 1 and "Also found" not in text
    assert text.endswith("Fix: on worker-1: `firewall-cmd --add-port=4789/udp --permanent && firewall-cmd "
                         "--reload`; `firewall-cmd --add-port=7946/udp --permanent && firewall-cmd --reload`.")
