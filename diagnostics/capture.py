"""`labctl capture HOST`: a live decoded view of a host's underlay, and a pcap."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from labctl.errors import LabError

from .collect import READY_TIMEOUT, data_port, gather_facts
from .runner import WireJob
from .target import Target


@dataclass
class CaptureResult:
    count: int
    pcap: bytes
    vni_names: dict[int, str]


def run(target: Target, host: str, *, vxlan: bool, count: int, seconds: float, bpf: str | None,
        on_packet: Callable[[dict[str, Any]], None],
        on_ready: Callable[[str], None] | None = None) -> CaptureResult:
    """Capture on the host's underlay; `on_ready` is told once the capture is open."""
    hosts = target.hosts
    facts = gather_facts(target.spec, {host: hosts[host]})[host]
    if not facts.reachable:
        raise LabError(facts.error, hint="`labctl status`")
    port = data_port({host: facts})
    names = {v: o["name"] for o in facts.overlays for v in o.get("vnis", [])}
    if vxlan:
        flt = f"udp port {port}" + (f" and ({bpf})" if bpf else "")
    else:
        flt = bpf or "not port 22"

    def show(d: dict[str, Any]) -> None:
        if "vni" in d:
            d["network"] = names.get(d["vni"], "?")
        on_packet(d)

    cfg = {"mode": "capture", "me": facts.ip, "iface": facts.underlay() or "eth1", "data_ports": [port],
           "filter": flt, "count": count, "seconds": seconds, "stream": True, "stop_file": ""}
    job = WireJob(hosts[host], cfg, timeout=seconds + 30, on_packet=show).start()
    if job.ready.wait(READY_TIMEOUT) and not job.error and on_ready is not None:
        on_ready(f"capturing on {host} {cfg['iface']} ({flt}) for {seconds:g} s")
    job.join()
    if job.result is None:
        raise LabError(f"{host}: the capture failed: {job.error}",
                       hint="a BPF filter error names the bad word; tcpdump and python3-scapy must be installed")
    return CaptureResult(int(job.result["count"]), base64.b64decode(job.result["pcap"]), names)


def line(d: dict[str, Any]) -> str:
    """One packet, as a person reads it."""
    if "src" not in d:
        return f"{d.get('proto', '?')} ({d.get('len')} bytes)"
    outer = f"{d['src']} > {d['dst']}"
    if "vni" in d:
        inner = d.get("inner") or {}
        what = _proto(inner)
        return (f"{outer} VXLAN vni {d['vni']} ({d.get('network', '?')}) | "
                f"{inner.get('src', inner.get('smac', '?'))} > {inner.get('dst', inner.get('dmac', '?'))} {what}")
    return f"{outer} {_proto(d)}"


def _proto(d: dict[str, Any]) -> str:
    p = d.get("proto", "?")
    if p == "icmp":
        kind = {0: "echo-reply", 8: "echo-request", 3: "unreachable", 11: "time-exceeded"}.get(d.get("type", -1), "")
        extra = f" id {d['id']} seq {d['seq']}" if "seq" in d else ""
        return f"ICMP {kind or 'type ' + str(d.get('type'))} code {d.get('code')}{extra}"
    if p == "tcp":
        return f"TCP {d.get('sport')} > {d.get('dport')} [{d.get('flags')}]"
    if p == "udp":
        return f"UDP {d.get('sport')} > {d.get('dport')}"
    return str(p).upper()
