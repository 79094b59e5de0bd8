"""diagnose measures the path MTU: faults made by hand with `ip link` (a narrow link on this
machine's bridge, a jumbo interface on a 1500 network) are found with the exact set of findings,
and once the MTUs are back, diagnose is clean."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.conftest import LabRun
from tests.e2e.test_diagnose import diagnose, problems, wait_healthy

pytestmark = pytest.mark.e2e


def _node_veth(lab: LabRun, host: str) -> str:
    """This machine's end of the veth pair that is `host`'s eth1 (on the lab's bridge)."""
    iflink = subprocess.run(["docker", "exec", f"labctl-{lab.name}-{host}", "cat", "/sys/class/net/eth1/iflink"],
                            capture_output=True, text=True, check=True).stdout.strip()
    for dev in Path("/sys/class/net").iterdir():
        if (dev / "ifindex").read_text().strip() == iflink:
            return dev.name
    raise AssertionError(f"no interface here with ifindex {iflink} ({host}'s eth1 peer)")


def _mtu(dev: str) -> int:
    return int(Path(f"/sys/class/net/{dev}/mtu").read_text())


def test_narrow_path_is_path_mtu_too_small(healthy_lab: LabRun) -> None:
    """worker-2's link to the bridge carries 1400 bytes; both hosts' interfaces still say 1500."""
    veth = _node_veth(healthy_lab, "worker-2")
    old = _mtu(veth)
    subprocess.run(["ip", "link", "set", veth, "mtu", "1400"], check=True)
    try:
        data = diagnose(healthy_lab)
    finally:
        subprocess.run(["ip", "link", "set", veth, "mtu", str(old)], check=True)
    assert _mtu(veth) == old
    pairs = [("manager", "worker-2"), ("worker-1", "worker-2"), ("worker-2", "manager"), ("worker-2", "worker-1")]
    assert problems(data) == {("path-mtu-too-small", dst, src, 4789, "inbound", "path") for src, dst in pairs}
    found = [f for f in data["findings"] if f["code"] == "path-mtu-too-small"]
    assert all("com.docker.network.driver.mtu=" in f["fix"] for f in found)
    assert all("carried" in f["evidence"] and "lost" in f["evidence"] for f in found)
    assert data["root_cause"].count("Most likely cause") == 1 and "Also found" not in data["root_cause"]
    after = wait_healthy(healthy_lab)
    assert after["healthy"], problems(after)
    for host in ("manager", "worker-1", "worker-2"):  # the probes left no PMTU in the kernels' caches
        out = healthy_lab.sh(host, "ip route show cache").stdout
        assert " mtu " not in out, (host, out)


def test_jumbo_interface_on_a_1500_network_is_mtu_mismatch(healthy_lab: LabRun) -> None:
    assert healthy_lab.sh("worker-1", "ip link set eth1 mtu 9000").returncode == 0
    try:
        data = diagnose(healthy_lab)
        assert problems(data) == {("mtu-mismatch", "worker-1", peer, None, "outbound", "sender")
                                  for peer in ("manager", "worker-2")}
        assert all("9000" in f["evidence"] for f in data["findings"] if f["code"] == "mtu-mismatch")
    finally:
        assert healthy_lab.sh("worker-1", "ip link set eth1 mtu 1500").returncode == 0
    after = wait_healthy(healthy_lab)
    assert after["healthy"], problems(after)


def test_small_interface_is_mtu_too_small_only(healthy_lab: LabRun) -> None:
    """worker-2's eth1 at 1400: its peers' packets to it are lost too, but that is one cause, said once."""
    assert healthy_lab.sh("worker-2", "ip link set eth1 mtu 1400").returncode == 0
    try:
        data = diagnose(healthy_lab)
        assert problems(data) == {("mtu-too-small", "worker-2", None, None, None, None)}
        # what worker-2's peers send it is cut to its 1400 (a veth lets 4 bytes more in: the VLAN slack)
        sizes = {m["src"]: m["size"] for m in _evidence(healthy_lab)["path_mtu"] if m["dst"] == "worker-2"}
        assert set(sizes) == {"manager", "worker-1"} and all(1400 <= s <= 1404 for s in sizes.values()), sizes
    finally:
        assert healthy_lab.sh("worker-2", "ip link set eth1 mtu 1500").returncode == 0
    after = wait_healthy(healthy_lab)
    assert after["healthy"], problems(after)


def _evidence(lab: LabRun) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "evidence.json"
        proc = lab("diagnose", "--save-evidence", str(out), timeout=120)
        assert proc.returncode in (0, 1), proc.stderr
        return dict(json.loads(out.read_text()))
