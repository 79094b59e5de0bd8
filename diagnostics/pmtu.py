"""Measure the path MTU between the hosts, every ordered pair, all hosts at once
(diagnostics/remote/pmtu.py on each: it probes its peers and answers theirs)."""

from __future__ import annotations

import threading
from typing import Any

from labctl.spec import LabSpec
from labctl.ssh import Host

from .evidence import DEFAULT_DATA_PORT, SPORT_LAST, PathMtu
from .runner import WireJob, barrier, signal_file

READY_TIMEOUT = 8.0
SETTLE_TIMEOUT = 3.0  # a host's rounds take at most ~1 s; then each answers peers until all are done
FLOOR = 576  # the smallest size every IPv4 path must carry
# Its probes' source ports, after the port probes' range: a path MTU probe must never be counted
# as a copy of a port probe (both go to the data path port over UDP).
SPORT_BASE = SPORT_LAST + 1


def _config(spec: LabSpec, name: str, peers: list[str], port: int, pace: float = 1.0) -> dict[str, Any]:
    """`pace`: how many times slower than docker-provider nodes the hosts are (waits stretch by it)."""
    return {"me": spec.host(name).ip, "port": port, "peers": [spec.host(p).ip for p in peers], "listen": [],
            "sport_base": SPORT_BASE, "floor": FLOOR, "points": 32, "wait": 0.2 * pace, "copies": 2,
            "max_rounds": 5, "recheck_wait": 1.0 * pace, "go_timeout": 15 * pace,
            "go_file": signal_file("pmtu-go"), "stop_file": signal_file("pmtu-stop"), "serve": SETTLE_TIMEOUT * pace}


def measure(spec: LabSpec, hosts: dict[str, Host], focus: str | None = None,
            port: int = DEFAULT_DATA_PORT, after: threading.Event | None = None) -> list[PathMtu]:
    """Each pair's path MTU (those involving `focus`); where a host could not measure, why.
    With `after`, the probes go out once it is set (or READY_TIMEOUT later): the port probes go
    first, since a firewall that rejects the data path port answers each of these probes too, and
    the ICMP errors a host may send in a burst (the kernel's rate limit) must go to the port probes."""
    names = [h.name for h in spec.hosts if h.name in hosts]
    jobs: list[WireJob] = []
    wanted: dict[str, list[str]] = {}
    pace = max((getattr(hosts[name], "pace", 1.0) for name in names), default=1.0)
    for name in names:
        wanted[name] = [p for p in names if p != name and (not focus or focus in (name, p))]
        # every host runs, even one with nothing to send: it answers the probes sent to it
        jobs.append(WireJob(hosts[name], _config(spec, name, wanted[name], port, pace), timeout=20,
                            script="pmtu.py").start())
    with barrier(jobs, "go_file", READY_TIMEOUT, stop_key="stop_file", settle_timeout=SETTLE_TIMEOUT):
        if after is not None:
            after.wait(READY_TIMEOUT * pace)
    found: list[PathMtu] = []
    for job in jobs:
        name = job.host.name
        failed = job.result is None or not job.result.get("go")
        why = (job.error or "the path MTU probes never started (no go signal)") if failed else ""
        paths = [] if failed or job.result is None else job.result.get("paths", [])
        by_ip = {p.get("dst"): p for p in paths if isinstance(p, dict)}
        for peer in wanted[name]:
            r = by_ip.get(spec.host(peer).ip, {})
            found.append(PathMtu(
                src=name, dst=peer, src_ip=spec.host(name).ip, dst_ip=spec.host(peer).ip,
                iface=str(r.get("iface", "")), iface_mtu=_int(r.get("iface_mtu")), size=_int(r.get("size")),
                limit=_int(r.get("limit")), icmp_mtu=_int(r.get("icmp_mtu")), icmp_from=str(r.get("icmp_from", "")),
                cached_before=_int(r.get("cached_before")), flushed=bool(r.get("flushed")),
                error=why or (str(r.get("error", "")) if r else "no result for this peer")))
    return found


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
