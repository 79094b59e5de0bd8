"""The capture's decoder against tshark, on a real capture saved from a lab (a ping over VXLAN)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PCAP = Path(__file__).parent.parent / "data" / "diagnostics" / "vxlan-ping.pcap"
REMOTE = Path(__file__).parent.parent.parent / "diagnostics" / "remote" / "wire.py"


def _decode_with_wire() -> list[dict]:
    """Load the host-side script's decoder (its module body only runs a mode when given a config)."""
    spec = importlib.util.spec_from_file_location("labctl_wire", REMOTE)
    assert spec and spec.loader
    saved = sys.argv
    sys.argv = ["wire.py", '{"mode": "none"}']
    try:
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        sys.argv = saved
    from scapy.utils import rdpcap

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
