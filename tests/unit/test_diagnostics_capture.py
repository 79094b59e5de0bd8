"""The host-side script: its decoder against tshark, on a real capture saved from a lab (a ping over
VXLAN), and when its probes have seen all they will see."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

PCAP = Path(__file__).parent.parent / "data" / "diagnostics" / "vxlan-ping.pcap"
REMOTE = Path(__file__).parent.parent.parent / "diagnostics" / "remote" / "wire.py"


def _wire() -> Any:
    """Load the host-side script (its module body only runs a mode when given a config)."""
    spec = importlib.util.spec_from_file_location("labctl_wire", REMOTE)
    assert spec and spec.loader
    saved = sys.argv
    sys.argv = ["wire.py", '{"mode": "none"}']
    try:
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        sys.argv = saved
    return mod


def _decode_with_wire() -> list[dict]:
    from scapy.utils import rdpcap

    mod = _wire()
    return [mod.decode(p, "192.168.59.12", {4789}) for p in rdpcap(str(PCAP))]


def test_decoder_reads_vni_and_inner_ping() -> None:
    pkts = _decode_with_wire()
    assert len(pkts) == 4
    assert {p["vni"] for p in pkts} == {4097}
    assert [p["inner"]["type"] for p in pkts] == [8, 0, 8, 0]
    assert pkts[0]["src"] == "192.168.59.10" and pkts[0]["dir"] == "in"
    assert pkts[1]["dir"] == "out"


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed (apt-get install tshark)")
def test_decoder_agrees_with_tshark() -> None:
    ours = _decode_with_wire()
    inner = subprocess.run(
        ["tshark", "-r", str(PCAP), "-T", "fields", "-E", "occurrence=l", "-e", "ip.src", "-e", "ip.dst"],
        capture_output=True, text=True, check=True).stdout.split("\n")
    outer = subprocess.run(
        ["tshark", "-r", str(PCAP), "-T", "fields", "-E", "occurrence=f", "-e", "ip.src", "-e", "ip.dst",
         "-e", "vxlan.vni", "-e", "icmp.type"], capture_output=True, text=True, check=True).stdout.split("\n")
    assert len([line for line in outer if line]) == len(ours)
    for ours_p, o_line, i_line in zip(ours, outer, inner, strict=False):
        o_src, o_dst, vni, icmp_type = o_line.split("\t")
        i_src, i_dst = i_line.split("\t")
        assert (ours_p["src"], ours_p["dst"], ours_p["vni"]) == (o_src, o_dst, int(vni))
        assert (ours_p["inner"]["src"], ours_p["inner"]["dst"]) == (i_src, i_dst)
        assert ours_p["inner"]["type"] == int(icmp_type)


ME, PEER = "192.168.59.10", "192.168.59.11"
TCP_OUT = {"id": 0, "dst": PEER, "proto": "tcp", "port": 2377, "sports": [47100, 47101]}
UDP_OUT = {"id": 1, "dst": PEER, "proto": "udp", "port": 4789, "sports": [47102, 47103]}
TCP_IN = {"src": PEER, "proto": "tcp", "sports": [47104, 47105]}
UDP_IN = {"src": PEER, "proto": "udp", "sports": [47106]}


def _seen(*packets: dict) -> Any:
    seen = _wire().Seen()
    for d in packets:
        seen.add(d)
    return seen


def test_the_reply_window_ends_when_every_probe_copy_is_settled() -> None:
    """The host-side probe stops waiting once each copy it sent has left (and a TCP one is
    answered) and each copy a peer sends it has arrived (and a TCP one is answered)."""
    left = [{"dir": "out", "src": ME, "dst": PEER, "proto": "tcp", "sport": s, "dport": 2377} for s in (47100, 47101)]
    synack = {"dir": "in", "src": PEER, "proto": "tcp", "sport": 2377, "dport": 47100, "flags": "SA"}
    assert not _seen(*left).settled(TCP_OUT)  # no answer yet
    assert not _seen(*left, synack).settled(TCP_OUT)  # one copy answered, not the other
    rejected = {"dir": "in", "src": "192.168.59.1", "proto": "icmp", "quoted": {"sport": 47101, "dst": PEER}}
    assert _seen(*left, synack, rejected).settled(TCP_OUT)  # a hop on the path answers for the peer
    udp = [{"dir": "out", "dst": PEER, "proto": "udp", "sport": s, "dport": 4789} for s in (47102, 47103)]
    assert not _seen(udp[0]).settled(UDP_OUT)
    assert _seen(*udp).settled(UDP_OUT)
    assert _seen(udp[0]).settled({**UDP_OUT, "failed": {"47103": "EPERM"}})  # refused: it will never leave
    came = [{"dir": "in", "src": PEER, "dst": ME, "proto": "tcp", "sport": s, "dport": 7946} for s in (47104, 47105)]
    assert not _seen(*came).settled(TCP_IN)  # arrived, not answered (yet, or dropped on the way out)
    answers = [{"dir": "out", "dst": PEER, "proto": "tcp", "sport": 7946, "dport": s, "flags": "RA"}
               for s in (47104, 47105)]
    assert _seen(*came, *answers).settled(TCP_IN)
    assert not _seen().settled(UDP_IN)
    assert _seen({"dir": "in", "src": PEER, "proto": "udp", "sport": 47106, "dport": 7946}).settled(UDP_IN)


def test_a_copy_the_kernel_refuses_is_recorded_with_its_errno_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    """An OUTPUT DROP or REJECT on the sending host makes sendto fail with EPERM: each copy says so,
    the others still go out, and nothing raises."""
    import errno as errno_mod
    import socket as socket_mod

    wire = _wire()
    sent: list[tuple[bytes, tuple]] = []

    class Sock:
        def sendto(self, data: bytes, addr: tuple) -> int:
            if len(sent) % 2:
                sent.append((data, addr))
                raise PermissionError(errno_mod.EPERM, "Operation not permitted")
            sent.append((data, addr))
            return len(data)

        def close(self) -> None:
            pass

    monkeypatch.setattr(socket_mod, "socket", lambda *a: Sock())
    errors = wire.send_probes(ME, [TCP_OUT, UDP_OUT], 0)
    assert len(sent) == 4 and {a for _, a in sent} == {(PEER, 0)}
    assert errors == {"47102": "EPERM", "47103": "EPERM"}  # rounds: 47100, 47102 | 47101, 47103

    def no_raw_sockets(*a: Any) -> Any:
        raise PermissionError(errno_mod.EPERM, "Operation not permitted")

    monkeypatch.setattr(socket_mod, "socket", no_raw_sockets)
    assert wire.send_probes(ME, [UDP_OUT], 0) == {"47102": "EPERM", "47103": "EPERM"}


class _Host:
    def __init__(self, name: str) -> None:
        self.name = name
        self.commands: list[str] = []

    def run(self, command: str, **_: Any) -> None:
        self.commands.append(command)

    def abort(self) -> None:
        pass


def test_hosts_hear_that_every_host_has_sent_only_when_someone_still_waits() -> None:
    """A host whose go signal came late sends late: the others must keep capturing for it. labctl
    tells every host still waiting once all have sent (their reply window starts then); when all
    have already settled, nobody is told anything (no round trip on a healthy lab)."""
    from diagnostics import runner

    def jobs(settled: set[str]) -> tuple[list[runner.WireJob], list[_Host]]:
        hosts = [_Host("manager"), _Host("worker-1")]
        out = []
        for host in hosts:
            job = runner.WireJob(host, {"sent_file": f"/tmp/labctl-diag-sent-{host.name}"},  # type: ignore[arg-type]
                                 timeout=5)
            job.sent.set()
            if host.name in settled:
                job.settled.set()
            out.append(job)
        return out, hosts

    calm, hosts = jobs({"manager", "worker-1"})
    runner.all_sent(calm, "sent_file", 1)
    assert [h.commands for h in hosts] == [[], []] and not any(j.told_sent for j in calm)
    waiting, hosts = jobs({"manager"})
    runner.all_sent(waiting, "sent_file", 1)
    assert [h.commands for h in hosts] == [["touch /tmp/labctl-diag-sent-manager"],
                                           ["touch /tmp/labctl-diag-sent-worker-1"]]
    assert all(j.told_sent for j in waiting)


def test_each_second_a_run_starts_its_source_ports_elsewhere_and_stays_in_range() -> None:
    from diagnostics.collect import first_sport
    from diagnostics.evidence import SPORT_BASE, SPORT_LAST

    starts = [first_sport(208, 8, 1_700_000_000 + t) for t in range(120)]
    assert all(SPORT_BASE <= s and s + 208 - 1 <= SPORT_LAST and (s - SPORT_BASE) % 8 == 0 for s in starts)
    assert len(set(starts[:60])) == 60  # runs within a minute never share a 4-tuple (SYN_RECV lasts 60 s)
    assert first_sport(1000, 8, 5.0) == SPORT_BASE  # no room: the start of the range


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("tcpdump") is None,
                    reason="a packet socket needs root, scapy's filter compiler tcpdump")
def test_what_the_socket_queued_before_its_filter_is_not_delivered(monkeypatch: pytest.MonkeyPatch) -> None:
    """A packet socket takes every packet until its BPF filter is attached: an SSH or gossip packet
    caught then would be decoded as if the filter had let it in."""
    import select
    import socket as socket_mod

    from scapy.layers.inet import UDP

    wire = _wire()
    real_attach = wire.attach_filter
    out = socket_mod.socket(socket_mod.AF_INET, socket_mod.SOCK_DGRAM)

    def attach_late(sock: Any, bpf: str, iface: str) -> None:
        out.sendto(b"not for the capture", ("127.0.0.1", 9))
        assert select.select([sock], [], [], 5)[0]  # queued, unfiltered
        real_attach(sock, bpf, iface)

    monkeypatch.setattr(wire, "attach_filter", attach_late)
    seen: list[Any] = []
    cap = wire.Capture("lo", "udp dst port 4790", seen.append, strict_filter=True).start()
    try:
        out.sendto(b"for the capture", ("127.0.0.1", 4790))
        for _ in range(50):  # the capture thread hands it on within 5 s
            if seen:
                break
            select.select([], [], [], 0.1)
    finally:
        cap.stop()
        out.close()
    assert seen and all(p[UDP].dport == 4790 for p in seen), [p.summary() for p in seen]
