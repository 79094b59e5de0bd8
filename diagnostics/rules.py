"""Rules: evidence in, findings out. Pure functions, tested with recorded evidence."""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass
from typing import Any

from labctl.facts.dataplane import unreached

from .evidence import Evidence, HostFacts, PathMtu, Probe, RuleHit
from .firewall import counted, describe, matches

VXLAN_OVERHEAD = 50
DEFAULT_OVERLAY_MTU = 1450  # what docker gives an overlay without a `mtu` option
SEVERITIES = ("error", "warning", "info")


@dataclass
class Finding:
    code: str
    severity: str  # error / warning / info
    host: str
    finding: str  # one sentence for the table
    evidence: str
    fix: str
    peer: str | None = None
    port: int | None = None
    proto: str | None = None
    direction: str | None = None  # inbound / outbound, as seen from `host`
    where: str | None = None  # sender / path / receiver
    rule: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def analyze(ev: Evidence) -> list[Finding]:
    findings: list[Finding] = []
    for facts in ev.hosts.values():
        findings += host_findings(facts, ev)
    findings += duplicate_addresses(ev)
    findings += gossip(ev)
    findings += probe_findings(ev)
    findings += path_mtu_findings(ev)
    for host, err in ev.probe_errors.items():
        findings.append(Finding("probe-failed", "warning", host, "the packet probes could not run on this host",
                                err, "check that python3-scapy and tcpdump are installed on the host"))
    if ev.focus:
        findings = [f for f in findings if ev.focus in (f.host, f.peer)]
    findings.sort(key=lambda f: (*_rank(f), f.host, f.peer or "", f.port or 0))
    return _dedupe(findings)


def _dedupe(findings: list[Finding]) -> list[Finding]:
    seen, out = set(), []
    for f in findings:
        key = (f.code, f.host, f.peer, f.port, f.proto, f.direction, f.where)
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out


# ---------------------------------------------------------------- one host's own state

def host_findings(h: HostFacts, ev: Evidence) -> list[Finding]:
    if not h.reachable:
        return [Finding("host-unreachable", "error", h.name, "labctl cannot reach the host over SSH", h.error,
                        "`labctl status`; `labctl up` restarts a stopped host")]
    out: list[Finding] = []
    d = h.docker
    if not d.get("running"):
        proc = "a dockerd process exists but does not answer" if d.get("process") else "no dockerd process runs"
        out.append(Finding("docker-down", "error", h.name, "Docker is not running",
                           f"`docker info` failed: {d.get('error') or 'no answer'}; {proc}",
                           "start Docker (`labctl up` does it; `systemctl start docker` on a VM)"))
    elif d.get("swarm_state") != "active":
        state = d.get("swarm_state", "inactive")
        err = f"; swarm error: {d['swarm_error']}" if d.get("swarm_error") else ""
        seen = _manager_view(h, ev)
        out.append(Finding("not-in-swarm", "error", h.name, f"the host is not an active swarm member ({state})",
                           f"docker info: LocalNodeState={state}{err}{seen}",
                           "join it again: `labctl up` (or `docker swarm join --token ... MANAGER:2377`); "
                           "if the join times out, fix the port findings first"))
    out += kernel_findings(h, ev)
    if not d.get("running"):
        return out
    out += address_findings(h)
    if h.docker.get("is_manager") and ev.data_port != 4789:
        out.append(Finding("data-path-port", "info", h.name,
                           f"the swarm carries VXLAN on UDP {ev.data_port}, not 4789",
                           f"docker info: DataPathPort={ev.data_port}",
                           f"firewalls and security groups must open UDP {ev.data_port} between all nodes",
                           port=ev.data_port, proto="udp"))
    for dev in h.vxlan:
        if dev.get("port") and dev["port"] != ev.data_port:
            out.append(Finding("data-path-port", "warning", h.name,
                               f"VXLAN device {dev['name']} (VNI {dev['vni']}) uses UDP {dev['port']}, "
                               f"the swarm's data path port is {ev.data_port}",
                               f"ip -d link in netns {dev['ns']}: dstport {dev['port']}",
                               "recreate the overlay network (or re-init the swarm with the intended "
                               "--data-path-port)", port=dev["port"], proto="udp"))
    out += mtu_findings(h)
    out += overlap_findings(h)
    return out


def _manager_view(h: HostFacts, ev: Evidence) -> str:
    for m in ev.hosts.values():
        for n in m.nodes:
            if n.get("hostname") == h.name:
                return f"; the manager ({m.name}) lists it as {n.get('state')} at {n.get('addr')}"
    return ""


def kernel_findings(h: HostFacts, ev: Evidence) -> list[Finding]:
    k = h.kernel
    out: list[Finding] = []
    if not k:
        return out
    release = k.get("release", "?")
    if k.get("vxlan") is False:
        out.append(Finding("kernel-missing-vxlan", "error", h.name, "the kernel cannot make VXLAN links: "
                           "no overlay network can carry traffic on this host",
                           f"`ip link add ... type vxlan` failed: {k.get('vxlan_error')} (kernel {release})",
                           "use a kernel with CONFIG_VXLAN (modprobe vxlan)"))
    services = [s for m in ev.hosts.values() for s in m.services]
    if k.get("ipvs") is False:
        needy = [s["name"] for s in services if s.get("mode", "vip") == "vip" or s.get("published")]
        out.append(Finding(
            "kernel-missing-ipvs", "warning" if needy else "info", h.name,
            "no IPVS in the kernel: service virtual IPs and the ingress routing mesh cannot work "
            "(container-to-container overlay traffic and --endpoint-mode dnsrr services do)",
            f"generic netlink family IPVS not found (kernel {release})"
            + (f"; services that need it: {', '.join(needy)}" if needy else "; no service needs it now"),
            "modprobe ip_vs (CONFIG_IP_VS); meanwhile use --endpoint-mode dnsrr and --publish mode=host"))
    if k.get("esp") is False:
        enc = sorted({n["name"] for n in h.overlays if n.get("encrypted")})
        out.append(Finding(
            "kernel-missing-esp", "error" if enc else "info", h.name,
            "the kernel cannot install ESP (AES-GCM) states: encrypted overlay networks cannot carry traffic",
            f"`ip xfrm state add ... proto esp aead rfc4106(gcm(aes))` failed: {k.get('esp_error')}"
            + (f"; encrypted networks here: {', '.join(enc)}" if enc else "; no encrypted overlay exists"),
            "use a kernel with CONFIG_INET_ESP and AES-GCM; or create overlays without --opt encrypted"))
    return out


def address_findings(h: HostFacts) -> list[Finding]:
    out: list[Finding] = []
    addr = h.node_addr
    if not addr or not h.swarm_active:
        return out
    local = h.local_addrs()
    underlay = h.underlay()
    if addr not in local:
        out.append(Finding("advertise-addr-not-local", "error", h.name,
                           f"the host advertises {addr}, which is none of its addresses",
                           f"docker info: NodeAddr={addr}; addresses: {', '.join(sorted(local)) or 'none'}",
                           f"re-join advertising its own address: `docker swarm leave` then `docker swarm join "
                           f"--advertise-addr {h.ip} ...` (or `labctl up`)"))
    elif underlay and local[addr] != underlay:
        out.append(Finding("advertise-addr-wrong-interface", "error", h.name,
                           f"the host advertises {addr} on {local[addr]}, but reaches its peers through {underlay}",
                           f"docker info: NodeAddr={addr} ({local[addr]}); ip route get <peer>: dev {underlay}",
                           f"re-join with --advertise-addr {h.ip} (the address on {underlay})"))
    return out


def mtu_findings(h: HostFacts) -> list[Finding]:
    underlay = h.underlay()
    mtu = int(h.iface(underlay).get("mtu", 0)) if underlay else 0
    if not mtu:
        return []
    small = []
    for n in h.overlays:
        need = (n.get("mtu") or DEFAULT_OVERLAY_MTU) + VXLAN_OVERHEAD
        if mtu < need:
            small.append(f"{n['name']} (overlay MTU {n.get('mtu') or DEFAULT_OVERLAY_MTU} needs {need})")
    if not small:
        return []
    return [Finding("mtu-too-small", "error", h.name,
                    f"underlay {underlay} has MTU {mtu}: full-size overlay packets do not fit once VXLAN adds "
                    f"{VXLAN_OVERHEAD} bytes",
                    f"ip link {underlay}: mtu {mtu}; " + "; ".join(small),
                    f"raise {underlay}'s MTU to at least {DEFAULT_OVERLAY_MTU + VXLAN_OVERHEAD}, or create the "
                    f"overlay with --opt com.docker.network.driver.mtu={mtu - VXLAN_OVERHEAD}")]


def _vxlan_need(a: HostFacts, b: HostFacts) -> int:
    """The IP size a VXLAN frame of a full-size overlay packet has (0: no overlay on either host)."""
    mtus = [n.get("mtu") or DEFAULT_OVERLAY_MTU for n in (*a.overlays, *b.overlays)]
    return max(mtus) + VXLAN_OVERHEAD if mtus else 0


def path_mtu_findings(ev: Evidence) -> list[Finding]:
    """Each pair's measured path MTU against what VXLAN needs and what the sender's interface says.
    A limit a host's own interface MTU explains is `mtu-too-small`'s when VXLAN does not fit: not said twice."""
    out = []
    # an overlay spans every host: its MTU must fit the narrowest path measured
    narrowest = min((m.size for m in ev.path_mtu if m.measured), default=0)
    for m in ev.path_mtu:
        a, b = ev.hosts.get(m.src), ev.hosts.get(m.dst)
        if a is None or b is None or not m.measured or not m.limit or m.size >= m.iface_mtu:
            continue  # not measured, or the path carries all the sender's interface says
        need = _vxlan_need(a, b)
        b_dev = b.underlay()
        b_mtu = int(b.iface(b_dev).get("mtu", 0)) if b_dev else 0
        how = (f"ICMP fragmentation needed from {m.icmp_from}: next-hop MTU {m.icmp_mtu}" if m.icmp_mtu
               else "no answer, no ICMP: dropped silently")
        measured = (f"DF probes (UDP {ev.data_port}) from {m.src} to {m.dst}: {m.size} bytes carried, "
                    f"{m.limit} lost ({how}); {m.src} {m.iface} MTU {m.iface_mtu}"
                    + (f", {m.dst} {b_dev} MTU {b_mtu}" if b_mtu else ""))
        common: dict[str, Any] = {"peer": m.src, "direction": "inbound"}
        if b_mtu and m.size >= b_mtu:  # the receiver's own interface is the limit
            if need and b_mtu < need:
                continue  # mtu-too-small on the receiver says it
            out.append(Finding("mtu-mismatch", "warning", m.src,
                               f"{m.src}'s {m.iface} says MTU {m.iface_mtu}, {m.dst}'s {b_dev} takes only {b_mtu}: "
                               f"larger packets from {m.src} to {m.dst} are lost",
                               measured, f"set {m.iface}'s MTU on {m.src} to {b_mtu} (`ip link set {m.iface} mtu "
                               f"{b_mtu}`), or raise {b_dev}'s on {m.dst} and the network's to {m.iface_mtu}",
                               peer=m.dst, direction="outbound", where="sender"))
        elif need and m.size < need:
            out.append(_path_too_small(m, need, narrowest, measured, ev.data_port, common))
        else:
            out.append(Finding("mtu-mismatch", "warning", m.src,
                               f"{m.src}'s {m.iface} says MTU {m.iface_mtu}, the path to {m.dst} carries only "
                               f"{m.size}: larger packets from {m.src} to {m.dst} are lost",
                               measured, f"set {m.iface}'s MTU on {m.src} to {m.size} (`ip link set {m.iface} mtu "
                               f"{m.size}`), or fix the network between the hosts to carry {m.iface_mtu}",
                               peer=m.dst, direction="outbound", where="path"))
    return out


def _path_too_small(m: PathMtu, need: int, narrowest: int, measured: str, port: int,
                    common: dict[str, Any]) -> Finding:
    return Finding("path-mtu-too-small", "error", m.dst,
                   f"the path from {m.src} to {m.dst} carries {m.size} bytes, VXLAN needs {need}: full-size overlay "
                   "packets are dropped on the way (small ones, pings and handshakes pass)",
                   measured + f"; overlay MTU {need - VXLAN_OVERHEAD} + {VXLAN_OVERHEAD} = {need}",
                   f"lower the overlays' MTU to {narrowest - VXLAN_OVERHEAD} (the narrowest path, {narrowest}, less "
                   f"{VXLAN_OVERHEAD}: `docker network create --opt com.docker.network.driver.mtu="
                   f"{narrowest - VXLAN_OVERHEAD} ...`), or make the network between {m.src} and {m.dst} carry "
                   f"{need} bytes",
                   where="path", port=port, proto="udp", **common)


def overlap_findings(h: HostFacts) -> list[Finding]:
    host_nets: dict[str, str] = {}
    for i in h.interfaces:
        for a in i.get("addrs", []):
            if not a.startswith("127."):
                host_nets[str(ipaddress.ip_interface(a).network)] = i["name"]
    for r in h.routes:
        if r and "/" in r:
            host_nets.setdefault(r, "route")
    out = []
    for n in h.overlays:
        for s in n.get("subnets", []):
            try:
                net = ipaddress.ip_network(s, strict=False)
            except ValueError:
                continue
            for hn, dev in host_nets.items():
                try:
                    clash = net.overlaps(ipaddress.ip_network(hn, strict=False))
                except (ValueError, TypeError):
                    continue
                if clash:
                    out.append(Finding(
                        "subnet-overlap", "error", h.name,
                        f"overlay {n['name']} ({s}) overlaps the host network {hn} ({dev})",
                        f"docker network inspect {n['name']}: {s}; host: {hn} on {dev}",
                        f"recreate {n['name']} with a --subnet that no host network uses "
                        "(or init the swarm with another --default-addr-pool)"))
    return out


def duplicate_addresses(ev: Evidence) -> list[Finding]:
    by_addr: dict[str, list[str]] = {}
    for h in ev.hosts.values():
        if h.swarm_active and h.node_addr:
            by_addr.setdefault(h.node_addr, []).append(h.name)
    for m in ev.hosts.values():  # the manager's view also counts (a host may be unreachable)
        for n in m.nodes:
            name = n.get("hostname", "")
            if n.get("addr") and n.get("state") == "ready" and name in ev.hosts \
                    and name not in by_addr.get(n["addr"], []):
                by_addr.setdefault(n["addr"], []).append(name)
    out = []
    for addr, names in by_addr.items():
        if len(names) < 2:
            continue
        for name in names:
            others = [o for o in names if o != name]
            out.append(Finding("advertise-addr-duplicate", "error", name,
                               f"{name} and {', '.join(others)} advertise the same address {addr}",
                               f"docker info / docker node inspect: {', '.join(names)} -> {addr}",
                               f"re-join each with its own --advertise-addr (that of {name}: {ev.hosts[name].ip})",
                               peer=others[0]))
    return out


@dataclass(frozen=True)
class GossipGap:
    """An overlay on `host` that does not reach `peer` (at `addr`), and what is missing."""

    host: str
    peer: str
    addr: str
    network: str
    missing: str


def gossip_gaps(ev: Evidence) -> list[GossipGap]:
    """Each host must know, for every overlay both have endpoints on, the peer's address
    (the decision `labctl up` makes for ingress: labctl.facts.dataplane)."""
    out = []
    active = {n: h for n, h in ev.hosts.items() if h.swarm_active}
    for h in active.values():
        for net in h.overlays:
            if not net.get("local_containers"):
                continue
            vnis = set(net.get("vnis", []))
            fdb = {ip for d in h.vxlan if d.get("vni") in vnis for ip in d.get("fdb_peers", [])}
            has_dev = any(d.get("vni") in vnis for d in h.vxlan)
            for p in active.values():
                if p is h or not any(o["id"] == net["id"] and o.get("local_containers") for o in p.overlays):
                    continue
                paddr = p.node_addr or p.ip
                missing = unreached(net.get("peers", []), fdb if has_dev else None, paddr)
                if missing:
                    out.append(GossipGap(h.name, p.name, paddr, str(net.get("name", "")), " and ".join(missing)))
    return out


def gossip(ev: Evidence) -> list[Finding]:
    """`gossip-broken` for peers still missing; `converging` for those that appeared when the
    facts were read again (ev.converging), right after `up` or a re-join."""
    out = []
    gaps = gossip_gaps(ev)
    for g in gaps:
        out.append(Finding(
            "gossip-broken", "error", g.host,
            f"{g.host} has not learnt {g.peer}'s endpoints on {g.network}: containers there "
            "cannot reach each other",
            f"{g.peer} ({g.addr}) {g.missing}" + (
                f"; still missing after {ev.recheck_seconds:g} s of re-reading" if ev.recheck_seconds else ""),
            "open TCP+UDP 7946 both ways between the two hosts; then re-attach the containers" + (
                " (`labctl up` heals the ingress network)" if g.network == "ingress" else ""),
            peer=g.peer, port=7946))
    broken = {(g.host, g.peer, g.network) for g in gaps}
    for c in ev.converging:
        if (c.get("host"), c.get("peer"), c.get("network")) in broken:
            continue
        out.append(Finding(
            "converging", "info", str(c.get("host")),
            f"{c.get('host')}'s {c.get('network')} network was still learning {c.get('peer')}'s endpoints",
            f"{c.get('peer')} ({c.get('addr', '')}) {c.get('missing', '')} at first; there "
            f"{float(c.get('seconds', 0)):.1f} s later",
            "nothing: the overlay converged while it was being diagnosed",
            peer=str(c.get("peer")), port=7946))
    return out


# ---------------------------------------------------------------- packets

def _hits_for(ev: Evidence, host: str, probe: Probe, reply: bool = False) -> list[RuleHit]:
    return [r for r in ev.rule_hits if r.host == host and matches(r.rule, probe, reply)]


def _path_hits(ev: Evidence, probe: Probe, reply: bool = False) -> list[RuleHit]:
    return [r for r in ev.path_rule_hits if matches(r.rule, probe, reply) and not r.rule.startswith("-P ")]


ICMP_CODES = {0: "net unreachable", 1: "host unreachable", 3: "port unreachable", 9: "net prohibited",
              10: "host prohibited", 13: "administratively prohibited"}


def _icmp_text(kind: str) -> str:
    try:
        t, c = kind.split("-", 1)[1].split(" ")[0].split("/")
        return f"ICMP type {t} code {c} ({ICMP_CODES.get(int(c), 'unreachable')})"
    except (IndexError, ValueError):
        return kind


def probe_findings(ev: Evidence) -> list[Finding]:
    out = []
    for p in ev.probes:
        f = classify(p, ev)
        if f is not None:
            out.append(f)
    return out


def classify(p: Probe, ev: Evidence) -> Finding | None:
    """Where one probe died, if it did."""
    a, b = ev.hosts.get(p.src), ev.hosts.get(p.dst)
    if a is None or b is None or p.left_sender is None:
        return None
    common: dict[str, Any] = {"port": p.port, "proto": p.proto}
    what = f"{p.label} ({p.purpose})"
    fix_open = (f"allow {p.proto.upper()} {p.port} from {p.src} ({p.src_ip}) to {p.dst} ({p.dst_ip})")
    # 1. never left the sender: its own firewall (OUTPUT)
    if not p.left_sender:
        hits = _hits_for(ev, p.src, p)
        rule = "; ".join(describe(h) for h in hits) or None
        reject = any(h.target == "REJECT" for h in hits)
        return Finding("port-rejected" if reject else "port-dropped", "error", p.src,
                       f"{p.src} cannot send {what} to {p.dst}: its own firewall stops it",
                       f"not seen leaving {p.src}'s interface" + (f"; send error: {p.send_error}" if p.send_error
                                                                 else "") + (f"; {counted(hits)}" if hits else ""),
                       f"remove the rule on {p.src}" if rule else fix_open,
                       peer=p.dst, direction="outbound", where="sender", rule=rule, **common)
    # 2. left but never arrived: the path
    if p.arrived is False:
        hits = _path_hits(ev, p)
        rule = "; ".join(describe(h) for h in hits) or None
        icmp = f"; {_icmp_text(p.third_party_icmp)}" if p.third_party_icmp else ""
        return Finding("path-drop", "error", p.dst,
                       f"{what} from {p.src} never reaches {p.dst}: something between the hosts drops it",
                       f"seen leaving {p.src}, never seen on {p.dst}'s interface{icmp}"
                       + (f"; on the path: {counted(hits)}" if hits else ""),
                       ("remove the rule on the path: " + rule) if rule else
                       f"open {p.proto.upper()} {p.port} from {p.src_ip} to {p.dst_ip} in the network between "
                       "them (cloud security group, host bridge firewall, switch ACL)",
                       peer=p.src, direction="inbound", where="path", rule=rule, **common)
    if p.arrived is None:
        return None
    # 3. arrived: did the receiver's firewall stop it?
    hits = _hits_for(ev, p.dst, p)
    rule = "; ".join(describe(h) for h in hits) or None
    if hits:
        reject = any(h.target == "REJECT" for h in hits)
        answer = p.receiver_reply or "nothing"
        if reject:
            how = _icmp_text(p.receiver_reply) if p.receiver_reply.startswith("icmp") else \
                ("a TCP reset" if p.receiver_reply == "rst" else answer)
            return Finding("port-rejected", "error", p.dst, f"{p.dst} rejects {what} from {p.src}",
                           f"arrived on {p.dst}'s interface, answered with {how}; {counted(hits)}",
                           f"remove the rule on {p.dst}, or insert an ACCEPT before it: {fix_open}",
                           peer=p.src, direction="inbound", where="receiver", rule=rule, **common)
        return Finding("port-dropped", "error", p.dst, f"{p.dst}'s firewall drops {what} from {p.src}",
                       f"arrived on {p.dst}'s interface, no answer; {counted(hits)}",
                       f"remove the rule on {p.dst}, or insert an ACCEPT before it: {fix_open}",
                       peer=p.src, direction="inbound", where="receiver", rule=rule, **common)
    if p.proto == "tcp":
        if p.receiver_reply == "rst":
            if not b.swarm_active:
                return None  # explained by docker-down / not-in-swarm
            return Finding("port-closed", "error", p.dst, f"nothing listens on {what} on {p.dst}",
                           f"SYN arrived, {p.dst} answered with a TCP reset (no firewall rule counted it)",
                           f"check that dockerd on {p.dst} listens on {p.port} (`ss -ltn`)",
                           peer=p.src, direction="inbound", where="receiver", **common)
        if p.receiver_reply.startswith("icmp"):
            return Finding("port-rejected", "error", p.dst, f"{p.dst} rejects {what} from {p.src}",
                           f"SYN arrived, answered with {_icmp_text(p.receiver_reply)}",
                           f"remove the rejecting rule on {p.dst}", peer=p.src, direction="inbound",
                           where="receiver", **common)
        if not p.receiver_reply:
            return Finding("port-dropped", "error", p.dst, f"{p.dst} silently drops {what} from {p.src}",
                           "SYN arrived on the interface, no answer left the host (no iptables rule counted it: "
                           "nftables, rp_filter or a socket filter)",
                           f"check `nft list ruleset` on {p.dst}", peer=p.src, direction="inbound",
                           where="receiver", **common)
        if not p.reply_arrived:
            hits = _path_hits(ev, p, reply=True)
            rule = "; ".join(describe(h) for h in hits) or None
            return Finding("path-drop", "error", p.src,
                           f"the answer to {what} from {p.dst} never reaches {p.src}",
                           f"{p.receiver_reply} left {p.dst}, never seen on {p.src}'s interface"
                           + (f"; on the path: {counted(hits)}" if hits else ""),
                           f"open the return path from {p.dst_ip}:{p.port} to {p.src_ip}",
                           peer=p.dst, direction="inbound", where="path", rule=rule, **common)
        return None
    # UDP: arrival is the proof. An ICMP port unreachable with no rule means nothing listens.
    if p.receiver_reply.startswith("icmp") and b.swarm_active and p.port == 7946:
        return Finding("port-closed", "error", p.dst, f"nothing listens on {what} on {p.dst}",
                       f"datagram arrived, {p.dst} answered {_icmp_text(p.receiver_reply)} with no rule counting it",
                       f"check that dockerd on {p.dst} listens on UDP 7946 (`ss -lun`)",
                       peer=p.src, direction="inbound", where="receiver", **common)
    return None


# ---------------------------------------------------------------- root cause

PRIORITY = [
    "host-unreachable", "docker-down", "kernel-missing-vxlan", "advertise-addr-not-local",
    "advertise-addr-duplicate", "advertise-addr-wrong-interface", "port-dropped",
    "port-closed", "not-in-swarm", "mtu-too-small", "path-mtu-too-small", "mtu-mismatch",
    "subnet-overlap", "gossip-broken", "converging", "data-path-port",
    "kernel-missing-esp", "kernel-missing-ipvs", "probe-failed",
]


def _rank(f: Finding) -> tuple[int, int, int]:
    """Severity, then what breaks most: the host itself, then 2377 (joins), 7946 (gossip), the data path."""
    port_rank = {2377: 0, 7946: 1}.get(f.port or 0, 2) if f.code in ("port-dropped", "port-rejected", "path-drop") \
        else 0
    code = "port-dropped" if f.code in ("port-rejected", "path-drop") else f.code
    return SEVERITIES.index(f.severity), PRIORITY.index(code) if code in PRIORITY else 99, port_rank


def root_cause(findings: list[Finding]) -> str:
    """The most likely root cause, in plain language."""
    bad = [f for f in findings if f.severity in ("error", "warning")]
    if not bad:
        notes = [f for f in findings if f.severity == "info"]
        text = "No problem found: every host runs Docker in the swarm, every port the swarm needs arrives " \
               "where it should, in both directions."
        if notes:
            text += " Notes: " + " ".join(sorted({n.finding[0].upper() + n.finding[1:] + "." for n in notes}))
        return text
    top = min(bad, key=_rank)
    same = [f for f in bad if f.code == top.code]
    where = {"sender": "on the sending host's own firewall", "receiver": "on the receiving host's firewall",
             "path": "in the network between the hosts (not on either host)"}
    port = f"{(top.proto or '').upper()} {top.port}".strip()
    consequences = {
        2377: "workers cannot join or stay joined: `docker swarm join` times out",
        7946: "nodes cannot gossip: they may show Ready, but containers on other hosts are unknown "
              "(names do not resolve, pings fail)",
    }
    if top.code in ("port-dropped", "port-rejected", "path-drop"):
        effect = consequences.get(top.port or 0, "overlay traffic (VXLAN) between the hosts is lost: containers "
                                  "on different hosts cannot reach each other, though the nodes look Ready")
        pairs = sorted({f"{f.peer} -> {f.host}" if f.direction == "inbound" else f"{f.host} -> {f.peer}"
                        for f in same if f.port == top.port})
        verb = {"port-dropped": "dropped", "port-rejected": "rejected", "path-drop": "dropped"}[top.code]
        text = (f"Most likely cause: {port} is {verb} {where.get(top.where or '', '')} ({', '.join(pairs)}). "
                f"So {effect}. {_cap(top.fix)}.")
    elif top.code == "path-mtu-too-small":
        pairs = sorted({f"{f.peer} -> {f.host}" for f in same})
        text = (f"Most likely cause: the network between the hosts carries smaller packets than the interfaces "
                f"say, too small for VXLAN ({', '.join(pairs)}): {top.finding}. {_cap(top.fix)}.")
    elif top.code == "docker-down":
        text = (f"Most likely cause: Docker is not running on {top.host}, so it takes no part in the swarm. "
                f"{_cap(top.fix)}.")
    elif top.code == "not-in-swarm":
        text = (f"Most likely cause: {top.host} is not in the swarm (it left, or its join failed). "
                f"No port finding explains it. {_cap(top.fix)}.")
    else:
        text = f"Most likely cause on {top.host}: {top.finding}. {_cap(top.fix)}."
    others = sorted({f.code for f in bad if f.code != top.code})
    if others:
        text += f" Also found: {', '.join(others)}."
    return text


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def exit_code(findings: list[Finding]) -> int:
    return 1 if any(f.severity in ("error", "warning") for f in findings) else 0
