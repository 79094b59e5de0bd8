"""diagnose / capture / fault on a real lab: every fault kind is found (code, host, peer, port,
direction, where) and `fault clear` brings the lab back to no findings; faults made by hand
(plain iptables on a host, a rule on the bridge between the nodes) are found the same way."""

from __future__ import annotations

import base64
import fcntl
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from labctl.wait import WaitTimeout, wait_until
from tests.conftest import LabRun, wait_for_line

pytestmark = pytest.mark.e2e

NET = "diag-e2e-net"


def diagnose(lab: LabRun, *args: str) -> dict:
    proc = lab("diagnose", *args, "--json", timeout=120)
    assert proc.returncode in (0, 1), proc.stderr
    data = json.loads(proc.stdout)
    assert (proc.returncode == 0) == data["healthy"]
    return data


def problems(data: dict) -> set[tuple]:
    return {(f["code"], f["host"], f.get("peer"), f.get("port"), f.get("direction"), f.get("where"))
            for f in data["findings"] if f["severity"] in ("error", "warning")}


def wait_healthy(lab: LabRun, timeout: float = 30) -> dict:
    """The lab's diagnosis once it is healthy (gossip converged), or the last one after `timeout` s."""
    seen: dict = {}

    def healthy() -> bool:
        seen["data"] = diagnose(lab)
        return bool(seen["data"]["healthy"])

    try:
        wait_until(healthy, timeout, "the lab diagnosed healthy", interval=1)
    except WaitTimeout:
        pass
    return seen["data"]


def test_ctrl_c_during_diagnose_ends_it_at_once(lab: LabRun) -> None:
    """A hung host (frozen: the TCP handshake works, sshd never answers) does not hold Ctrl-C up."""
    node = f"labctl-{lab.name}-worker-1"
    subprocess.run(["docker", "pause", node], check=True, capture_output=True)
    try:
        proc = subprocess.Popen([*lab_cmd(lab), "diagnose", "--json"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=lab.env)
        wait_until(lambda: lab.lock_blocks(fcntl.LOCK_EX) or proc.poll() is not None, 30,
                   "diagnose reading the lab", interval=0.02)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        interrupted = time.monotonic()
        _, err = proc.communicate(timeout=30)
        assert time.monotonic() - interrupted < 2, err
        assert proc.returncode == 130 and "Traceback" not in err
    finally:
        subprocess.run(["docker", "unpause", node], check=True, capture_output=True)
    assert wait_healthy(lab)["healthy"]


def test_healthy_lab_no_findings_and_fast(lab: LabRun) -> None:
    data = diagnose(lab)
    assert data["healthy"], problems(data)
    assert data["seconds"] < 10


FAULTS = [
    (["worker-2", "block", "--port", "4789/udp"],
     {("port-dropped", "worker-2", "manager", 4789, "inbound", "receiver"),
      ("port-dropped", "worker-2", "worker-1", 4789, "inbound", "receiver")}),
    (["manager", "block", "--port", "2377/tcp", "--action", "REJECT", "--peer", "worker-1"],
     {("port-rejected", "manager", "worker-1", 2377, "inbound", "receiver")}),
    (["worker-1", "block", "--port", "7946/udp", "--direction", "out", "--peer", "worker-2"],
     {("port-dropped", "worker-1", "worker-2", 7946, "outbound", "sender")}),
    (["worker-1", "path-drop", "--peer", "worker-2", "--port", "4789/udp"],
     {("path-drop", "worker-1", "worker-2", 4789, "inbound", "path")}),
    (["worker-2", "mtu", "--mtu", "1400"], {("mtu-too-small", "worker-2", None, None, None, None)}),
    (["worker-2", "docker-stop"], {("docker-down", "worker-2", None, None, None, None)}),
    (["worker-1", "leave"], {("not-in-swarm", "worker-1", None, None, None, None)}),
    (["worker-2", "wrong-advertise"], {("advertise-addr-not-local", "worker-2", None, None, None, None)}),
    (["worker-2", "wrong-advertise", "--addr", "WORKER1_IP"],
     {("advertise-addr-duplicate", "worker-2", "worker-1", None, None, None)}),
]


@pytest.mark.parametrize("args,expected", FAULTS, ids=[" ".join(a[:2]) + (" dup" if "--addr" in a else "")
                                                         for a, _ in FAULTS])
def test_fault_kind_found_and_cleared(lab: LabRun, args: list[str], expected: set[tuple]) -> None:
    args = [_subnet_ip(lab, 11) if a == "WORKER1_IP" else a for a in args]
    lab("fault", "add", *args, check=True, timeout=180)
    try:
        listed = json.loads(lab("fault", "list", "--json", check=True).stdout)
        assert len(listed) == 1
        data = diagnose(lab)
        assert not data["healthy"]
        told = [f"{f['code']} {f['host']}: {f['evidence']}" for f in data["findings"] if f["severity"] != "info"]
        assert problems(data) == expected, told  # exactly: no finding that is false
        assert data["seconds"] < 10
    finally:
        lab("fault", "clear", check=True, timeout=300)
    assert json.loads(lab("fault", "list", "--json", check=True).stdout) == []
    after = wait_healthy(lab)
    assert after["healthy"], problems(after)


def _subnet_ip(lab: LabRun, host_number: int) -> str:
    base = lab.subnet.split("/")[0].rsplit(".", 1)[0]
    return f"{base}.{host_number}"


def test_hand_made_iptables_rule_on_a_host(lab: LabRun) -> None:
    rule = f"INPUT -p tcp --dport 7946 -s {_subnet_ip(lab, 10)} -j DROP"
    assert lab.sh("worker-1", f"iptables -I {rule}").returncode == 0
    try:
        data = diagnose(lab, "worker-1")
        assert ("port-dropped", "worker-1", "manager", 7946, "inbound", "receiver") in problems(data)
        f = next(f for f in data["findings"] if f["code"] == "port-dropped")
        assert f["rule"].startswith("worker-1: filter/INPUT: -A INPUT -s")
    finally:
        lab.sh("worker-1", f"iptables -D {rule}")
    assert wait_healthy(lab)["healthy"]


SHIM = "/usr/local/sbin/iptables"  # ahead of /usr/sbin on sudo's secure_path


def test_fault_clear_says_what_it_could_not_undo(lab: LabRun) -> None:
    """An undo that did not take (here: an iptables that ignores -D) is reported, and the fault stays
    recorded so a later clear can finish the job."""
    lab("fault", "add", "worker-1", "block", "--port", "4789/udp", check=True)
    fault_id = json.loads(lab("fault", "list", "--json", check=True).stdout)[0]["id"]
    shim = base64.b64encode(b'#!/bin/sh\n[ "$1" = -D ] && exit 0\nexec /usr/sbin/iptables "$@"\n').decode()
    assert lab.sh("worker-1", f"echo {shim} | base64 -d > {SHIM} && chmod 755 {SHIM}").returncode == 0
    try:
        proc = lab("fault", "clear")
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert f"fault {fault_id} (DROP UDP 4789 inbound on worker-1) was not undone: its rule is still in " \
               "worker-1's INPUT chain" in proc.stderr
        assert "cleared" not in proc.stdout
        assert [f["id"] for f in json.loads(lab("fault", "list", "--json", check=True).stdout)] == [fault_id]
    finally:
        lab.sh("worker-1", f"rm -f {SHIM}")
    done = lab("fault", "clear", check=True)
    assert f"fault {fault_id} cleared" in done.stdout
    assert "labctl-fault-" not in lab.sh("worker-1", "iptables -S INPUT").stdout
    assert wait_healthy(lab)["healthy"]


def _bridge(lab: LabRun) -> str:
    nid = subprocess.run(["docker", "network", "inspect", "--format", "{{.Id}}", f"labctl-{lab.name}"],
                         capture_output=True, text=True, check=True).stdout.strip()
    return "br-" + nid[:12]


def test_hand_made_rule_on_the_path(lab: LabRun) -> None:
    if shutil.which("iptables") is None:
        pytest.skip("no iptables on this machine")
    br = _bridge(lab)
    rule = ["-i", br, "-o", br, "-s", _subnet_ip(lab, 12), "-d", _subnet_ip(lab, 10), "-p", "tcp",
            "--dport", "2377", "-j", "DROP"]
    subprocess.run(["iptables", "-I", "DOCKER-USER", *rule], check=True)
    try:
        data = diagnose(lab)
        assert ("path-drop", "manager", "worker-2", 2377, "inbound", "path") in problems(data)
        f = next(f for f in data["findings"] if f["code"] == "path-drop")
        assert "DOCKER-USER" in f["rule"] and "this machine" in f["rule"]
        assert "2377" in data["root_cause"]
    finally:
        subprocess.run(["iptables", "-D", "DOCKER-USER", *rule], check=True)
    assert wait_healthy(lab)["healthy"]


# ------------------------------------------------------------------ ping and capture

@pytest.fixture(scope="module")
def containers(lab: LabRun) -> Iterator[tuple[str, str]]:
    image = _small_image()
    lab("images", "load", image, check=True, timeout=300)
    lab.sh("manager", f"docker network create -d overlay --attachable {NET}")
    lab.sh("manager", f"docker run -d --name dpa --network {NET} {image} sleep 3600")
    lab.sh("worker-2", f"docker run -d --name dpb --network {NET} {image} sleep 3600")
    yield "dpa", "dpb"
    lab.sh("manager", "docker rm -f dpa")
    lab.sh("worker-2", "docker rm -f dpb")
    lab.sh("manager", f"docker network rm {NET}")


def _small_image() -> str:
    """labctl/alpine-lite when the lab images were built, else a busybox image made here."""
    if subprocess.run(["docker", "image", "inspect", "labctl/alpine-lite"], capture_output=True).returncode == 0:
        return "labctl/alpine-lite"
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("no labctl/alpine-lite image and no busybox-static to build one")
    name = "labctl-diag/busybox:test"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "bin").mkdir()
        shutil.copy(busybox, root / "bin" / "busybox")
        for applet in ("sh", "ping", "sleep", "nslookup", "ip"):
            (root / "bin" / applet).symlink_to("busybox")
        tar = subprocess.run(["tar", "-C", tmp, "-c", "."], capture_output=True, check=True).stdout
        subprocess.run(["docker", "import", "-", name], input=tar, capture_output=True, check=True)
    return name


def test_diagnose_ping_ok_then_receiver_firewall_then_path(lab: LabRun, containers: tuple[str, str]) -> None:
    a, b = containers
    ok = json.loads(lab("diagnose", "ping", a, b, "--json", check=True, timeout=120).stdout)
    assert ok["verdict"] == "ok" and ok["vni"] >= 4096
    lab("fault", "add", "worker-2", "block", "--port", "4789/udp", check=True)
    try:
        r = lab("diagnose", "ping", a, b, "--json", timeout=120)
        assert r.returncode == 1
        got = json.loads(r.stdout)
        assert (got["verdict"], got["where"]) == ("receiver-firewall", "receiver")
        assert any("4789" in rule for rule in got["receiver_rules"])
    finally:
        lab("fault", "clear", check=True)
    lab("fault", "add", "worker-2", "path-drop", "--peer", "manager", "--port", "4789/udp", check=True)
    try:
        got = json.loads(lab("diagnose", "ping", a, b, "--json", timeout=120).stdout)
        assert (got["verdict"], got["where"]) == ("path", "path")
    finally:
        lab("fault", "clear", check=True)


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_capture_decodes_what_tshark_decodes(lab: LabRun, containers: tuple[str, str], tmp_path: Path) -> None:
    a, b = containers
    pcap = tmp_path / "cap.pcap"
    proc = subprocess.Popen(
        [*lab_cmd(lab), "capture", "worker-2", "--vxlan", "--count", "4", "--seconds", "15", "--json",
         "--write", str(pcap)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=lab.env)
    assert proc.stdout is not None and proc.stderr is not None
    wait_for_line(proc.stderr, "capturing on worker-2", 30)  # stderr is read on in the background
    lab.sh("manager", f"docker exec {a} ping -c 3 -i 0.3 {b}")
    proc.wait(timeout=60)
    out = proc.stdout.read()
    ours = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert len(ours) == 4 and all(p["network"] == NET for p in ours)
    fields = subprocess.run(
        ["tshark", "-r", str(pcap), "-T", "fields", "-E", "occurrence=f", "-e", "ip.src", "-e", "ip.dst",
         "-e", "vxlan.vni"], capture_output=True, text=True, check=True).stdout.splitlines()
    inner = subprocess.run(
        ["tshark", "-r", str(pcap), "-T", "fields", "-E", "occurrence=l", "-e", "ip.src", "-e", "ip.dst"],
        capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(fields) == len(ours)
    for p, o, i in zip(ours, fields, inner, strict=True):
        assert o.split("\t") == [p["src"], p["dst"], str(p["vni"])]
        assert i.split("\t") == [p["inner"]["src"], p["inner"]["dst"]]


def lab_cmd(lab: LabRun) -> list[str]:
    return [sys.executable, "-m", "labctl", "--lab", lab.name]
