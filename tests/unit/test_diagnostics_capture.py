"""The host-side script: its decoder against tshark, on a real capture saved from a lab (a ping over
VXLAN), and when its probes have seen all they will see."""

from __future__ import annotations

import importlib.util
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
TCP_OUT = {"id": 0, "dst": PEER, "proto": "tcp", "port": 2377, "sport": 47100}
UDP_OUT = {"id": 1, "dst": PEER, "proto": "udp", "port": 4789, "sport": 47101}
TCP_IN = {"src": PEER, "proto": "tcp", "sport": 47102}
UDP_IN = {"src": PEER, "proto": "udp", "sport": 47103}


def test_the_reply_window_ends_when_every_probe_is_settled() -> None:
    """The host-side probe stops waiting once each probe it sent has left (and a TCP one is
    answered) and each probe a peer sends it has arrived (and a TCP one is answered)."""
    settled = _wire().settled
    left = {"dir": "out", "src": ME, "dst": PEER, "proto": "tcp", "sport": 47100, "dport": 2377}
    assert not settled(TCP_OUT, [left])  # no answer yet
    assert settled(TCP_OUT, [left, {"dir": "in", "src": PEER, "proto": "tcp", "sport": 2377, "dport": 47100,
                                    "flags": "SA"}])
    rejected = {"dir": "in", "src": PEER, "proto": "icmp", "quoted": {"sport": 47100, "dst": PEER}}
    assert settled(TCP_OUT, [left, rejected])
    assert not settled(UDP_OUT, [])
    assert settled(UDP_OUT, [{"dir": "out", "dst": PEER, "proto": "udp", "sport": 47101, "dport": 4789}])
    came = {"dir": "in", "src": PEER, "dst": ME, "proto": "tcp", "sport": 47102, "dport": 7946}
    assert not settled(TCP_IN, [came])  # arrived, not answered (yet, or dropped on the way out)
    assert settled(TCP_IN, [came, {"dir": "out", "dst": PEER, "proto": "tcp", "sport": 7946, "dport": 47102,
                                   "flags": "RA"}])
    assert not settled(UDP_IN, [])
    assert settled(UDP_IN, [{"dir": "in", "src": PEER, "proto": "udp", "sport": 47103, "dport": 7946}])
