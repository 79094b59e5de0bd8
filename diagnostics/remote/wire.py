"""Runs ON a lab host (as root, `python3 - CONFIG_JSON`): scapy probes and captures.

Protocol on stdout: `READY` once the capture socket is open, `PKT {json}` per
decoded packet when streaming, and one final `RESULT {json}`.

mode "probe":   capture (before the firewall), wait for the go file, send the
                probes through the kernel (so the host's OUTPUT chain applies),
                wait until every probe has left, every TCP probe is answered and
                every probe expected from a peer has arrived (and been answered,
                for TCP), say `SETTLED`, keep capturing until the stop file
                (labctl makes it once every host has settled) or the deadline,
                and report what left, what arrived and which firewall rules
                counted packets meanwhile.
mode "capture": decode packets (VXLAN aware) until count / seconds / stop file;
                the pcap comes back base64-encoded, no file is left on the host.
"""

import base64
import io
import json
import os
import subprocess
import sys
import time

from scapy.config import conf
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, TCPerror, UDPerror
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw, bind_layers
from scapy.sendrecv import AsyncSniffer, send
from scapy.supersocket import L3RawSocket
from scapy.utils import PcapWriter

CFG = json.loads(sys.argv[1])
SPORTS = "47100-47299"  # source ports of labctl probes


def say(text):
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def iptables_saves():
    """`iptables-save -c` of every backend (nft and legacy): parsed on labctl's side."""
    saves = {}
    for tool in ("iptables-save", "iptables-legacy-save"):
        try:
            saves[tool] = subprocess.run([tool, "-c"], capture_output=True, text=True, timeout=5).stdout
        except (OSError, subprocess.TimeoutExpired):
            continue
    return saves


def decode(pkt, me, data_ports):
    """One packet as a dict: outer addresses, and the inner frame when it is VXLAN."""
    d = {"t": round(float(pkt.time), 6), "len": len(pkt)}
    ip = pkt.getlayer(IP)
    if ip is None:
        d["proto"] = pkt.lastlayer().name
        return d
    d.update(src=ip.src, dst=ip.dst, ttl=ip.ttl, dir="out" if ip.src == me else "in")
    if ip.haslayer(TCP):
        tcp = ip[TCP]
        d.update(proto="tcp", sport=tcp.sport, dport=tcp.dport, flags=str(tcp.flags))
    elif ip.haslayer(UDP):
        udp = ip[UDP]
        d.update(proto="udp", sport=udp.sport, dport=udp.dport)
        if udp.haslayer(VXLAN) or udp.dport in data_ports:
            vx = udp.getlayer(VXLAN)
            if vx is None:
                vx = VXLAN(bytes(udp.payload))
            d["vni"] = int(vx.vni)
            inner = vx.payload
            if isinstance(inner, Ether) or inner.haslayer(Ether):
                eth = inner.getlayer(Ether)
                d["inner"] = inner_desc(eth)
    elif ip.haslayer(ICMP):
        icmp = ip[ICMP]
        d.update(proto="icmp", type=int(icmp.type), code=int(icmp.code))
        err = icmp.getlayer(IPerror)
        if err is not None:
            q = {"src": err.src, "dst": err.dst, "proto": {6: "tcp", 17: "udp"}.get(err.proto, str(err.proto))}
            if err.haslayer(TCPerror):
                q.update(sport=err[TCPerror].sport, dport=err[TCPerror].dport)
            elif err.haslayer(UDPerror):
                q.update(sport=err[UDPerror].sport, dport=err[UDPerror].dport)
            d["quoted"] = q
    else:
        d["proto"] = str(ip.proto)
    return d


def inner_desc(eth):
    out = {"smac": eth.src, "dmac": eth.dst}
    ip = eth.getlayer(IP)
    if ip is None:
        out["proto"] = eth.payload.name if eth.payload else "ether"
        return out
    out.update(src=ip.src, dst=ip.dst)
    if ip.haslayer(ICMP):
        icmp = ip[ICMP]
        out.update(proto="icmp", type=int(icmp.type), code=int(icmp.code))
        if icmp.type in (0, 8):
            out.update(id=int(icmp.id), seq=int(icmp.seq))
    elif ip.haslayer(TCP):
        out.update(proto="tcp", sport=ip[TCP].sport, dport=ip[TCP].dport, flags=str(ip[TCP].flags))
    elif ip.haslayer(UDP):
        out.update(proto="udp", sport=ip[UDP].sport, dport=ip[UDP].dport)
    else:
        out["proto"] = str(ip.proto)
    return out


def wait_for(path, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if os.path.exists(path):
            return True
        time.sleep(0.005)
    return False


def probe_packet(me, p):
    if p["proto"] == "tcp":
        return IP(src=me, dst=p["dst"]) / TCP(sport=p["sport"], dport=p["port"], flags="S", seq=0x4C414200 + p["id"])
    if p.get("vxlan"):
        # A VXLAN frame with a VNI no docker network uses: the peer's kernel drops it silently.
        return (IP(src=me, dst=p["dst"]) / UDP(sport=p["sport"], dport=p["port"]) /
                VXLAN(vni=0xFFFFF0, flags=0x08) / Ether(src="02:4c:41:42:00:01", dst="02:4c:41:42:00:02") /
                Raw(b"labctl-probe"))
    return IP(src=me, dst=p["dst"]) / UDP(sport=p["sport"], dport=p["port"]) / Raw(b"labctl-probe")


def underlay(peer):
    """The interface the kernel routes the peer through (the probes' and replies' interface)."""
    try:
        out = subprocess.run(["ip", "-j", "route", "get", peer], capture_output=True, text=True, timeout=5).stdout
        return json.loads(out)[0]["dev"]
    except (OSError, ValueError, IndexError, KeyError, subprocess.TimeoutExpired):
        return "eth1"


def settled(p, seen):
    """Has this host seen all it will see of probe `p` (one it sends, or one a peer sends it)?"""
    if p.get("src"):  # a peer's probe: arrived, and answered where TCP answers
        came = any(d.get("dir") == "in" and d.get("src") == p["src"] and d.get("sport") == p["sport"]
                   and d.get("proto") == p["proto"] for d in seen)
        return came and (p["proto"] != "tcp" or any(
            d.get("dir") == "out" and d.get("dst") == p["src"] and (
                (d.get("proto") == "tcp" and d.get("dport") == p["sport"]) or
                (d.get("proto") == "icmp" and (d.get("quoted") or {}).get("sport") == p["sport"]))
            for d in seen))
    left = any(d.get("dir") == "out" and d.get("dst") == p["dst"] and d.get("sport") == p["sport"]
               and d.get("proto") == p["proto"] for d in seen)
    return left and (p["proto"] != "tcp" or any(
        d.get("dir") == "in" and (
            (d.get("proto") == "tcp" and d.get("src") == p["dst"] and d.get("dport") == p["sport"]) or
            (d.get("proto") == "icmp" and (d.get("quoted") or {}).get("sport") == p["sport"]))
        for d in seen))


def probe_mode():
    me, data_ports = CFG["me"], set(CFG.get("data_ports", [4789]))
    if not CFG.get("iface"):
        CFG["iface"] = underlay(CFG["peers"][0]) if CFG.get("peers") else "eth1"
    for port in data_ports:
        bind_layers(UDP, VXLAN, dport=port)
    before = iptables_saves()
    seen = []  # decoded as they come: what is settled is known while capturing
    sniffer = AsyncSniffer(iface=CFG["iface"], filter=f"icmp or ((tcp or udp) and portrange {SPORTS})", store=False,
                           prn=lambda pkt: seen.append(decode(pkt, me, data_ports)),
                           started_callback=lambda: say("READY"))
    sniffer.start()
    go = wait_for(CFG["go_file"], CFG.get("go_timeout", 15))
    errors = {}
    sent_at = time.time()
    stopped = False
    if go:
        conf.L3socket = L3RawSocket  # through the kernel: the host's OUTPUT chain sees the probe
        deadline = time.monotonic() + CFG.get("wait", 1.2) + CFG.get("gap", 0.3)
        for attempt in range(CFG.get("attempts", 2)):
            for p in CFG["send"]:
                try:
                    send(probe_packet(me, p), verbose=0)
                except OSError as exc:
                    errors[str(p["id"])] = f"{type(exc).__name__}: {exc.strerror or exc}"
            if attempt + 1 < CFG.get("attempts", 2):
                time.sleep(CFG.get("gap", 0.3))  # the pace of the repeats, not a wait for replies
        pending = [p for p in CFG["send"] if str(p["id"]) not in errors] + CFG.get("expect", [])
        while pending and time.monotonic() < deadline:
            pending = [p for p in pending if not settled(p, list(seen))]
            time.sleep(0.005)
        if not pending:
            say("SETTLED")
            stop_file = CFG.get("stop_file", "")
            stopped = bool(stop_file) and wait_for(stop_file, max(0.0, deadline - time.monotonic()))
    sniffer.stop()
    after = iptables_saves()
    for key in ("go_file", "stop_file"):
        try:
            os.unlink(CFG.get(key, ""))
        except OSError:
            pass
    say("RESULT " + json.dumps({"go": go, "sent_at": sent_at, "send_errors": errors, "packets": list(seen),
                                "stopped": stopped, "counters_before": before, "counters_after": after}))


def capture_mode():
    me, data_ports = CFG.get("me", ""), set(CFG.get("data_ports", [4789]))
    for port in data_ports:
        bind_layers(UDP, VXLAN, dport=port)
    before = iptables_saves() if CFG.get("counters") else {}
    buf = io.BytesIO()
    writer = PcapWriter(buf, sync=True, linktype=1)
    decoded = []
    stream = CFG.get("stream", True)

    def on_packet(pkt):
        writer.write(pkt)
        d = decode(pkt, me, data_ports)
        decoded.append(d)
        if stream:
            say("PKT " + json.dumps(d))

    sniffer = AsyncSniffer(iface=CFG["iface"], filter=CFG.get("filter") or None, prn=on_packet, store=False,
                           count=CFG.get("count", 0), started_callback=lambda: say("READY"))
    sniffer.start()
    end = time.monotonic() + CFG.get("seconds", 10)
    stop_file = CFG.get("stop_file", "")
    while time.monotonic() < end and sniffer.running:
        if stop_file and os.path.exists(stop_file):
            break
        time.sleep(0.02)
    if sniffer.running:
        sniffer.stop()
    if stop_file:
        try:
            os.unlink(stop_file)
        except OSError:
            pass
    writer.flush()
    result = {"count": len(decoded), "pcap": base64.b64encode(buf.getvalue()).decode()}
    if not stream:
        result["packets"] = decoded
    if CFG.get("counters"):
        result["counters_before"], result["counters_after"] = before, iptables_saves()
    say("RESULT " + json.dumps(result))


if CFG["mode"] == "probe":
    probe_mode()
elif CFG["mode"] == "capture":
    capture_mode()
