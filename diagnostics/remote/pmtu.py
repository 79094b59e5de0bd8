"""Runs ON a lab host (as root, `python3 - CONFIG_JSON`): path MTU to each peer, one direction.

Standard library only (starts in milliseconds, unlike scapy). Every host runs it at once: it
sends, and it answers its peers' probes.

Probes are VXLAN frames (UDP to the data path port, an unused VNI, DF set) of chosen IP sizes,
sent on a packet socket: the kernel's route cache (its per-destination PMTU) neither limits
nor shapes them. The peer's copy of this script sees each one on its interface (before its
firewall) and answers with a small frame naming the size, also on a packet socket. A size is
carried if an answer came; an ICMP "fragmentation needed" from the path gives the next-hop
MTU (tried next); silence means lost. Sizes are tried in rounds of up to POINTS at once,
each round narrowing the range between the largest size carried and the smallest lost.

Protocol on stdout: `READY` (socket open, neighbours known), `SETTLED` (own measurement done;
answers peers until the stop file or the deadline), `RESULT {json}`.
An ICMP "fragmentation needed" makes the kernel cache a PMTU for the peer: one that appeared
while measuring is flushed (`ip route flush cache`), and said.
"""

import json
import os
import random
import re
import select
import socket
import struct
import subprocess
import sys
import threading
import time

CFG = json.loads(sys.argv[1])
ETH_P_IP = 0x0800
PACKET_OUTGOING = 4
VNI = 0xFFFFF1  # no docker network uses it: the peer's kernel drops the frame silently
MAGIC = b"LPMTU"
INNER = bytes.fromhex("024c41420002024c414200010800")  # inner Ethernet header of the VXLAN payload


def say(text):
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def sh(argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


def cached_mtu(peer):
    """The PMTU the kernel has cached for `peer` (0: none)."""
    m = re.search(r"\bmtu (\d+)", sh(["ip", "route", "get", peer]))
    return int(m.group(1)) if m else 0


def route(peer):
    try:
        r = json.loads(sh(["ip", "-j", "route", "get", peer]))[0]
        return r["dev"], r.get("gateway") or peer
    except (ValueError, IndexError, KeyError, TypeError):
        return "", ""


def neighbour(dev, ip):
    try:
        for n in json.loads(sh(["ip", "-j", "neigh", "show", "to", ip, "dev", dev]) or "[]"):
            if n.get("lladdr") and "FAILED" not in n.get("state", []) and "INCOMPLETE" not in n.get("state", []):
                return n["lladdr"]
    except (ValueError, TypeError, AttributeError):
        pass
    return ""


def resolve(dev, ip, port, timeout=1.0):
    """The next hop's MAC; if unknown, the kernel is made to ask for it (one empty datagram, to the
    data path port: the peer's VXLAN socket drops it without an ICMP error, which would use up the
    peer's ICMP rate limit that its firewall's REJECTs of the port probes need)."""
    mac = neighbour(dev, ip)
    if mac:
        return mac
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.sendto(b"", (ip, port))
        s.close()
    except OSError:
        pass
    end = time.monotonic() + timeout
    while not mac and time.monotonic() < end:
        time.sleep(0.02)
        mac = neighbour(dev, ip)
    return mac


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ip_header(src, dst, total, df):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, random.getrandbits(16), 0x4000 if df else 0, 64, 17, 0,
                    socket.inet_aton(src), socket.inet_aton(dst))
    return h[:10] + struct.pack("!H", checksum(h)) + h[12:]


def mac_bytes(mac):
    return bytes.fromhex(mac.replace(":", ""))


def probe_frame(src_mac, dst_mac, me, peer, sport, port, size):
    """An Ethernet frame carrying an IP packet of exactly `size` bytes, DF set."""
    payload = struct.pack("!B3xI", 0x08, VNI << 8) + INNER + MAGIC + struct.pack("!I", size)
    payload += b"\0" * (size - 28 - len(payload))
    udp = struct.pack("!HHHH", sport, port, size - 20, 0)
    return dst_mac + src_mac + b"\x08\x00" + ip_header(me, peer, size, True) + udp + payload


class Prober:
    def __init__(self):
        self.me, self.port = CFG["me"], CFG.get("port", 4789)
        self.lo_port = CFG.get("sport_base", 48100)
        self.lock = threading.Lock()
        self.acked = {}  # peer -> set of sizes carried
        self.icmp = {}  # peer -> (next-hop mtu, from)
        self.received = {}  # peer ip -> [count, largest size] of its probes seen here
        self.socks = {}  # dev -> packet socket
        self.sinks = []  # UDP sockets on the answer ports (see `sink`)
        self.macs = {}  # dev -> own MAC
        self.errors = []
        self.stop = False

    def open(self, dev):
        if dev in self.socks:
            return self.socks[dev]
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
        s.bind((dev, ETH_P_IP))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
        self.socks[dev] = s
        self.macs[dev] = s.getsockname()[4][:6]
        return s

    def sink(self, port):
        """A UDP socket on a port the peers' answers come to. The answers are read on the packet
        socket; without a socket of its own there, the kernel would answer each one with an ICMP
        port unreachable, and those use up this host's ICMP rate limit towards the peer: its
        firewall's REJECTs of the port probes would then go unanswered."""
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
            s.bind((self.me, port))
            self.sinks.append(s)
        except OSError as exc:
            self.errors.append(f"UDP port {port}: {exc.strerror or exc}")

    def serve(self):
        """Read every socket until told to stop: answer peers' probes, note answers and ICMP."""
        while not self.stop:
            try:
                ready, _, _ = select.select(list(self.socks.values()), [], [], 0.05)
            except (OSError, ValueError):
                return
            for s in ready:
                try:
                    frame, addr = s.recvfrom(65535)
                except OSError:
                    continue
                if addr[2] != PACKET_OUTGOING:
                    try:
                        self.handle(s, frame)
                    except (IndexError, struct.error, OSError) as exc:  # a malformed frame: not ours
                        self.errors.append(f"frame of {len(frame)} bytes: {exc}")

    def handle(self, s, frame):
        if len(frame) < 42 or frame[12:14] != b"\x08\x00":
            return
        ip = frame[14:]
        ihl = (ip[0] & 0x0F) * 4
        proto, src, dst = ip[9], socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20])
        if dst != self.me:
            return
        body = ip[ihl:]
        if proto == 17 and len(body) >= 8:
            sport, dport = struct.unpack("!HH", body[:4])
            data = body[8:]
            if dport == self.port and self.lo_port <= sport < self.lo_port + 100 and \
                    data[8 + len(INNER):8 + len(INNER) + len(MAGIC)] == MAGIC:
                size = struct.unpack("!H", ip[2:4])[0]
                with self.lock:
                    seen = self.received.setdefault(src, [0, 0])
                    seen[0] += 1
                    seen[1] = max(seen[1], size)
                answer = MAGIC + struct.pack("!I", size)
                udp = struct.pack("!HHHH", self.port, sport, 8 + len(answer), 0)
                try:
                    s.send(frame[6:12] + frame[0:6] + b"\x08\x00" + ip_header(self.me, src, 28 + len(answer), False)
                           + udp + answer)
                except OSError as exc:
                    self.errors.append(f"answer to {src}: {exc.strerror or exc}")
            elif sport == self.port and self.lo_port <= dport < self.lo_port + 100 and data[:len(MAGIC)] == MAGIC \
                    and len(data) >= len(MAGIC) + 4:
                with self.lock:
                    self.acked.setdefault(src, set()).add(struct.unpack("!I", data[len(MAGIC):len(MAGIC) + 4])[0])
        elif proto == 1 and len(body) >= 8 + 28 and body[0] == 3 and body[1] in (3, 4):
            quoted = body[8:]
            qihl = (quoted[0] & 0x0F) * 4
            qdst, qsize = socket.inet_ntoa(quoted[16:20]), struct.unpack("!H", quoted[2:4])[0]
            if quoted[9] != 17 or socket.inet_ntoa(quoted[12:16]) != self.me or len(quoted) < qihl + 4:
                return
            qsport, qdport = struct.unpack("!HH", quoted[qihl:qihl + 4])
            if qdport != self.port or not self.lo_port <= qsport < self.lo_port + 100:
                return
            with self.lock:
                if body[1] == 4:  # fragmentation needed: the next-hop MTU is in bytes 6-7
                    self.icmp[qdst] = (struct.unpack("!H", body[6:8])[0], src)
                elif src == qdst:  # the peer itself answered: the probe arrived (no VXLAN socket there)
                    self.acked.setdefault(qdst, set()).add(qsize)


def grid(lo, hi, points):
    """Up to `points` sizes strictly between lo and hi, spread evenly, the top one included."""
    span = hi - lo - 1
    if span <= points:
        return list(range(lo + 1, hi))
    return sorted({hi - 1 - round(i * (span - 1) / (points - 1)) for i in range(points)})


def send_sizes(pr, active, tried, copies):
    for _copy in range(copies):
        for p in active:
            s = pr.socks[p["iface"]]
            for size in tried[p["ip"]]:
                try:
                    s.send(probe_frame(pr.macs[p["iface"]], p["mac_b"], pr.me, p["ip"], p["sport"], pr.port, size))
                    p["sent"] += 1
                except OSError as exc:
                    p.setdefault("send_errors", {})[str(size)] = exc.strerror or str(exc)


def await_acks(pr, active, tried, wait):
    """Until every size tried has been answered, or `wait` seconds."""
    end = time.monotonic() + wait
    while time.monotonic() < end:
        with pr.lock:
            if all(set(tried[p["ip"]]) <= pr.acked.get(p["ip"], set()) for p in active):
                return
        time.sleep(0.003)


def narrow(pr, active, floor, points, wait, copies):
    """Rounds of sizes between the largest carried and the smallest lost, until they meet."""
    for _ in range(CFG.get("max_rounds", 5)):
        active = [p for p in active if p["hi"] - p["lo"] > 1]
        if not active:
            return
        tried = {}
        for p in active:
            sizes = grid(p["lo"], p["hi"], points)
            nexthop = pr.icmp.get(p["ip"], (0, ""))[0]
            if p["lo"] < nexthop < p["hi"] and nexthop not in sizes:
                sizes.append(nexthop)
            tried[p["ip"]] = sizes
            p["rounds"] += 1
        send_sizes(pr, active, tried, copies)
        await_acks(pr, active, tried, wait)
        with pr.lock:
            for p in active:
                got = pr.acked.get(p["ip"], set())
                ok = [z for z in tried[p["ip"]] if z in got]
                if p["lo"] < floor and not ok:  # not even the smallest size: nothing to measure with
                    p["hi"] = p["lo"] + 1
                    continue
                p["lo"] = max([p["lo"], *ok])
                lost = [z for z in tried[p["ip"]] if z not in got and z > p["lo"]]
                if lost:
                    p["hi"] = min(p["hi"], min(lost))


def measure(pr, peers):
    """Narrow each peer's path MTU; then the smallest size taken for lost is sent again and waited
    for longer: on a busy host an answer can miss a round's short wait, and a path must not be
    called narrow for that. One that comes now reopens the search above it."""
    floor, points = CFG.get("floor", 576), CFG.get("points", 32)
    wait, copies = CFG.get("wait", 0.2), CFG.get("copies", 2)
    for i, p in enumerate(peers):
        p.update(sport=pr.lo_port + i, lo=floor - 1, hi=p["iface_mtu"] + 1, rounds=0, sent=0, rechecked=0)
        pr.sink(p["sport"])
    active = [p for p in peers if not p.get("error")]
    for _ in range(CFG.get("rechecks", 3)):
        narrow(pr, active, floor, points, wait, copies)
        # a size taken for lost, above one carried (not even the floor carried: a cut, which the
        # port probes tell)
        doubtful = [p for p in active if floor < p["hi"] <= p["iface_mtu"]]
        if not doubtful:
            return
        tried = {p["ip"]: [p["hi"]] for p in doubtful}
        for p in doubtful:
            p["rechecked"] += 1
        send_sizes(pr, doubtful, tried, copies)
        await_acks(pr, doubtful, tried, CFG.get("recheck_wait", 1.0))
        with pr.lock:
            late = [p for p in doubtful if p["hi"] in pr.acked.get(p["ip"], set())]
        if not late:
            return
        for p in late:
            p["lo"], p["hi"] = p["hi"], p["iface_mtu"] + 1


def main():
    pr = Prober()
    peers = []
    for peer in CFG["peers"]:
        p = {"ip": peer, "iface": "", "iface_mtu": 0, "error": "", "cached_before": cached_mtu(peer)}
        dev, nexthop = route(peer)
        p["iface"] = dev
        if not dev:
            p["error"] = "no route to the peer"
        else:
            try:
                with open(f"/sys/class/net/{dev}/mtu") as f:
                    p["iface_mtu"] = int(f.read().strip())
                pr.open(dev)
                mac = resolve(dev, nexthop, pr.port)
                p["mac_b"] = mac_bytes(mac) if mac else b""
                if not mac:
                    p["error"] = f"no MAC address for {nexthop} on {dev}"
            except (OSError, ValueError) as exc:
                p["error"] = f"{dev}: {getattr(exc, 'strerror', None) or exc}"
        peers.append(p)
    # answer peers on every interface a peer's probe can arrive on (the default route's too)
    for dev in CFG.get("listen", []):
        try:
            pr.open(dev)
        except OSError as exc:
            pr.errors.append(f"{dev}: {exc.strerror or exc}")
    server = threading.Thread(target=pr.serve, daemon=True)
    server.start()
    say("READY")
    go, stopped = False, False
    deadline = time.monotonic() + CFG.get("go_timeout", 15)
    while time.monotonic() < deadline and not go:
        go = os.path.exists(CFG["go_file"])
        time.sleep(0.005)
    if go:
        measure(pr, peers)
        say("SETTLED")
        stop_file, end = CFG.get("stop_file", ""), time.monotonic() + CFG.get("serve", 3.0)
        while stop_file and time.monotonic() < end and not stopped:
            stopped = os.path.exists(stop_file)
            time.sleep(0.005)
    pr.stop = True
    server.join(1.0)
    for s in pr.sinks:
        s.close()
    flush = False
    for p in peers:
        p["cached_after"] = cached_mtu(p["ip"])
        flush = flush or (p["cached_after"] and p["cached_after"] != p["cached_before"])
    if flush:  # a PMTU the probes taught the kernel: forget it (and say so)
        sh(["ip", "route", "flush", "cache"])
        for p in peers:
            p["flushed"] = bool(p["cached_after"])
            p["cached_after"] = cached_mtu(p["ip"])
    for key in ("go_file", "stop_file"):
        try:
            os.unlink(CFG.get(key, ""))
        except OSError:
            pass
    out = []
    floor = CFG.get("floor", 576)
    for p in peers:
        nexthop, icmp_from = pr.icmp.get(p["ip"], (0, ""))
        carried = p.get("lo", 0) if p.get("lo", 0) >= floor else 0
        out.append({"dst": p["ip"], "iface": p["iface"], "iface_mtu": p["iface_mtu"], "size": carried,
                    "limit": p["hi"] if carried and p.get("hi", 0) <= p["iface_mtu"] else 0,
                    "icmp_mtu": nexthop, "icmp_from": icmp_from, "rounds": p.get("rounds", 0),
                    "sent": p.get("sent", 0), "send_errors": p.get("send_errors", {}), "error": p["error"],
                    "cached_before": p["cached_before"], "cached_after": p.get("cached_after", 0),
                    "flushed": bool(p.get("flushed"))})
    say("RESULT " + json.dumps({"go": go, "stopped": stopped, "paths": out, "errors": pr.errors,
                                "received": {k: {"count": v[0], "largest": v[1]} for k, v in pr.received.items()}}))


main()
