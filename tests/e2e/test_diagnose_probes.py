"""diagnose's probes on a real lab, against faults made by hand the way people meet them: an OUTPUT rule
on the sending host (a finding on the sender, never a crashed probe), a rejection on the path (an ICMP
error from a third address: who rejected, with which type and code), and a partial loss (`lossy`, with
its rate). Each test makes its fault, asserts the exact set of findings, removes the fault and checks
that diagnose is clean again (then `labctl up` runs, as after every test that breaks the lab)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.conftest import LabRun
from tests.e2e.test_diagnose import _bridge, _subnet_ip, diagnose, wait_healthy

pytestmark = pytest.mark.e2e

NTH_HALF = "-m statistic --mode nth --every 2 --packet 0 -j DROP"  # every second packet: exactly half


def problems(data: dict) -> set[tuple]:
    return {(f["code"], f["host"], f.get("peer"), f.get("port"), f.get("proto"), f.get("direction"),
             f.get("where")) for f in data["findings"] if f["severity"] in ("error", "warning")}


def bad(data: dict) -> list[dict]:
    return [f for f in data["findings"] if f["severity"] in ("error", "warning")]


@contextmanager
def on_host(lab: LabRun, host: str, rule: str) -> Iterator[None]:
    """An iptables rule on a lab host (`CHAIN match... -j TARGET`) for the body; removed after it,
    and then the lab must diagnose healthy again."""
    assert lab.sh(host, f"iptables -I {rule}").returncode == 0
    try:
        yield
    finally:
        assert lab.sh(host, f"iptables -D {rule}").returncode == 0
    after = wait_healthy(lab)
    assert after["healthy"], problems(after)


@contextmanager
def on_path(lab: LabRun, *match: str) -> Iterator[None]:
    """A rule in this machine's DOCKER-USER chain, between the lab's nodes (their bridge)."""
    if shutil.which("iptables") is None:
        pytest.skip("no iptables on this machine")
    br = _bridge(lab)
    rule = ["-i", br, "-o", br, *match]
    subprocess.run(["iptables", "-I", "DOCKER-USER", *rule], check=True)
    try:
        yield
    finally:
        subprocess.run(["iptables", "-D", "DOCKER-USER", *rule], check=True)
    after = wait_healthy(lab)
    assert after["healthy"], problems(after)


@pytest.mark.parametrize("target,code,saved", [
    ("DROP", "port-dropped", "-j DROP"),
    ("REJECT", "port-rejected", "-j REJECT --reject-with icmp-port-unreachable"),
])
def test_output_rule_on_the_sender_is_named_on_the_sender(healthy_lab: LabRun, target: str, code: str,
                                                          saved: str) -> None:
    """Every probe worker-1 sends to worker-2 is refused by worker-1's own OUTPUT chain (EPERM):
    one finding per port on worker-1, naming the rule as `iptables -S OUTPUT` prints it."""
    lab = healthy_lab  # `labctl up` heals it after the test
    w2 = _subnet_ip(lab, 12)
    with on_host(lab, "worker-1", f"OUTPUT -d {w2} -j {target}"):
        data = diagnose(lab)
        assert problems(data) == {(code, "worker-1", "worker-2", port, proto, "outbound", "sender")
                                  for proto, port in (("tcp", 7946), ("udp", 7946), ("udp", 4789))}
        for f in bad(data):
            assert f["rule"] == f"worker-1: filter/OUTPUT: -A OUTPUT -d {w2}/32 {saved}"
            assert "its kernel refused 8 of 8 copies (100%) with EPERM" in f["evidence"]
        refused = {(g["src"], g["dst"], g["proto"], g["port"], g.get("send_error"), g["left"])
                   for g in data["probe_groups"] if g.get("send_error")}
        assert refused == {("worker-1", "worker-2", proto, port, "EPERM", 0)
                           for proto, port in (("tcp", 7946), ("udp", 7946), ("udp", 4789))}


def test_admin_prohibited_on_the_path_names_who_rejected(healthy_lab: LabRun) -> None:
    """A REJECT on the bridge between the nodes answers from this machine's address on that bridge
    (the lab subnet's .1), with ICMP destination unreachable, code 13."""
    lab = healthy_lab  # `labctl up` heals it after the test
    w2, manager = _subnet_ip(lab, 12), _subnet_ip(lab, 10)
    gateway = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", _bridge(lab)], capture_output=True,
                             text=True, check=True).stdout.split()[3].split("/")[0]
    assert gateway == _subnet_ip(lab, 1)
    with on_path(lab, "-s", w2, "-d", manager, "-p", "tcp", "--dport", "2377", "-j", "REJECT", "--reject-with",
                 "icmp-admin-prohibited"):
        data = diagnose(lab)
        assert problems(data) == {("port-rejected", "manager", "worker-2", 2377, "tcp", "inbound", "path")}
        f = bad(data)[0]
        assert f["icmp"] == {"from": gateway, "type": 3, "code": 13, "meaning": "administratively prohibited"}
        assert f["rule"].startswith("this machine: filter/DOCKER-USER: -A DOCKER-USER ")
        assert f["rule"].endswith("-j REJECT --reject-with icmp-admin-prohibited")
        assert f"rejected by {gateway} (ICMP type 3 code 13, administratively prohibited)" in data["root_cause"]


@pytest.mark.parametrize("host,src,proto,port,match", [
    ("manager", "worker-1", "tcp", 2377, "-p tcp --dport 2377 --syn"),
    ("worker-2", "manager", "udp", 4789, "-p udp --dport 4789"),
])
def test_half_the_packets_dropped_on_the_receiver_is_lossy(healthy_lab: LabRun, host: str, src: str, proto: str,
                                                            port: int, match: str) -> None:
    lab = healthy_lab  # `labctl up` heals it after the test
    src_ip = _subnet_ip(lab, {"manager": 10, "worker-1": 11, "worker-2": 12}[src])
    with on_host(lab, host, f"INPUT -s {src_ip} {match} {NTH_HALF}"):
        data = diagnose(lab)
        assert problems(data) == {("lossy", host, src, port, proto, "inbound", "receiver")}
        f = bad(data)[0]
        assert (f["severity"], f["loss"]) == ("warning", 0.5)
        assert f["rule"].startswith(f"{host}: filter/INPUT: -A INPUT -s {src_ip}/32 ")
        assert not data["healthy"]
        losses = {(g["src"], g["dst"], g["proto"], g["port"]): g["loss"] for g in data["probe_groups"]}
        assert losses.pop((src, host, proto, port)) == 0.5
        assert set(losses.values()) == {0.0}


def test_half_the_packets_dropped_on_the_path_is_lossy(healthy_lab: LabRun) -> None:
    lab = healthy_lab  # `labctl up` heals it after the test
    w1, w2 = _subnet_ip(lab, 11), _subnet_ip(lab, 12)
    with on_path(lab, "-s", w1, "-d", w2, "-p", "udp", "--dport", "4789", *NTH_HALF.split()):
        data = diagnose(lab)
        assert problems(data) == {("lossy", "worker-2", "worker-1", 4789, "udp", "inbound", "path")}
        f = bad(data)[0]
        assert (f["severity"], f["loss"]) == ("warning", 0.5)
        assert "8 copies left worker-1, 4 of 8 arrived (50%) on worker-2's interface" in f["evidence"]
        assert f["rule"].startswith("this machine: filter/DOCKER-USER: ")
        assert "UDP 4789 loses 50% of its packets in the network between the hosts" in data["root_cause"]


# `labctl diagnose --json`, with every go signal for one host's probe jobs made `delay` s after the
# others' (an SSH command to that host answering late, as on a busy machine); the rest is the real tool.
LATE_GO = """
import sys, time
from diagnostics import runner
late, delay = sys.argv[1], float(sys.argv[2])
touch_all = runner.touch_all
def late_go(jobs, key):
    if key != "go_file" or not any(j.script == "nfttrace.py" for j in jobs):
        return touch_all(jobs, key)
    touch_all([j for j in jobs if j.host.name != late], key)
    time.sleep(delay)  # the fault itself (a late SSH answer), not a wait: there is nothing to wait for
    touch_all([j for j in jobs if j.host.name == late], key)
runner.touch_all = late_go
from labctl.cli import main
sys.argv = ["labctl", *sys.argv[3:]]
main()
"""


def test_a_sender_told_to_go_late_is_still_traced(healthy_lab: LabRun) -> None:
    """worker-1's probes leave 1.5 s after the others' (its go signal came late): the receiver's
    nftables trace still accounts for every copy of them, so both senders are named, 8 of 8."""
    lab = healthy_lab  # `labctl up` heals it after the test
    assert lab.sh("manager", "nft add table inet late && nft add chain inet late in '{ type filter hook input "
                  "priority 0; policy accept; }' && nft add rule inet late in udp dport 4789 drop").returncode == 0
    try:
        proc = subprocess.run([sys.executable, "-c", LATE_GO, "worker-1", "1.5", "--lab", lab.name, "diagnose",
                               "--json"], capture_output=True, text=True, env=lab.env, timeout=120)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        data = json.loads(proc.stdout)
        assert problems(data) == {("port-dropped", "manager", src, 4789, "udp", "inbound", "receiver")
                                  for src in ("worker-1", "worker-2")}, bad(data)
        for f in bad(data):
            assert "the nftables trace shows the rule dropping 8 of 8 copies" in f["evidence"], f
    finally:
        assert lab.sh("manager", "nft delete table inet late").returncode == 0
    after = wait_healthy(lab)
    assert after["healthy"], problems(after)
