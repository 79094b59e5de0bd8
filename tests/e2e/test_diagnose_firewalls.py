"""diagnose against the firewalls people really have, each made by hand with its own tool on a real
lab: a native nftables table (no counters), ufw's default deny, firewalld, iptables-legacy. The
findings are exactly the ports the firewall stops, name the rule and give that tool's fix; once the
firewall is gone, the lab diagnoses clean."""

from __future__ import annotations

import base64
import difflib
import re
from collections.abc import Iterator

import pytest

from labctl.drills.catalog import UFW_RESTORE, UFW_SAVE
from tests.conftest import LabRun
from tests.e2e.test_diagnose import _subnet_ip, diagnose, problems, wait_healthy

pytestmark = pytest.mark.e2e


def _ok(lab: LabRun, host: str, cmd: str) -> str:
    proc = lab.sh(host, cmd)
    assert proc.returncode == 0, f"{host}: {cmd}: {proc.stdout}{proc.stderr}"
    return proc.stdout


def _inbound(code: str, host: str, port: int, *peers: str) -> set[tuple]:
    return {(code, host, peer, port, "inbound", "receiver") for peer in peers}


def told(data: dict) -> str:
    """What diagnose said, for a failed assertion: every finding with its evidence."""
    return "\n".join(f"{f['severity']} {f['code']} {f['host']} <- {f.get('peer')} {f.get('port')}/{f.get('proto')}: "
                     f"{f['evidence']} [rule: {f.get('rule')}]" for f in data["findings"])


def _finding(data: dict, host: str, peer: str, port: int, proto: str) -> dict:
    return next(f for f in data["findings"] if (f["host"], f.get("peer"), f.get("port"), f.get("proto"))
                == (host, peer, port, proto))


# What a firewall tool may leave on a host: rules of every backend, tables, forwarding settings,
# daemons. Counters are left out (traffic moves them).
STATE = {"iptables": "iptables-nft-save; ip6tables-nft-save", "legacy": "iptables-legacy-save; ip6tables-legacy-save",
         "nft": "nft list tables", "sysctl": "sysctl net.ipv4.ip_forward net.ipv4.conf.all.rp_filter",
         "daemons": "ps -eo comm="}
DAEMONS = ("firewalld", "dbus-daemon")


DOCKERS_OWN = re.compile(r"DOCKER|docker0|docker_gwbridge")


def _tables(save: str, drop_empty: bool = False) -> list[str]:
    """iptables-save text as lines without comments or counters, Docker's own rules in sorted
    order (a dockerd that restarts writes them anew, in an order of its own); with `drop_empty`,
    without the tables that hold no rule and accept everything (an iptables-legacy table, once
    used, stays in the kernel for good, empty)."""
    out: list[str] = []
    for table in re.split(r"^(?=\*)", save, flags=re.M):
        lines = [re.sub(r" \[\d+:\d+\]$", "", x) for x in table.splitlines() if x and not x.startswith("#")]
        if drop_empty and not any(x.startswith("-A ") for x in lines) and \
                all(x.endswith(" ACCEPT") for x in lines if x.startswith(":")):
            continue
        dockers = sorted(x for x in lines if DOCKERS_OWN.search(x))
        out += [x for x in lines if not DOCKERS_OWN.search(x)] + dockers
    return out


def _state(lab: LabRun) -> dict[str, dict[str, list[str]]]:
    found: dict[str, dict[str, list[str]]] = {}
    for host in ("manager", "worker-1", "worker-2"):
        text = _ok(lab, host, " ; ".join(f"echo @{key}; {{ {cmd}; }} 2>/dev/null" for key, cmd in STATE.items()))
        parts = dict(part.split("\n", 1) for part in text.split("@")[1:])
        found[host] = {key: _tables(value, drop_empty=key == "legacy") if key in ("iptables", "legacy")
                       else value.splitlines() for key, value in parts.items()}
        found[host]["daemons"] = sorted(x for x in found[host]["daemons"] if x in DAEMONS)
        found[host]["nft"].sort()  # a table put back (iptables-nft-restore) is listed last
    return found


@pytest.fixture
def clean(healthy_lab: LabRun) -> Iterator[LabRun]:
    """The lab; after the test (which removed its firewall) every host is as it was, and the lab
    diagnoses clean."""
    before = _state(healthy_lab)
    yield healthy_lab
    after = _state(healthy_lab)
    for host, kinds in before.items():
        for kind, lines in kinds.items():
            assert after[host][kind] == lines, f"{host}'s {kind} changed:\n" + "\n".join(
                difflib.unified_diff(lines, after[host][kind], lineterm=""))
    diagnosed = wait_healthy(healthy_lab)
    assert diagnosed["healthy"], problems(diagnosed)


def test_native_nft_table_dropping_vxlan(clean: LabRun) -> None:
    lab = clean
    _ok(lab, "worker-2", "nft add table inet fw && nft add chain inet fw in "
        "'{ type filter hook input priority 0; policy accept; }' && nft add rule inet fw in udp dport 4789 drop")
    try:
        data = diagnose(lab)
        assert problems(data) == _inbound("port-dropped", "worker-2", 4789, "manager", "worker-1"), told(data)
        f = _finding(data, "worker-2", "manager", 4789, "udp")
        assert f["rule"].startswith("worker-2: inet fw in handle ") and f["rule"].endswith(": udp dport 4789 drop")
        handle = f["rule"].split("handle ")[1].split(":")[0]
        assert "`nft insert rule inet fw in udp dport 4789 accept`" in f["fix"]
        assert f"`nft delete rule inet fw in handle {handle}`" in f["fix"]
        assert "4789" in data["root_cause"]
    finally:
        _ok(lab, "worker-2", "nft delete table inet fw")


def test_native_nft_table_dropping_gossip_tcp(clean: LabRun) -> None:
    lab = clean
    _ok(lab, "worker-1", "nft add table ip guard && nft add chain ip guard early "
        "'{ type filter hook input priority -150; policy accept; }' && "
        "nft add rule ip guard early tcp dport 7946 counter drop")
    try:
        data = diagnose(lab)
        assert problems(data) == _inbound("port-dropped", "worker-1", 7946, "manager", "worker-2"), told(data)
        f = _finding(data, "worker-1", "worker-2", 7946, "tcp")
        assert f["rule"].startswith("worker-1: ip guard early handle ")
        assert f["rule"].endswith(": tcp dport 7946 counter drop")
    finally:
        _ok(lab, "worker-1", "nft delete table ip guard")


def _script(lab: LabRun, host: str, text: str) -> str:
    """A shell script on a host, as root, free of any quoting (it travels base64-encoded)."""
    return _ok(lab, host, f"echo {base64.b64encode(text.encode()).decode()} | base64 -d | sh -e")


def test_ufw_default_deny_missing_vxlan(clean: LabRun) -> None:
    """Open ports are never blamed: only the one ufw does not allow."""
    lab = clean
    _ok(lab, "worker-2", UFW_SAVE)
    try:
        _ok(lab, "worker-2", "ufw default deny incoming && ufw allow 22/tcp && ufw allow 2377/tcp && "
            "ufw allow 7946 && ufw --force enable")
        data = diagnose(lab)
        assert problems(data) == _inbound("port-dropped", "worker-2", 4789, "manager", "worker-1"), told(data)
        for peer in ("manager", "worker-1"):
            f = _finding(data, "worker-2", peer, 4789, "udp")
            assert "`ufw allow 4789/udp`" in f["fix"]
            assert f["rule"] == "worker-2: filter/INPUT: -P INPUT DROP"
    finally:
        _script(lab, "worker-2", UFW_RESTORE)  # as a drill puts ufw back; the fixture checks it


FIREWALLD_START = ("mkdir -p /run/dbus && rm -f /run/dbus/pid && dbus-daemon --system --fork && "
                   "firewalld && for i in $(seq 60); do firewall-cmd --state >/dev/null 2>&1 && exit 0; "
                   "sleep 0.5; done; exit 1")
FIREWALLD_STOP = ("kill $(cat /run/firewalld.pid 2>/dev/null || pgrep -f /usr/sbin/firewalld) 2>/dev/null; "
                  "for i in $(seq 40); do pgrep -f /usr/sbin/firewalld >/dev/null || break; sleep 0.25; done; "
                  "kill $(cat /run/dbus/pid) 2>/dev/null; rm -f /run/dbus/pid; "
                  "! nft list tables | grep -q firewalld")


# firewalld, started after docker (as here), flushes the iptables rules docker and the node's own
# container runtime made; stopping it removes its own table only. The host's rules are saved before
# and put back after, exactly.
RULES_SAVE = "iptables-nft-save > /run/fw-saved.v4 && ip6tables-nft-save > /run/fw-saved.v6"
RULES_RESTORE = ("iptables-nft-restore < /run/fw-saved.v4 && ip6tables-nft-restore < /run/fw-saved.v6 && "
                 "rm -f /run/fw-saved.v4 /run/fw-saved.v6")


def test_firewalld_missing_udp_ports(clean: LabRun) -> None:
    """7946 opened for TCP only, 4789 with the wrong protocol: both UDP ports are rejected."""
    lab = clean
    _ok(lab, "worker-1", RULES_SAVE)
    try:
        _ok(lab, "worker-1", FIREWALLD_START)
        _ok(lab, "worker-1", "firewall-cmd --add-port=7946/tcp && firewall-cmd --add-port=4789/tcp")
        data = diagnose(lab)
        assert problems(data) == (_inbound("port-rejected", "worker-1", 7946, "manager", "worker-2")
                                  | _inbound("port-rejected", "worker-1", 4789, "manager", "worker-2")), told(data)
        for port in (7946, 4789):
            f = _finding(data, "worker-1", "manager", port, "udp")
            assert f"`firewall-cmd --add-port={port}/udp --permanent && firewall-cmd --reload`" in f["fix"]
            assert f["rule"].startswith("worker-1: inet firewalld ")
            assert f["icmp"] == {"from": _subnet_ip(lab, 11), "type": 3, "code": 13,
                                 "meaning": "administratively prohibited"}, told(data)
        rule = _finding(data, "worker-1", "manager", 4789, "udp")["rule"]
        assert {f["rule"] for f in data["findings"] if f["severity"] == "error"} == {rule}
        assert data["root_cause"].startswith("Most likely cause: one rule in worker-1's firewall stops UDP 4789 "
                                             "and UDP 7946 (manager -> worker-1, worker-2 -> worker-1): " + rule)
        assert data["root_cause"].count(rule) == 1
    finally:
        _ok(lab, "worker-1", FIREWALLD_STOP)
        _ok(lab, "worker-1", RULES_RESTORE)


def test_iptables_legacy_drop_found_by_counters(clean: LabRun) -> None:
    lab = clean
    rule = "INPUT -p tcp --dport 2377 -j DROP"
    _ok(lab, "manager", f"iptables-legacy -I {rule}")
    try:
        data = diagnose(lab)
        assert problems(data) == _inbound("port-dropped", "manager", 2377, "worker-1", "worker-2"), told(data)
        f = _finding(data, "manager", "worker-1", 2377, "tcp")
        assert f["rule"] == "manager: filter/INPUT: -A INPUT -p tcp -m tcp --dport 2377 -j DROP"
        assert "`iptables-legacy -D INPUT -p tcp -m tcp --dport 2377 -j DROP`" in f["fix"]
    finally:
        _ok(lab, "manager", f"iptables-legacy -D {rule}")


def test_hand_made_reject_names_the_peer_rule(clean: LabRun) -> None:
    """An iptables-nft REJECT for one peer only: the trace names it, the other peer is not blamed."""
    lab = clean
    rule = f"INPUT -s {_subnet_ip(lab, 11)} -p tcp --dport 2377 -j REJECT --reject-with tcp-reset"
    _ok(lab, "manager", f"iptables -I {rule}")
    try:
        data = diagnose(lab)
        assert problems(data) == _inbound("port-rejected", "manager", 2377, "worker-1"), told(data)
        f = _finding(data, "manager", "worker-1", 2377, "tcp")
        assert f["rule"].startswith("manager: filter/INPUT: -A INPUT -s ") and "-j REJECT" in f["rule"]
    finally:
        _ok(lab, "manager", f"iptables -D {rule}")


def test_icmp_rejections_on_the_receivers_are_seen_and_named(clean: LabRun) -> None:
    """REJECT with icmp-admin-prohibited, icmp-host-prohibited and the default port-unreachable, on
    three hosts: each answer is seen on the wire (the path MTU probes, which go to the same data path
    port, must not use up the ICMP errors the kernel lets a host send in a burst) and named."""
    lab = clean
    rules = {"worker-1": "INPUT -p tcp --dport 7946 -j REJECT --reject-with icmp-admin-prohibited",
             "worker-2": "INPUT -p udp --dport 4789 -j REJECT --reject-with icmp-host-prohibited",
             "manager": f"INPUT -s {_subnet_ip(lab, 12)} -p udp --dport 7946 -j REJECT"}
    for host, rule in rules.items():
        _ok(lab, host, f"iptables -I {rule}")
    try:
        data = diagnose(lab)
        assert problems(data) == (_inbound("port-rejected", "worker-1", 7946, "manager", "worker-2")
                                  | _inbound("port-rejected", "worker-2", 4789, "manager", "worker-1")
                                  | _inbound("port-rejected", "manager", 7946, "worker-2")), told(data)
        codes = {(f["host"], f["peer"], f["proto"]): f["icmp"]["code"] for f in data["findings"]
                 if f["severity"] == "error"}
        assert codes == {("worker-1", "manager", "tcp"): 13, ("worker-1", "worker-2", "tcp"): 13,
                         ("worker-2", "manager", "udp"): 10, ("worker-2", "worker-1", "udp"): 10,
                         ("manager", "worker-2", "udp"): 3}, told(data)
        assert data["root_cause"].startswith("Most likely cause: TCP 7946 is rejected on the receiving host's "
                                             "firewall (manager -> worker-1, worker-2 -> worker-1)")
        assert data["root_cause"].count("; fix: on ") == 2  # the other two causes, each with its fix
    finally:
        for host, rule in rules.items():
            _ok(lab, host, f"iptables -D {rule}")


def test_native_nft_egress_rule_on_the_sender(clean: LabRun) -> None:
    """An nftables output chain on worker-1 drops VXLAN to worker-2: a finding on the sender, its rule
    named from the trace, never a crashed probe."""
    lab = clean
    w2 = _subnet_ip(lab, 12)
    _ok(lab, "worker-1", "nft add table inet egress && nft add chain inet egress out "
        "'{ type filter hook output priority 0; policy accept; }' && "
        f"nft add rule inet egress out ip daddr {w2} udp dport 4789 drop")
    try:
        data = diagnose(lab)
        assert problems(data) == {("port-dropped", "worker-1", "worker-2", 4789, "outbound", "sender")}, told(data)
        f = _finding(data, "worker-1", "worker-2", 4789, "udp")
        assert f["rule"].startswith("worker-1: inet egress out handle ")
        assert f["rule"].endswith(f": ip daddr {w2} udp dport 4789 drop")
        assert "`nft delete rule inet egress out handle " in f["fix"]
        assert "EPERM" in f["evidence"]
    finally:
        _ok(lab, "worker-1", "nft delete table inet egress")
