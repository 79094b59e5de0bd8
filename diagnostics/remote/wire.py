"""Runs ON a lab host (as root, `python3 - CONFIG_JSON`): scapy probes and captures.

Protocol on stdout: `READY` once the capture socket is open, `PKT {json}` per
decoded packet when streaming, and one final `RESULT {json}` (with an `error`
when the script could not do its work at all, e.g. no capture socket).

mode "probe":   capture (before the firewall), wait for the go file, send each
                probe group's copies (one source port per copy) through the
                kernel (so the host's OUTPUT chain applies; a copy the kernel
                refuses is recorded with its errno, e.g. EPERM), wait until
                every copy has left, every TCP copy is answered and every copy
                expected from a peer has arrived (and been answered, for TCP),
                say `SETTLED`, keep capturing until the stop file (labctl makes
                it once every host has settled) or the deadline, and report
                what left, what arrived, what the capture may have missed and
                which firewall rules counted packets meanwhile.

No errno ends the script: every socket call is guarded, and what failed is reported.
mode "capture": decode packets (VXLAN aware) until count / seconds / stop file;
                the pcap comes back base64-encoded, no file is left on the host.
"""

import base64
import errno
import io
import json
import os
import select
import socket
import struct
import subprocess
import sys
import threading
import time

from scapy.arch.linux import L2ListenSocket, attach_filter
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, TCPerror, UDPerror
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw, bind_layers
from scapy.utils import PcapWriter

CFG = json.loads(sys.argv[1])
SOL_PACKET, PACKET_STATISTICS = 263, 6
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
RCVBUF = 4 << 20


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


def errname(exc):
    """An OSError as the short name a person searches for (EPERM), else the exception's type."""
    return errno.errorcode.get(getattr(exc, "errno", None) or -1) or type(exc).__name__


def why(exc):
    """An error as one line: `EPERM: Operation not permitted`; our own ValueErrors say it all."""
    return str(exc) if isinstance(exc, ValueError) else f"{errname(exc)}: {exc}"


class Capture:
    """Packets on one interface (both directions, before the host's firewall on the way in and after
    it on the way out), decoded in a thread. It never raises once open: a packet that cannot be
    decoded is counted, a socket error ends the capture and is kept in `error`."""

    def __init__(self, iface, bpf, on_packet, strict_filter):
        self.sock = L2ListenSocket(iface=iface, nofilter=1)  # OSError (ENODEV, EPERM) for the caller
        self.filter_error = ""
        if bpf:
            try:
                attach_filter(self.sock.ins, bpf, iface)
            except Exception as exc:  # no libpcap, or a filter it refuses
                if strict_filter:
                    self.sock.close()
                    raise ValueError(f"the capture filter {bpf!r} was refused: {exc}") from None
                self.filter_error = f"{type(exc).__name__}: {exc}"
            else:
                self._drain()
        for opt in (SO_RCVBUFFORCE, socket.SO_RCVBUF):  # a burst of probes must not overflow it
            try:
                self.sock.ins.setsockopt(socket.SOL_SOCKET, opt, RCVBUF)
                break
            except OSError:
                continue
        self.on_packet = on_packet
        self.undecoded = 0
        self.error = ""
        self.drops = 0
        self.count = 0
        self.limit = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _drain(self):
        """Drop what the socket queued before its filter was attached: the kernel filters only
        packets that arrive after, so anything (SSH, gossip) may be waiting in the queue."""
        for _ in range(100000):
            ready, _, _ = select.select([self.sock.ins], [], [], 0)
            if not ready:
                return
            self.sock.ins.recv(65535)

    def start(self):
        self._thread.start()
        return self

    @property
    def running(self):
        return self._thread.is_alive()

    def _one(self, timeout):
        """Read and hand on one packet if one comes within `timeout`; False when none did."""
        ready, _, _ = select.select([self.sock.ins], [], [], timeout)
        if not ready:
            return False
        pkt = self.sock.recv()
        if pkt is None:
            return True
        self.count += 1
        try:
            self.on_packet(pkt)
        except Exception:  # a packet scapy or the decoder chokes on is not the end of the capture
            self.undecoded += 1
        if self.limit and self.count >= self.limit:
            self._stop.set()
        return True

    def _loop(self):
        try:
            while not self._stop.is_set():
                self._one(0.02)
            # what is already queued was seen before the stop: read it too (slow hosts decode slowly)
            end = time.monotonic() + 0.5 * CFG.get("pace", 1.0)
            while not (self.limit and self.count >= self.limit) and time.monotonic() < end and self._one(0):
                pass
        except (OSError, ValueError) as exc:
            self.error = f"capture: {why(exc)}"
        except Exception as exc:
            self.error = f"capture: {type(exc).__name__}: {exc}"

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            _, self.drops = struct.unpack("II", self.sock.ins.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
        except (OSError, struct.error):
            pass
        try:
            self.sock.close()
        except Exception:
            pass


def probe_packet(me, p, sport):
    if p["proto"] == "tcp":
        return IP(src=me, dst=p["dst"]) / TCP(sport=sport, dport=p["port"], flags="S", seq=0x4C414200 + p["id"])
    if p.get("vxlan"):
        # A VXLAN frame with a VNI no docker network uses: the peer's kernel drops it silently.
        return (IP(src=me, dst=p["dst"]) / UDP(sport=sport, dport=p["port"]) /
                VXLAN(vni=0xFFFFF0, flags=0x08) / Ether(src="02:4c:41:42:00:01", dst="02:4c:41:42:00:02") /
                Raw(b"labctl-probe"))
    return IP(src=me, dst=p["dst"]) / UDP(sport=sport, dport=p["port"]) / Raw(b"labctl-probe")


def underlay(peer):
    """The interface the kernel routes the peer through (the probes' and replies' interface)."""
    try:
        out = subprocess.run(["ip", "-j", "route", "get", peer], capture_output=True, text=True, timeout=5).stdout
        return json.loads(out)[0]["dev"]
    except (OSError, ValueError, IndexError, KeyError, subprocess.TimeoutExpired):
        return "eth1"


class Seen:
    """What the capture has shown so far, indexed so that each probe copy is looked up at once:
    packets that left (to whom, from which source port), packets that came, and the answers."""

    def __init__(self):
        self.packets = []
        self.left, self.came = set(), set()  # (peer, sport, proto)
        self.answers_in, self.answers_out = set(), set()  # (peer, probe's sport)

    def add(self, d):
        self.packets.append(d)
        proto, quoted = d.get("proto"), d.get("quoted") or {}
        if d.get("dir") == "out":
            self.left.add((d.get("dst"), d.get("sport"), proto))
            if proto == "tcp":
                self.answers_out.add((d.get("dst"), d.get("dport")))
            elif proto == "icmp":
                self.answers_out.add((d.get("dst"), quoted.get("sport")))
        elif d.get("dir") == "in":
            self.came.add((d.get("src"), d.get("sport"), proto))
            if proto == "tcp":
                self.answers_in.add((d.get("src"), d.get("dport")))
            elif proto == "icmp":  # from the peer, or from a hop on the path about it
                self.answers_in.add((quoted.get("dst"), quoted.get("sport")))

    def settled(self, p):
        """Has this host seen all it will see of probe group `p` (one it sends, or one a peer sends
        it)? Each copy has left (or arrived), and a TCP copy is answered."""
        tcp = p["proto"] == "tcp"
        if p.get("src"):  # a peer's probe: arrived, and answered where TCP answers
            return all((p["src"], s, p["proto"]) in self.came and (not tcp or (p["src"], s) in self.answers_out)
                       for s in p["sports"])
        return all((p["dst"], s, p["proto"]) in self.left and (not tcp or (p["dst"], s) in self.answers_in)
                   for s in p["sports"] if str(s) not in p.get("failed", ()))


def send_probes(me, groups, round_gap):
    """Send each group's copies through the kernel (so the host's OUTPUT chain applies), one copy
    of every group per round. Returns {sport: errno name} for the copies the kernel refused."""
    errors = {}
    built = []
    for p in groups:
        copies = []
        for sport in p["sports"]:
            try:
                copies.append((sport, bytes(probe_packet(me, p, sport))))
            except Exception as exc:
                errors[str(sport)] = f"build: {type(exc).__name__}"
        built.append((p, copies))
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)  # IP_HDRINCL
    except OSError as exc:
        return {str(s): errname(exc) for p in groups for s in p["sports"]}
    rounds = max((len(c) for _, c in built), default=0)
    try:
        for r in range(rounds):
            for p, copies in built:
                if r < len(copies):
                    sport, data = copies[r]
                    try:
                        sock.sendto(data, (p["dst"], 0))
                    except OSError as exc:  # EPERM: the host's own firewall refused it
                        errors[str(sport)] = errname(exc)
            if r + 1 < rounds:
                time.sleep(round_gap)
    finally:
        sock.close()
    return errors


def reply_window(seen, cap, pending):
    """Capture until this host has seen all it will see: say `SETTLED` once every copy it sent has
    left (and a TCP one is answered) and every copy expected from a peer has arrived (and is
    answered), then wait for the stop file (every host has settled). Whatever is still missing
    gets `wait` seconds from the moment labctl says every host has sent (the sent file; or, without
    that word, `sent_timeout` after its own sends): a peer that got its go signal late is still seen.
    Returns (stopped by the stop file, the sent file was seen)."""
    stop_file, sent_file = CFG.get("stop_file", ""), CFG.get("sent_file", "")
    wait = CFG.get("wait", 0.3)
    unheard = time.monotonic() + CFG.get("sent_timeout", 3.0)
    deadline = None if sent_file else time.monotonic() + wait
    told = said = False
    while cap.running:
        now = time.monotonic()
        if deadline is None and (os.path.exists(sent_file) or now > unheard):
            told = os.path.exists(sent_file)
            deadline = now + wait
        if not said:
            pending = [p for p in pending if not seen.settled(p)]
            if not pending:
                say("SETTLED")
                said = True
        if said and (not stop_file or os.path.exists(stop_file)):
            return bool(stop_file), told
        if deadline is not None and now >= deadline:
            break
        time.sleep(0.005)
    return False, told


def probe_mode():
    me, data_ports = CFG["me"], set(CFG.get("data_ports", [4789]))
    if not CFG.get("iface"):
        CFG["iface"] = underlay(CFG["peers"][0]) if CFG.get("peers") else "eth1"
    for port in data_ports:
        bind_layers(UDP, VXLAN, dport=port)
    lo, hi = CFG.get("sports", [47100, 48099])
    before = iptables_saves()
    seen = Seen()  # decoded as they come: what is settled is known while capturing
    try:
        cap = Capture(CFG["iface"], f"icmp or ((tcp or udp) and portrange {lo}-{hi})",
                      lambda pkt: seen.add(decode(pkt, me, data_ports)), strict_filter=False).start()
    except (OSError, ValueError) as exc:
        error = f"cannot capture on {CFG['iface']}: {why(exc)}"
        say("RESULT " + json.dumps({"go": False, "error": error}))
        return
    say("READY")
    go = wait_for(CFG["go_file"], CFG.get("go_timeout", 15))
    errors = {}
    sent_at = time.time()
    stopped = told = False
    if go:
        errors = send_probes(me, CFG["send"], CFG.get("round_gap", 0.01))
        say("SENT")
        pending = [dict(p, failed=errors) for p in CFG["send"]] + CFG.get("expect", [])
        stopped, told = reply_window(seen, cap, pending)
    cap.stop()
    after = iptables_saves()
    for key in ("go_file", "stop_file", "sent_file"):
        try:
            os.unlink(CFG.get(key, ""))
            stopped = stopped or key == "stop_file"  # consumed: labctl need not remove it
            told = told or key == "sent_file"
        except OSError:
            pass
    say("RESULT " + json.dumps({"go": go, "sent_at": sent_at, "send_errors": errors, "packets": seen.packets,
                                "stopped": stopped, "sent_seen": told, "capture_drops": cap.drops,
                                "capture_error": cap.error, "undecoded": cap.undecoded,
                                "filter_error": cap.filter_error, "counters_before": before,
                                "counters_after": after}))


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

    try:
        cap = Capture(CFG["iface"], CFG.get("filter") or None, on_packet, strict_filter=True)
    except (OSError, ValueError) as exc:
        say("RESULT " + json.dumps({"error": f"cannot capture on {CFG['iface']}: {why(exc)}"}))
        return
    cap.limit = CFG.get("count", 0)
    cap.start()
    say("READY")
    end = time.monotonic() + CFG.get("seconds", 10)
    stop_file = CFG.get("stop_file", "")
    while time.monotonic() < end and cap.running:
        if stop_file and os.path.exists(stop_file):
            break
        time.sleep(0.02)
    cap.stop()
    if stop_file:
        try:
            os.unlink(stop_file)
        except OSError:
            pass
    writer.flush()
    result = {"count": len(decoded), "pcap": base64.b64encode(buf.getvalue()).decode(),
              "capture_error": cap.error, "capture_drops": cap.drops}
    if not stream:
        result["packets"] = decoded
    if CFG.get("counters"):
        result["counters_before"], result["counters_after"] = before, iptables_saves()
    say("RESULT " + json.dumps(result))


try:
    if CFG["mode"] == "probe":
        probe_mode()
    elif CFG["mode"] == "capture":
        capture_mode()
except Exception as exc:  # a defect here is one line of the result, not a traceback to parse
    say("RESULT " + json.dumps({"error": f"wire.py failed: {type(exc).__name__}: {exc}"}))
