"""Gather the evidence of a diagnosis: each host's facts, then every probe at once."""

from __future__ import annotations

import threading
import time
from dataclasses import asdict
from typing import Any

from labctl import facts, validate
from labctl.errors import HostUnreachable, LabError
from labctl.spec import LabSpec
from labctl.ssh import Host, background, fan_out, split_results
from labctl.wait import WaitTimeout, wait_until

from . import firewall, pmtu, rules, trace
from .evidence import (
    DEFAULT_DATA_PORT,
    SPORT_BASE,
    SPORT_LAST,
    Evidence,
    HostFacts,
    Probe,
    copies_for,
    plan_probes,
    read_captures,
)
from .runner import WireJob, barrier, signal_file
from .target import Target

READY_TIMEOUT = 8.0
ROUND_GAP = 0.01  # between two rounds of copies (one copy of every probe group per round)
# Overlay peers missing at first are read again for this long before they are called broken:
# right after `up` or a re-join they appear within seconds.
RECHECK = 5.0


def _facts(peers: list[str]) -> list[facts.Fact[Any]]:
    return [facts.DockerInfo(), facts.DockerdProcess(), facts.Hostname(), facts.Interfaces(), facts.Routes(),
            *(facts.RouteTo(ip) for ip in peers), facts.VxlanSupport(), facts.IpvsSupport(), facts.EspSupport(),
            facts.KernelRelease(), facts.OverlayNetworks(), facts.VxlanDevices(), facts.Services(), facts.NodeList()]


def host_facts(readings: facts.Readings, name: str, ip: str, role: str, peers: list[str]) -> HostFacts:
    """A host's facts in evidence form (plain JSON values), from one round trip's readings."""
    state = readings[facts.DockerInfo()]
    docker: dict[str, Any]
    if state.running:
        swarm = state.swarm
        docker = {"running": True, "error": "", "process": True, "version": state.version,
                  "swarm_state": swarm.state, "swarm_error": swarm.error, "node_id": swarm.node_id,
                  "node_addr": swarm.node_addr, "is_manager": swarm.is_manager,
                  "remote_managers": list(swarm.remote_managers), "data_path_port": swarm.data_path_port,
                  "default_addr_pool": list(swarm.default_addr_pool)}
    else:
        docker = {"running": False, "error": state.error, "process": readings.get(facts.DockerdProcess(), False)}
    vxlan, ipvs, esp = (readings[facts.VxlanSupport()], readings[facts.IpvsSupport()],
                        readings[facts.EspSupport()])
    manager = state.running and state.swarm.is_manager
    return HostFacts(
        name=name, ip=ip, role=role, docker=docker,
        interfaces=[asdict(i) for i in readings[facts.Interfaces()]],
        routes=readings[facts.Routes()],
        routes_to_peers={p: asdict(readings[facts.RouteTo(p)]) for p in peers},
        kernel={"vxlan": vxlan.ok, "vxlan_error": vxlan.error, "ipvs": ipvs.ok, "esp": esp.ok,
                "esp_error": esp.error, "release": readings.get(facts.KernelRelease(), "")},
        overlays=[asdict(o) for o in readings.get(facts.OverlayNetworks(), [])] if state.running else [],
        vxlan=[asdict(d) for d in readings.get(facts.VxlanDevices(), [])] if state.running else [],
        services=[asdict(v) for v in readings.get(facts.Services(), [])] if manager else [],
        nodes=[{"id": n.node_id, "hostname": n.hostname, "role": n.role, "state": n.state, "addr": n.addr}
               for n in readings.get(facts.NodeList(), [])] if manager else [],
    )


def read_host(host: Host, ip: str, role: str, peers: list[str]) -> HostFacts:
    """One host's facts, in one round trip."""
    return host_facts(facts.read_many(host, _facts(peers), timeout=25), host.name, ip, role, peers)


def gather_facts(spec: LabSpec, hosts: dict[str, Host]) -> dict[str, HostFacts]:

    def one(host: Host) -> HostFacts:
        me = spec.host(host.name)
        peers = [h.ip for h in spec.hosts if h.name != host.name]
        return read_host(host, me.ip, me.role, peers)

    read, failed = split_results(fan_out(list(hosts.values()), one))
    found = {}
    for h in spec.hosts:
        if h.name in read:
            found[h.name] = read[h.name]
        elif h.name in failed:
            e = failed[h.name]
            msg = e.message if isinstance(e, LabError) else f"its facts could not be read ({type(e).__name__}: {e})"
            found[h.name] = HostFacts(name=h.name, ip=h.ip, role=h.role, reachable=False, error=msg,
                                      answered=not isinstance(e, HostUnreachable))
    return found


def data_port(found: dict[str, HostFacts]) -> int:
    """The swarm's data path port: as a manager reports it, else as a VXLAN device uses it."""
    for f in found.values():
        if f.docker.get("is_manager") and f.docker.get("data_path_port"):
            return validate.port(f.docker["data_path_port"], reported_by=f.name)
    for f in found.values():
        for device in f.vxlan:
            if device.get("port"):
                return validate.port(device["port"], reported_by=f.name)
    return DEFAULT_DATA_PORT


def _probe(target: Target, ev: Evidence, plan: list[Probe], port: int, wait: float,
           sent: threading.Event | None = None) -> None:
    """Run a probe plan: every involved host captures, then all send at once; fill the probes in.
    `sent` is set once every host has sent its probes (or could not)."""
    spec, hosts = target.spec, target.hosts
    involved = sorted({p.src for p in plan} | {p.dst for p in plan})
    rounds = max((p.copies for p in plan), default=1)
    # Slow hosts (VMs under qemu's software emulation) answer later and open their captures later.
    pace = max((getattr(hosts[name], "pace", 1.0) for name in involved), default=1.0)
    wait *= pace
    jobs: list[WireJob] = []
    for name in involved:
        mine = [p for p in plan if p.src == name]
        config: dict[str, Any] = {
            "mode": "probe", "me": spec.host(name).ip, "iface": "", "data_ports": [port],
            "peers": [h.ip for h in spec.hosts if h.name != name], "sports": [SPORT_BASE, SPORT_LAST],
            "send": [{"id": p.id, "dst": p.dst_ip, "proto": p.proto, "port": p.port, "sports": list(p.sports),
                      "vxlan": p.port == port and p.proto == "udp"} for p in mine],
            "expect": [{"src": p.src_ip, "proto": p.proto, "sports": list(p.sports)} for p in plan if p.dst == name],
            "go_file": signal_file("go"), "stop_file": signal_file("stop"), "sent_file": signal_file("sent"),
            "wait": wait, "round_gap": ROUND_GAP, "sent_timeout": 3.0 * pace, "go_timeout": 15.0 * pace,
            "pace": pace,
        }
        jobs.append(WireJob(hosts[name], config, timeout=30).start())
    if sent is not None:
        background(lambda: _all_sent(jobs, sent))
    sending = wait + rounds * ROUND_GAP
    tracers = [WireJob(hosts[name], trace.tracer_config(
        [s for p in plan if name in (p.src, p.dst) for s in p.sports],
        {"go_file": signal_file("go"), "stop_file": signal_file("stop"), "sent_file": signal_file("sent")},
        READY_TIMEOUT * pace + sending + 5, wait + 0.3, listen=2.0 * pace), timeout=30,
        script="nfttrace.py").start()
        for name in involved]
    local_before = firewall.local_counters() if target.path_here else {}
    with barrier(jobs + tracers, "go_file", READY_TIMEOUT, stop_key="stop_file", sent_key="sent_file",
                 settle_timeout=sending + 1.0):
        pass  # the probes go out once every capture is open
    local_after = firewall.local_counters() if local_before else {}
    packets, send_errors = {}, {}
    for job in jobs:
        if job.result is None or not job.result.get("go"):
            ev.probe_errors[job.host.name] = job.signal_error or job.error or "the probe never started (no go signal)"
            continue
        if job.result.get("capture_error"):  # its capture ended early: what it saw is not the whole story
            ev.probe_errors[job.host.name] = f"the capture stopped early: {job.result['capture_error']}"
            continue
        packets[job.host.name] = job.result["packets"]
        errors = job.result.get("send_errors")
        send_errors[job.host.name] = {str(k): str(v) for k, v in errors.items()} if isinstance(errors, dict) else {}
        missed = sum(n for n in (job.result.get("capture_drops"), job.result.get("undecoded")) if isinstance(n, int))
        if missed > 0:  # packets its capture could not keep or read: no loss is told from its side
            ev.capture_drops[job.host.name] = ev.capture_drops.get(job.host.name, 0) + missed
        ev.rule_hits += firewall.hits_from_saves(job.host.name, job.result)
    read_captures(plan, packets, send_errors)
    for tracer in tracers:
        name, result = tracer.host.name, tracer.result or {}
        if result.get("ok"):
            ev.traced[name] = ""
            ev.verdicts += trace.verdicts(name, spec.host(name).ip, plan, result)
        elif ev.traced.get(name) != "":
            ev.traced[name] = str(result.get("error") or tracer.signal_error or tracer.error
                                  or "the trace never reported")
    if local_before:
        ev.path_rule_hits += firewall.delta("this machine", local_before, local_after)


def _all_sent(jobs: list[WireJob], sent: threading.Event) -> None:
    try:
        for job in jobs:
            job.sent.wait(40)  # each job's event is set at its end too: this never waits past its timeout
    finally:
        sent.set()


def first_sport(needed: int, step: int, now: float) -> int:
    """Where this run's source ports start: another place each second, round the range. A TCP probe
    that reused a 4-tuple of a run seconds before would meet the receiver's conntrack entry of that
    run, and a stateful firewall (ufw's `--ctstate INVALID -j DROP`) could drop it for that alone."""
    places = (SPORT_LAST + 1 - SPORT_BASE - needed) // step + 1
    return SPORT_BASE + step * (int(now) % places) if places > 1 else SPORT_BASE


def gather_evidence(target: Target, focus: str | None = None, wait: float = 0.3) -> Evidence:
    """Facts and probes run at the same time; the probes assume UDP 4789 for VXLAN and are
    repeated for the swarm's data path port when the facts say it differs. `wait`: how long the
    hosts keep capturing, once every host has sent, for what has not come yet (answers between
    hosts of one network take milliseconds)."""
    start = time.monotonic()
    spec, hosts = target.spec, target.hosts
    stubs = {h.name: HostFacts(name=h.name, ip=h.ip, role=h.role) for h in spec.hosts}
    ev = Evidence(lab=spec.name, focus=focus, data_port=DEFAULT_DATA_PORT, hosts=stubs)
    groups = plan_probes(stubs, focus, DEFAULT_DATA_PORT, copies=1)
    # room for a second data path group per pair, should the swarm use another port than 4789
    slots = len(groups) + len({(p.src, p.dst) for p in groups})
    copies = copies_for(slots)
    plan = plan_probes(stubs, focus, DEFAULT_DATA_PORT, copies=copies,
                       first_sport=first_sport(slots * copies, copies, time.time()))
    first = plan[-1].sports[-1] + 1 if plan else SPORT_BASE
    facts_future = background(lambda: gather_facts(spec, hosts))
    probes_sent = threading.Event()
    pmtu_future = background(lambda: pmtu.measure(spec, hosts, focus, after=probes_sent))
    try:
        _probe(target, ev, plan, DEFAULT_DATA_PORT, wait, sent=probes_sent)
    finally:
        probes_sent.set()
    facts = facts_future.result()
    ev.hosts = facts
    recheck_overlays(ev, hosts)
    port = data_port(facts)
    if port != DEFAULT_DATA_PORT:
        ev.data_port = port
        plan = [p for p in plan if not (p.proto == "udp" and p.port == DEFAULT_DATA_PORT)]
        extra = [p for p in plan_probes(stubs, focus, port, copies=copies) if p.proto == "udp" and p.port == port]
        for i, p in enumerate(extra):  # source ports after the first plan's: never mistaken for its copies
            p.id, p.sport = 1000 + i, first + i * copies
        _probe(target, ev, extra, port, wait)
        plan += extra
    # probes of unreachable hosts say nothing more than host-unreachable does
    ev.probes = [p for p in plan if facts[p.src].reachable and facts[p.dst].reachable]
    ev.path_mtu = [m for m in pmtu_future.result() if facts[m.src].reachable and facts[m.dst].reachable]
    for name, f in facts.items():
        if not f.reachable:
            ev.probe_errors.pop(name, None)
    ev.seconds = round(time.monotonic() - start, 2)
    return ev


def recheck_overlays(ev: Evidence, hosts: dict[str, Host], window: float = RECHECK) -> None:
    """Read the overlay facts of hosts with missing peers again, once a second for `window` s;
    peers that appear go to `ev.converging`, the facts read last replace the first ones."""
    pending = {(g.host, g.peer, g.network): g for g in rules.gossip_gaps(ev)
               if not ev.focus or ev.focus in (g.host, g.peer)}
    if not pending:
        return
    start = time.monotonic()
    wanted: list[facts.Fact[Any]] = [facts.OverlayNetworks(), facts.VxlanDevices()]

    def converged() -> bool:
        names = sorted({g.host for g in pending.values()})
        read, _ = split_results(fan_out([hosts[n] for n in names], lambda h: facts.read_many(h, wanted, timeout=15)))
        for name, readings in read.items():
            ev.hosts[name].overlays = [asdict(o) for o in readings.get(facts.OverlayNetworks(), [])]
            ev.hosts[name].vxlan = [asdict(d) for d in readings.get(facts.VxlanDevices(), [])]
        now = {(g.host, g.peer, g.network) for g in rules.gossip_gaps(ev)}
        for key in [k for k in pending if k not in now]:
            g = pending.pop(key)
            ev.converging.append({"host": g.host, "peer": g.peer, "addr": g.addr, "network": g.network,
                                  "missing": g.missing, "seconds": round(time.monotonic() - start, 1)})
        return not pending

    try:
        wait_until(converged, window, "the overlays' missing peers appeared", interval=1.0)
    except WaitTimeout:
        ev.recheck_seconds = window
