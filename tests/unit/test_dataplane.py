"""Whether a host's overlay reaches its peers: the one decision `labctl up` waits on and the
gossip rule of `labctl diagnose` reports, fed with fact outputs recorded on a real lab
(tests/data/dataplane/<case>.json: the host, its peers' addresses, the OverlayNetworks and
VxlanDevices outputs, and the gaps expected)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from diagnostics import collect
from diagnostics.evidence import Evidence, HostFacts
from diagnostics.rules import exit_code, gossip, gossip_gaps
from labctl import facts
from labctl.errors import LabError
from labctl.facts.dataplane import Gap, gaps, unreached
from labctl.lifecycle import converge
from labctl.spec import HostSpec, LabSpec
from labctl.ssh import Result

DATA = Path(__file__).parent.parent / "data" / "dataplane"
CASES = sorted(DATA.glob("*.json"))


def parsed(case: dict[str, Any]) -> tuple[list[facts.Overlay], list[facts.VxlanDevice]]:
    def result(rec: dict[str, Any]) -> Result:
        return Result(rec["rc"], rec["output"], rec["stderr"])
    return (facts.OverlayNetworks().parse(result(case["overlay_networks"])),
            facts.VxlanDevices().parse(result(case["vxlan_devices"])))


def test_the_recorded_cases_are_there() -> None:
    assert {p.stem for p in CASES} == {"converged", "missing-one", "missing-all"}


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_gaps_from_recorded_facts(path: Path) -> None:
    case = json.loads(path.read_text())
    overlays, devices = parsed(case)
    got = gaps(overlays, devices, case["addrs"])
    assert [{"network": g.network, "addr": g.addr, "reasons": list(g.reasons)} for g in got] == case["expected"]


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_the_gossip_rule_decides_the_same(path: Path) -> None:
    """The recorded host in evidence form, its peers as active swarm hosts with ingress: the rule
    finds the gaps the convergence check finds (ingress, every peer)."""
    case = json.loads(path.read_text())
    overlays, devices = parsed(case)
    ingress = next(asdict(o) for o in overlays if o.name == "ingress")
    swarm = {"running": True, "swarm_state": "active"}
    hosts = {case["host"]: HostFacts(case["host"], "", "worker", docker={**swarm, "node_addr": "192.168.60.99"},
                                     overlays=[asdict(o) for o in overlays], vxlan=[asdict(d) for d in devices])}
    for i, addr in enumerate(case["addrs"]):
        hosts[f"peer-{i}"] = HostFacts(f"peer-{i}", addr, "worker", docker={**swarm, "node_addr": addr},
                                       overlays=[ingress])
    ev = Evidence("lab", None, 4789, hosts)
    got = {(g.addr, g.missing) for g in gossip_gaps(ev) if g.host == case["host"]}
    assert got == {(e["addr"], " and ".join(e["reasons"])) for e in case["expected"]}


def test_unreached_names_what_is_missing() -> None:
    assert unreached(["10.0.0.1", "10.0.0.2"], {"10.0.0.2"}, "10.0.0.2") == []
    assert unreached(["10.0.0.1"], set(), "10.0.0.2") == [
        "not among the network's peers (10.0.0.1)", "no VXLAN forwarding entry for it"]
    assert unreached([], None, "10.0.0.2") == ["not among the network's peers (none)"]  # no VXLAN device here


def test_a_host_without_ingress_reaches_no_peer() -> None:
    assert gaps([], [], ["10.0.0.2"]) == [Gap("ingress", "10.0.0.2", ("the host has no ingress network",))]


# ---------------------------------------------------------------- diagnose: converging vs broken

def _missing_all_evidence() -> Evidence:
    case = json.loads((DATA / "missing-all.json").read_text())
    overlays, devices = parsed(case)
    swarm = {"running": True, "swarm_state": "active"}
    ingress = next(asdict(o) for o in overlays if o.name == "ingress")
    hosts = {"manager": HostFacts("manager", "192.168.60.10", "manager", docker={**swarm, "node_addr": "192.168.60.10"},
                                  overlays=[asdict(o) for o in overlays], vxlan=[asdict(d) for d in devices])}
    for name, addr in (("worker-1", "192.168.60.11"), ("worker-2", "192.168.60.12")):
        hosts[name] = HostFacts(name, addr, "worker", docker={**swarm, "node_addr": addr}, overlays=[ingress])
    return Evidence("lab", None, 4789, hosts)


def test_entries_that_appear_on_the_recheck_are_converging_not_broken(monkeypatch: pytest.MonkeyPatch) -> None:
    ev = _missing_all_evidence()
    converged = json.loads((DATA / "converged.json").read_text())
    overlays, devices = parsed(converged)

    class FakeHost:
        name = "manager"

    monkeypatch.setattr(collect.facts, "read_many", lambda h, w, timeout=0: _Readings(
        {facts.OverlayNetworks(): overlays, facts.VxlanDevices(): devices}))
    collect.recheck_overlays(ev, {"manager": FakeHost()}, window=3)  # type: ignore[dict-item]
    findings = gossip(ev)  # the synthetic hosts have no interfaces: the other rules do not apply
    assert {(f.code, f.severity, f.host, f.peer) for f in findings} == {
        ("converging", "info", "manager", "worker-1"), ("converging", "info", "manager", "worker-2")}
    assert exit_code(findings) == 0
    assert ev.recheck_seconds == 0


def test_entries_still_missing_after_the_recheck_are_broken(monkeypatch: pytest.MonkeyPatch) -> None:
    ev = _missing_all_evidence()
    case = json.loads((DATA / "missing-all.json").read_text())
    overlays, devices = parsed(case)

    class FakeHost:
        name = "manager"

    monkeypatch.setattr(collect.facts, "read_many", lambda h, w, timeout=0: _Readings(
        {facts.OverlayNetworks(): overlays, facts.VxlanDevices(): devices}))
    collect.recheck_overlays(ev, {"manager": FakeHost()}, window=1.5)  # type: ignore[dict-item]
    findings = gossip(ev)  # the synthetic hosts have no interfaces: the other rules do not apply
    assert {(f.code, f.severity, f.host, f.peer) for f in findings} == {
        ("gossip-broken", "error", "manager", "worker-1"), ("gossip-broken", "error", "manager", "worker-2")}
    assert all("still missing after 1.5 s" in f.evidence for f in findings)
    assert ev.converging == [] and ev.recheck_seconds == 1.5


def test_evidence_recorded_before_the_recheck_still_loads() -> None:
    data = _missing_all_evidence().to_json()
    del data["converging"], data["recheck_seconds"]
    assert Evidence.from_json(data).converging == []


class _Readings:
    def __init__(self, values: dict[Any, Any]):
        self.values = values

    def get(self, fact: Any, default: Any = None) -> Any:
        return self.values.get(fact, default)


# ---------------------------------------------------------------- up: whom to heal

SPEC = LabSpec(subnet="192.168.60.0/24", hosts=(
    HostSpec("manager", "manager", "192.168.60.10"), HostSpec("worker-1", "worker", "192.168.60.11"),
    HostSpec("worker-2", "worker", "192.168.60.12")))


def _gap(addr: str) -> Gap:
    return Gap("ingress", addr, ("no VXLAN forwarding entry for it",))


def test_the_worker_of_each_pair_is_re_joined() -> None:
    spec = SPEC
    assert converge.to_heal(spec, {"manager": [_gap("192.168.60.11")], "worker-1": [_gap("192.168.60.10")]}) == [
        "worker-1"]
    assert converge.to_heal(spec, {"worker-1": [_gap("192.168.60.12")]}) == ["worker-2"]
    assert converge.to_heal(spec, {}) == []
    text = converge.describe(spec, {"manager": [_gap("192.168.60.11")]})
    assert text == "manager's ingress lacks worker-1 (192.168.60.11 no VXLAN forwarding entry for it)"
    assert converge.pairs(spec, {"manager": [_gap("192.168.60.11")], "worker-1": [_gap("192.168.60.10")]}) == \
        "manager -> worker-1, worker-1 -> manager"


def _fake_lab(monkeypatch: pytest.MonkeyPatch, reads: list[converge.Gaps]) -> list[str]:
    """`converge` against canned reads of the gaps (the last one repeats); the swarm calls it made."""
    calls: list[str] = []

    def gaps_now(spec: LabSpec, hosts: Any) -> converge.Gaps:
        return reads.pop(0) if len(reads) > 1 else reads[0]

    monkeypatch.setattr(converge, "ingress_gaps", gaps_now)
    monkeypatch.setattr(converge.swarm, "leave", lambda host, force=False, check=False: calls.append(f"leave {host}"))
    monkeypatch.setattr(converge.swarm, "join_workers", lambda spec, hosts: calls.append("join"))
    monkeypatch.setattr(converge.swarm, "verify", lambda spec, hosts: calls.append("verify"))
    return calls


def test_converged_lab_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_lab(monkeypatch, [{"manager": [_gap("192.168.60.11")]}, {}])
    outcome = converge.converge(SPEC, {}, lambda _: None, settle=3)
    assert calls == [] and outcome.rejoined == ()
    assert "every host's ingress network reaches every peer" in outcome.summary


def test_a_gap_that_stays_is_healed_by_re_joining_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    hosts = {"worker-1": "worker-1-host"}
    calls = _fake_lab(monkeypatch, [{"manager": [_gap("192.168.60.11")]}] * 2 + [{}])
    outcome = converge.converge(SPEC, hosts, lambda _: None, settle=0.1)  # type: ignore[arg-type]
    assert calls == ["leave worker-1-host", "join", "verify"]
    assert outcome.rejoined == ("worker-1",)
    assert outcome.summary.startswith("healed by re-joining worker-1 (no ingress forwarding: manager -> worker-1)")


def test_a_gap_that_outlives_the_heal_fails_up_naming_host_and_peer(monkeypatch: pytest.MonkeyPatch) -> None:
    hosts = {"worker-1": "worker-1-host"}
    _fake_lab(monkeypatch, [{"manager": [_gap("192.168.60.11")]}])
    with pytest.raises(LabError) as failed:
        converge.converge(SPEC, hosts, lambda _: None, settle=0.1, healed=0.1)  # type: ignore[arg-type]
    assert "even after re-joining worker-1: manager's ingress lacks worker-1 (192.168.60.11" in failed.value.message
    assert failed.value.hint and "labctl diagnose" in failed.value.hint
