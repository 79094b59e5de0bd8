"""Path MTU rules: path-mtu-too-small and mtu-mismatch, fed with evidence recorded on a real lab
(tests/data/diagnostics/pmtu-*.json) and with recorded evidence changed in one place; and the
search of the remote prober (diagnostics/remote/pmtu.py), its sizes and its probe frames."""

from __future__ import annotations

import importlib.util
import json
import socket
import struct
import sys
from pathlib import Path
from types import ModuleType

import pytest

from diagnostics.evidence import Evidence, PathMtu
from diagnostics.rules import analyze, exit_code, root_cause

DATA = Path(__file__).parent.parent / "data" / "diagnostics"
REMOTE = Path(__file__).parents[2] / "diagnostics" / "remote" / "pmtu.py"
NAMES = ("manager", "worker-1", "worker-2")


def load(name: str) -> Evidence:
    return Evidence.from_json(json.loads((DATA / f"{name}.json").read_text()))


def problems(ev: Evidence) -> set[tuple]:
    return {(f.code, f.host, f.peer, f.port, f.direction, f.where)
            for f in analyze(ev) if f.severity in ("error", "warning")}


def measured(ev: Evidence, sizes: dict[tuple[str, str], int], mtu: int = 1500) -> Evidence:
    """`ev` with every pair measured: `sizes` where given, else all the interface says."""
    ev.path_mtu = []
    for src in NAMES:
        for dst in NAMES:
            if src != dst:
                size = sizes.get((src, dst), mtu)
                ev.path_mtu.append(PathMtu(src, dst, ev.hosts[src].ip, ev.hosts[dst].ip, "eth1", mtu, size,
                                           size + 1 if size < mtu else 0))
    return ev


def test_old_evidence_without_path_mtu_still_loads() -> None:
    data = json.loads((DATA / "healthy.json").read_text())
    assert "path_mtu" not in data
    assert Evidence.from_json(data).path_mtu == []


def test_recorded_healthy_lab_every_pair_carries_1500() -> None:
    ev = load("pmtu-healthy")
    assert len(ev.path_mtu) == 6 and {m.size for m in ev.path_mtu} == {1500}
    assert not [m for m in ev.path_mtu if m.limit or m.error or m.flushed]
    assert exit_code(analyze(ev)) == 0


def test_recorded_narrow_path_to_worker_2_is_path_mtu_too_small_once() -> None:
    """This machine's veth of worker-2 at MTU 1400, both hosts' eth1 at 1500."""
    ev = load("pmtu-narrow")
    pairs = {(m.src, m.dst) for m in ev.path_mtu if m.size < 1500}
    assert pairs == {("manager", "worker-2"), ("worker-1", "worker-2"), ("worker-2", "manager"),
                     ("worker-2", "worker-1")}
    assert problems(ev) == {("path-mtu-too-small", dst, src, 4789, "inbound", "path") for src, dst in pairs}
    # worker-2's own link takes 4 bytes more (the VLAN slack of a veth); the overlay must fit the narrowest
    narrowest = min(m.size for m in ev.path_mtu)
    assert narrowest == 1400
    for f in [f for f in analyze(ev) if f.code == "path-mtu-too-small"]:
        assert f"com.docker.network.driver.mtu={narrowest - 50}" in f.fix and "1500" in f.evidence
    text = root_cause(analyze(ev))
    assert text.count("Most likely cause") == 1 and "mtu=1350" in text and "Also found" not in text


def test_recorded_jumbo_interface_is_mtu_mismatch_on_the_sender() -> None:
    """worker-1's eth1 at 9000 on a 1500 network: what leaves it larger than 1500 is lost."""
    ev = load("pmtu-jumbo")
    assert problems(ev) == {("mtu-mismatch", "worker-1", p, None, "outbound", "sender")
                            for p in ("manager", "worker-2")}
    f = next(f for f in analyze(ev) if f.code == "mtu-mismatch")
    assert "9000" in f.evidence and "ip link set eth1 mtu 1500" in f.fix
    assert root_cause(analyze(ev)).count("mtu-mismatch") == 0  # named once, as the cause


def test_receivers_small_interface_is_mtu_too_small_only() -> None:
    """worker-1's eth1 at 1400: its peers' 1500-byte packets to it are lost, one cause, one code."""
    ev = measured(load("mtu"), {("manager", "worker-1"): 1400, ("worker-2", "worker-1"): 1400})
    for m in ev.path_mtu:
        if m.src == "worker-1":
            m.iface_mtu = m.size = 1400
    assert {(c, h) for c, h, *_ in problems(ev)} == {("mtu-too-small", "worker-1")}


def test_path_narrower_but_enough_for_vxlan_is_a_mismatch() -> None:
    ev = load("healthy")
    for h in ev.hosts.values():
        for n in h.overlays:
            n["mtu"] = 1400  # VXLAN needs 1450
    measured(ev, {("manager", "worker-1"): 1480})
    assert problems(ev) == {("mtu-mismatch", "manager", "worker-1", None, "outbound", "path")}


def test_icmp_fragmentation_needed_is_named() -> None:
    ev = measured(load("healthy"), {("worker-1", "manager"): 1400})
    m = next(m for m in ev.path_mtu if (m.src, m.dst) == ("worker-1", "manager"))
    m.icmp_mtu, m.icmp_from = 1400, "10.0.0.1"
    f = next(f for f in analyze(ev) if f.code == "path-mtu-too-small")
    assert "next-hop MTU 1400" in f.evidence and "10.0.0.1" in f.evidence
    assert (f.host, f.peer) == ("manager", "worker-1")


@pytest.mark.parametrize("change", ["unmeasured", "error", "all-carried"])
def test_nothing_said_without_a_measured_limit(change: str) -> None:
    ev = measured(load("healthy"), {("worker-1", "manager"): 1400})
    m = next(m for m in ev.path_mtu if (m.src, m.dst) == ("worker-1", "manager"))
    if change == "unmeasured":
        m.size = m.limit = 0  # nothing came back, not even 576 bytes: a drop, said by the port probes
    elif change == "error":
        m.error = "no MAC address for 192.168.59.10 on eth1"
    else:
        m.limit = 0
    assert problems(ev) == set()


def test_focus_keeps_the_pairs_of_that_host() -> None:
    ev = load("pmtu-narrow")
    ev.focus = "worker-1"
    assert {(f.host, f.peer) for f in analyze(ev) if f.code == "path-mtu-too-small"} == {
        ("worker-2", "worker-1"), ("worker-1", "worker-2")}


# ------------------------------------------------------------------ the remote prober's pieces

@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """diagnostics/remote/pmtu.py as a module, without running its main()."""
    source = REMOTE.read_text().replace("\nmain()\n", "\n")
    path = tmp_path_factory.mktemp("remote") / "pmtu_remote.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("pmtu_remote", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    argv, sys.argv = sys.argv, ["pmtu.py", "{}"]
    try:
        spec.loader.exec_module(module)
    finally:
        sys.argv = argv
    return module


def test_grid_has_the_top_and_narrows_to_every_size(remote: ModuleType) -> None:
    sizes = remote.grid(575, 1501, 32)
    assert len(sizes) == 32 and sizes[0] == 576 and sizes[-1] == 1500 and sizes == sorted(set(sizes))
    assert remote.grid(1394, 1424, 32) == list(range(1395, 1424))
    assert remote.grid(1400, 1401, 32) == []


def test_probe_frame_is_an_ip_packet_of_the_size_with_df(remote: ModuleType) -> None:
    frame = remote.probe_frame(b"\x02" * 6, b"\x04" * 6, "192.168.73.10", "192.168.73.11", 47300, 4789, 1400)
    assert len(frame) == 14 + 1400 and frame[12:14] == b"\x08\x00"
    ip = frame[14:]
    total, flags = struct.unpack("!H", ip[2:4])[0], struct.unpack("!H", ip[6:8])[0]
    assert total == 1400 and flags & 0x4000 and remote.checksum(ip[:20]) == 0
    assert socket.inet_ntoa(ip[16:20]) == "192.168.73.11"
    assert struct.unpack("!HHH", ip[20:26]) == (47300, 4789, 1380)
