"""Gather the evidence of a diagnosis: each host's facts, then every probe at once."""

from __future__ import annotations

import time
from typing import Any

from labctl import validate
from labctl.errors import LabError
from labctl.lab import Lab
from labctl.ssh import Host, background, fan_out, split_results

from . import firewall
from .evidence import DEFAULT_DATA_PORT, SPORT_BASE, Evidence, HostFacts, Probe, plan_probes, read_captures
from .runner import WireJob, barrier, run_json, signal_file

READY_TIMEOUT = 8.0
GAP = 0.15  # between the two copies of each probe


def gather_facts(lab: Lab, hosts: dict[str, Host]) -> dict[str, HostFacts]:
    spec = lab.spec

    def one(host: Host) -> HostFacts:
        me = spec.host(host.name)
        peers = [h.ip for h in spec.hosts if h.name != host.name]
        data = run_json(host, "facts.py", {"peers": peers}, timeout=25)
        return HostFacts.from_json({**data, "name": host.name, "ip": me.ip, "role": me.role})

    read, failed = split_results(fan_out(list(hosts.values()), one))
    facts = {}
    for h in spec.hosts:
        if h.name in read:
            facts[h.name] = read[h.name]
        elif h.name in failed:
            e = failed[h.name]
            msg = e.message if isinstance(e, LabError) else f"its facts could not be read ({type(e).__name__}: {e})"
            facts[h.name] = HostFacts(name=h.name, ip=h.ip, role=h.role, reachable=False, error=msg)
    return facts


def data_port(facts: dict[str, HostFacts]) -> int:
    for f in facts.values():
        if f.docker.get("is_manager") and f.docker.get("data_path_port"):
            return validate.port(f.docker["data_path_port"], reported_by=f.name)
    return DEFAULT_DATA_PORT


def _probe(lab: Lab, hosts: dict[str, Host], ev: Evidence, plan: list[Probe], port: int, wait: float) -> None:
    """Run a probe plan: every involved host captures, then all send at once; fill the probes in."""
    involved = sorted({p.src for p in plan} | {p.dst for p in plan})
    jobs: list[WireJob] = []
    for name in involved:
        mine = [p for p in plan if p.src == name]
        config: dict[str, Any] = {
            "mode": "probe", "me": lab.spec.host(name).ip, "iface": "", "data_ports": [port],
            "peers": [h.ip for h in lab.spec.hosts if h.name != name],
            "send": [{"id": p.id, "dst": p.dst_ip, "proto": p.proto, "port": p.port, "sport": p.sport,
                      "vxlan": p.port == port and p.proto == "udp"} for p in mine],
            "expect": [{"src": p.src_ip, "proto": p.proto, "sport": p.sport} for p in plan if p.dst == name],
            "go_file": signal_file("go"), "stop_file": signal_file("stop"), "wait": wait, "attempts": 2,
            "gap": GAP,
        }
        jobs.append(WireJob(hosts[name], config, timeout=30).start())
    local_before = firewall.local_counters() if lab.spec.provider == "docker" else {}
    with barrier(jobs, "go_file", READY_TIMEOUT, stop_key="stop_file", settle_timeout=wait + GAP + 1.0):
        pass  # the probes go out once every capture is open
    local_after = firewall.local_counters() if local_before else {}
    packets, send_errors = {}, {}
    for job in jobs:
        if job.result is None or not job.result.get("go"):
            ev.probe_errors[job.host.name] = job.error or "the probe never started (no go signal)"
            continue
        packets[job.host.name] = job.result["packets"]
        errors = job.result.get("send_errors")
        send_errors[job.host.name] = {str(k): str(v) for k, v in errors.items()} if isinstance(errors, dict) else {}
        ev.rule_hits += firewall.hits_from_saves(job.host.name, job.result)
    read_captures(plan, packets, send_errors)
    if local_before:
        ev.path_rule_hits += firewall.delta("this machine", local_before, local_after)


def diagnose(lab: Lab, focus: str | None = None, wait: float = 0.5) -> Evidence:
    """Facts and probes run at the same time; the probes assume UDP 4789 for VXLAN and are
    repeated for the swarm's data path port when the facts say it differs."""
    start = time.monotonic()
    hosts = lab.hosts()
    stubs = {h.name: HostFacts(name=h.name, ip=h.ip, role=h.role) for h in lab.spec.hosts}
    ev = Evidence(lab=lab.spec.name, focus=focus, data_port=DEFAULT_DATA_PORT, hosts=stubs)
    plan = plan_probes(stubs, focus, DEFAULT_DATA_PORT)
    facts_future = background(lambda: gather_facts(lab, hosts))
    _probe(lab, hosts, ev, plan, DEFAULT_DATA_PORT, wait)
    facts = facts_future.result()
    ev.hosts = facts
    port = data_port(facts)
    if port != DEFAULT_DATA_PORT:
        ev.data_port = port
        plan = [p for p in plan if not (p.proto == "udp" and p.port == DEFAULT_DATA_PORT)]
        extra = [p for p in plan_probes(stubs, focus, port) if p.proto == "udp" and p.port == port]
        for i, p in enumerate(extra):
            p.id, p.sport = 1000 + i, SPORT_BASE + 150 + i
        _probe(lab, hosts, ev, extra, port, wait)
        plan += extra
    # probes of unreachable hosts say nothing more than host-unreachable does
    ev.probes = [p for p in plan if facts[p.src].reachable and facts[p.dst].reachable]
    for name, f in facts.items():
        if not f.reachable:
            ev.probe_errors.pop(name, None)
    ev.seconds = round(time.monotonic() - start, 2)
    return ev
