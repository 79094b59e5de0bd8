"""Converged versus broken on a real lab: `up` ends only when every host's ingress network
reaches every peer, heals one that does not, and `diagnose` calls missing overlay peers broken
only when they stay missing. The breakage is made by hand, as it happens: a worker leaving the
swarm, a dockerd killed, forwarding entries gone from the ingress network's VXLAN device."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from labctl.wait import wait_until
from tests.conftest import LabRun, _remove_leftovers
from tests.e2e.test_diagnose import diagnose, problems
from tests.e2e.test_up import expected_addr

pytestmark = pytest.mark.e2e

# The ingress network's namespace on a host, and its VXLAN device's forwarding entries.
INGRESS_NS = 'ns=/var/run/docker/netns/1-$(docker network inspect -f "{{.Id}}" ingress | cut -c1-10)'


def fdb_peers(lab: LabRun, host: str) -> set[str]:
    proc = lab.sh(host, INGRESS_NS + '; nsenter --net=$ns bridge fdb show dev vxlan0')
    assert proc.returncode == 0, proc.stderr
    return {w[w.index("dst") + 1] for w in (line.split() for line in proc.stdout.splitlines()) if "dst" in w}


def converged(lab: LabRun) -> bool:
    addrs = {h: expected_addr(lab, i) for i, h in enumerate(("manager", "worker-1", "worker-2"))}
    return all(fdb_peers(lab, h) >= {a for p, a in addrs.items() if p != h} for h in addrs)


@pytest.fixture
def fresh_lab(labrun: LabRun) -> Iterator[LabRun]:
    """A lab of its own, made by the test (not the session's, which other tests have used)."""
    fresh = LabRun("e2e-fresh", "192.168.63.0/24", labrun.env)
    _remove_leftovers(fresh.name)
    try:
        yield fresh
    finally:
        fresh("down", timeout=300)
        _remove_leftovers(fresh.name)


def test_fresh_lab_is_converged_when_up_returns(fresh_lab: LabRun) -> None:
    proc = fresh_lab("up", "--provider", "docker", "--subnet", fresh_lab.subnet, check=True, timeout=900)
    done = time.monotonic()
    assert "every host's ingress network reaches every peer" in proc.stdout
    assert problems(diagnose(fresh_lab)) == set()
    wait_until(lambda: time.monotonic() - done >= 10, 30, "10 s after up")
    assert problems(diagnose(fresh_lab)) == set()


def test_up_converges_after_a_worker_left_and_rejoined(healthy_lab: LabRun) -> None:
    lab = healthy_lab
    assert lab.sh("worker-1", "docker swarm leave --force").returncode == 0
    proc = lab("up", check=True)
    assert "worker-1: joined" in proc.stdout
    assert "reaches every peer" in proc.stdout
    assert converged(lab)
    assert problems(diagnose(lab)) == set()


def test_up_converges_after_a_dockerd_was_killed(healthy_lab: LabRun) -> None:
    lab = healthy_lab
    lab.sh("worker-2", "pkill -9 -x dockerd; while pgrep -x dockerd >/dev/null; do sleep 0.2; done")
    proc = lab("up", check=True)
    assert "worker-2: started dockerd" in proc.stdout
    assert "reaches every peer" in proc.stdout
    assert converged(lab)
    assert problems(diagnose(lab)) == set()


def test_lost_forwarding_entries_are_found_then_healed_by_up(healthy_lab: LabRun) -> None:
    lab = healthy_lab
    wait_until(lambda: converged(lab), 30, "the ingress network converged")
    w1 = expected_addr(lab, 1)
    # The manager's ingress forgets worker-1, as after a re-join: docker does not put it back.
    drop = lab.sh("manager", INGRESS_NS + "; nsenter --net=$ns bridge fdb show dev vxlan0 | grep \"dst " + w1 +
                  " \" | while read mac rest; do nsenter --net=$ns bridge fdb del $mac dev vxlan0 dst " + w1 +
                  "; done")
    assert drop.returncode == 0, drop.stderr
    assert w1 not in fdb_peers(lab, "manager")
    data = diagnose(lab)
    assert problems(data) == {("gossip-broken", "manager", "worker-1", 7946, None, None)}
    finding = next(f for f in data["findings"] if f["code"] == "gossip-broken")
    assert "no VXLAN forwarding entry" in finding["evidence"] and "still missing after" in finding["evidence"]
    proc = lab("up", check=True)
    assert "healed by re-joining worker-1 (no ingress forwarding: manager -> worker-1)" in proc.stdout
    assert converged(lab)
    assert problems(diagnose(lab)) == set()
