"""Rules: evidence in, findings out. Pure functions, tested with recorded evidence."""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass, field
from typing import Any

from labctl.facts.dataplane import unreached

from . import verdict
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
    loss: float | None = None  # lossy: the share of packets lost there (0.5 = half)
    icmp: dict[str, Any] | None = None  # a rejection's ICMP error: from (its source address), type, code, meaning
    fix_parts: verdict.Fix | None = field(default=None, compare=False, repr=False)  # `fix` as commands

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None and k != "fix_parts"}


def _fix(d: verdict.Decision) -> dict[str, Any]:
    """A decision's fix as a finding's fields: the sentence, and its commands when it has them."""
    return {"fix": str(d.fix), "fix_parts": d.fix if isinstance(d.fix, verdict.Fix) else None}


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
    findings = _explained_by_addresses(findings)
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
    if not h.reachable and h.answered:
        return [Finding("host-unreadable", "error", h.name, "the host answers SSH, but its state could not be read",
                        h.error, "`labctl exec HOST -- sudo -n true` checks that labctl may use sudo without a "
                        "password; output that login scripts print on a command's channel also spoils it")]
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
        # The host that has the address is right; the others took it. Unknown: each is named.
        owners = [n for n in names if addr in ev.hosts[n].local_addrs()]
        wrong = [n for n in names if n not in owners] if owners else names
        for name in wrong:
            others = [o for o in names if o != name]
            said = (f"{name} advertises {addr}, the address of {owners[0]}" if owners else
                    f"{name} and {', '.join(others)} advertise the same address {addr}")
            out.append(Finding("advertise-addr-duplicate", "error", name, said,
                               f"docker info / docker node inspect: {', '.join(names)} -> {addr}",
                               f"re-join {name} with its own --advertise-addr ({ev.hosts[name].ip})",
                               peer=owners[0] if owners else others[0]))
    return out


def _explained_by_addresses(findings: list[Finding]) -> list[Finding]:
    """A host advertising another's address (or none of its own) breaks gossip with it: the
    address is the cause, told once; the gaps and the bare not-local follow from it."""
    involved = {n for f in findings if f.code.startswith("advertise-addr-") for n in (f.host, f.peer) if n}
    duplicated = {f.host for f in findings if f.code == "advertise-addr-duplicate"}
    return [f for f in findings
            if not (f.code == "gossip-broken" and (f.host in involved or f.peer in involved))
            and not (f.code == "advertise-addr-not-local" and f.host in duplicated)]


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

# Chains a probe does not cross on the host that sends it.
_NOT_ON_SENDER = ("INPUT", "PREROUTING", "FORWARD")


def _hits_for(ev: Evidence, host: str, probe: Probe, reply: bool = False,
              skip: tuple[str, ...] = ()) -> list[RuleHit]:
    return [r for r in ev.rule_hits if r.host == host and r.chain not in skip and matches(r.rule, probe, reply)]


def _path_hits(ev: Evidence, probe: Probe, reply: bool = False) -> list[RuleHit]:
    return [r for r in ev.path_rule_hits if matches(r.rule, probe, reply) and not r.rule.startswith("-P ")]


ICMP_CODES = {0: "net unreachable", 1: "host unreachable", 2: "protocol unreachable", 3: "port unreachable",
              4: "fragmentation needed", 6: "destination network unknown", 7: "destination host unknown",
              9: "net prohibited", 10: "host prohibited", 13: "administratively prohibited"}


def _icmp_parts(kind: str) -> tuple[int, int, str] | None:
    """'icmp-3/13' or 'icmp-3/13 from 192.168.60.1' as (type, code, source)."""
    try:
        head, _, source = kind.partition(" from ")
        t, c = head.split("-", 1)[1].split("/")
        return int(t), int(c), source
    except (IndexError, ValueError):
        return None


def _icmp_text(kind: str) -> str:
    parts = _icmp_parts(kind)
    if parts is None:
        return kind
    t, c, _ = parts
    return f"ICMP type {t} code {c} ({ICMP_CODES.get(c, 'unreachable') if t == 3 else 'error'})"


def _icmp_json(kind: str, source: str) -> dict[str, Any] | None:
    parts = _icmp_parts(kind)
    if parts is None:
        return None
    t, c, said = parts
    return {"from": said or source, "type": t, "code": c,
            "meaning": ICMP_CODES.get(c, "unreachable") if t == 3 else "error"}


def _share(part: int, whole: int, what: str = "copies") -> str:
    return f"{part} of {whole} {what} ({round(100 * part / whole)}%)" if whole else f"{part} {what}"


def probe_groups(ev: Evidence) -> list[dict[str, Any]]:
    """Each probe group's counts and loss. A UDP datagram that arrived but that a rule on the receiver
    dropped is lost too: nothing answers UDP, so only the trace (or a counter) tells."""
    out = []
    for p in ev.probes:
        group = p.summary()
        b = ev.hosts.get(p.dst)
        if p.proto == "udp" and group["loss"] is not None and b is not None:
            decided = verdict.receiver(ev, p, b.underlay())
            stopped = 0 if decided is None or not decided.certain else \
                (decided.stopped if decided.stopped is not None else p.received)
            group["loss"] = round(1 - (p.received - min(p.received, stopped)) / p.copies, 3)
        out.append(group)
    return out


def probe_findings(ev: Evidence) -> list[Finding]:
    out = []
    for p in ev.probes:
        out += classify(p, ev)
    return out


def classify(p: Probe, ev: Evidence) -> list[Finding]:
    """Where a probe group's packets died, all of them (a cut) or some (a loss), if they did."""
    a, b = ev.hosts.get(p.src), ev.hosts.get(p.dst)
    if a is None or b is None or p.left_sender is None:
        return []
    common: dict[str, Any] = {"port": p.port, "proto": p.proto}
    what = f"{p.label} ({p.purpose})"
    n = p.copies  # 0: evidence recorded before copies were counted (no loss can be told)
    out: list[Finding] = []
    # 1. the sender's own firewall (OUTPUT): every copy refused, or some
    d = verdict.sender(ev, p)
    rule = d.rule if d is not None else None
    refused = (f"; its kernel refused {_share(p.send_failed, n) if n else 'it'}"
               f"{' with ' + p.send_error if p.send_error else ''} (the host's own firewall, OUTPUT)"
               if p.send_error else "")
    because = f"; {d.evidence}" if d is not None else ""
    if not p.left_sender and d is None and not p.send_error:
        # its kernel took every copy (a firewall on the way out refuses with EPERM), yet neither
        # capture saw one: not evidence enough to blame anything
        return [Finding("probe-failed", "warning", p.src, f"{what} from {p.src} to {p.dst} was seen by neither capture",
                        f"{p.src}'s kernel sent {'every copy' if n else 'it'} without an error, yet {p.src}'s capture "
                        f"did not see it leave and {p.dst}'s did not see it arrive",
                        f"run `labctl diagnose` again; if this stays, look for a traffic-control (tc) drop on {p.src}",
                        peer=p.dst, direction="outbound", where="sender", **common)]
    if not p.left_sender:
        fix = _fix(d) if d is not None else {"fix": f"allow {p.proto.upper()} {p.port} out of {p.src} to {p.dst} "
                                                    f"({p.dst_ip})"}
        return [Finding("port-rejected" if d is not None and d.reject else "port-dropped", "error", p.src,
                        f"{p.src} cannot send {what} to {p.dst}: its own firewall stops it",
                        f"not seen leaving {p.src}'s interface{refused}{because}",
                        peer=p.dst, direction="outbound", where="sender", rule=rule, **fix, **common)]
    if n and p.left < n and (p.send_failed or not ev.capture_drops.get(p.src)):
        lost = n - p.left
        out.append(Finding("lossy", "warning", p.src,
                           f"{p.src} sends only part of {what} to {p.dst}: {round(100 * lost / n)}% never leaves",
                           f"{_share(p.left, n)} seen leaving {p.src}'s interface{refused}{because}",
                           f"remove or correct the rule on {p.src}" if rule else
                           f"look for a rate limit or a random match in {p.src}'s OUTPUT rules",
                           peer=p.dst, direction="outbound", where="sender", rule=rule, loss=round(lost / n, 3),
                           **common))
    # 2. the path: left, never arrived (or only some did)
    if p.arrived is False:
        return [*out, _path_stop(p, ev, what, common)]
    if p.arrived is None:
        return out
    if n and p.received < p.left and not ev.capture_drops.get(p.dst):
        lost = p.left - p.received
        hits = _path_hits(ev, p)
        rule = "; ".join(describe(h) for h in hits) or None
        icmp = (f"; {p.third_party_icmp.split(' from ')[-1]} answered {p.path_icmp} of them with "
                f"{_icmp_text(p.third_party_icmp)}" if p.third_party_icmp else "")
        out.append(Finding("lossy", "warning", p.dst,
                           f"{what} from {p.src} to {p.dst} loses {round(100 * lost / p.left)}% of its packets "
                           "between the hosts",
                           f"{p.left} copies left {p.src}, {_share(p.received, p.left, 'arrived')} on {p.dst}'s "
                           f"interface{icmp}" + (f"; on the path: {counted(hits)}" if hits else ""),
                           ("remove or correct the rule on the path: " + rule) if rule else
                           f"find the lossy link, or the rate limit, between {p.src_ip} and {p.dst_ip}",
                           peer=p.src, direction="inbound", where="path", rule=rule, loss=round(lost / p.left, 3),
                           icmp=_icmp_json(p.third_party_icmp, "") if p.third_party_icmp else None, **common))
    # 3. arrived: did the receiver's firewall stop it (all, or some)? and did the answers get back?
    return out + _receiver(p, ev, b, what, common)


def _path_stop(p: Probe, ev: Evidence, what: str, common: dict[str, Any]) -> Finding:
    """No copy arrived: dropped on the path, or rejected there (an ICMP error from a third address)."""
    hits = _path_hits(ev, p)
    rule = "; ".join(describe(h) for h in hits) or None
    on_path = f"; on the path: {counted(hits)}" if hits else ""
    left = f" ({p.left} of {p.copies} copies)" if p.copies else ""
    if p.third_party_icmp:
        icmp = _icmp_json(p.third_party_icmp, "") or {}
        by = icmp.get("from", "?")
        answered = f" {p.path_icmp} of the {p.left} copies" if p.copies else " it"
        return Finding("port-rejected", "error", p.dst,
                       f"{what} from {p.src} to {p.dst} is rejected on the path, by {by}",
                       f"seen leaving {p.src}{left}, never seen on {p.dst}'s interface; {by} answered{answered} "
                       f"with {_icmp_text(p.third_party_icmp)}"
                       + (" (ICMP errors are rate-limited)" if p.path_icmp < p.left else "")
                       + on_path,
                       ("remove the rule on the path: " + rule) if rule else
                       f"open {p.proto.upper()} {p.port} from {p.src_ip} to {p.dst_ip} on {by} (the firewall or "
                       "router that answers in the name of the path)",
                       peer=p.src, direction="inbound", where="path", rule=rule, icmp=icmp or None, **common)
    return Finding("path-drop", "error", p.dst,
                   f"{what} from {p.src} never reaches {p.dst}: something between the hosts drops it",
                   f"seen leaving {p.src}{left}, never seen on {p.dst}'s interface" + on_path,
                   ("remove the rule on the path: " + rule) if rule else
                   f"open {p.proto.upper()} {p.port} from {p.src_ip} to {p.dst_ip} in the network between "
                   "them (cloud security group, host bridge firewall, switch ACL)",
                   peer=p.src, direction="inbound", where="path", rule=rule, **common)


def _receiver(p: Probe, ev: Evidence, b: HostFacts, what: str, common: dict[str, Any]) -> list[Finding]:
    n = p.copies
    got = f"{p.received} of {n} copies arrived on {p.dst}'s interface" if n else f"arrived on {p.dst}'s interface"
    answer_icmp = _icmp_json(p.receiver_reply, p.dst_ip) if p.receiver_reply.startswith("icmp") else None
    decided = verdict.receiver(ev, p, b.underlay())
    if decided is not None:
        return _receiver_decided(p, ev, decided, what, got, answer_icmp, common)
    if p.proto == "tcp":
        if p.receiver_reply == "rst":
            if not b.swarm_active:
                return []  # explained by docker-down / not-in-swarm
            return [Finding("port-closed", "error", p.dst, f"nothing listens on {what} on {p.dst}",
                            f"SYN arrived, {p.dst} answered with a TCP reset (no firewall rule counted it)",
                            f"check that dockerd on {p.dst} listens on {p.port} (`ss -ltn`)",
                            peer=p.src, direction="inbound", where="receiver", **common)]
        if answer_icmp:
            return [Finding("port-rejected", "error", p.dst, f"{p.dst} rejects {what} from {p.src}",
                            f"SYN arrived, answered with {_icmp_text(p.receiver_reply)}",
                            f"remove the rejecting rule on {p.dst}", peer=p.src, direction="inbound",
                            where="receiver", icmp=answer_icmp, **common)]
        if not p.receiver_reply:
            own = _hits_for(ev, p.dst, p, reply=True, skip=_NOT_ON_SENDER)  # its OUTPUT stops the answer
            if own:
                reject = any(h.target == "REJECT" for h in own)
                return [Finding("port-rejected" if reject else "port-dropped", "error", p.dst,
                                f"{p.dst} cannot answer {what} from {p.src}: its own firewall stops the answer",
                                f"{got}, no answer seen leaving; {counted(own)}", f"remove the rule on {p.dst}",
                                peer=p.src, direction="outbound", where="sender",
                                rule="; ".join(describe(h) for h in own), **common)]
            return [Finding("port-dropped", "error", p.dst, f"{p.dst} silently drops {what} from {p.src}",
                            "SYN arrived on the interface, no answer left the host (no iptables rule counted it: "
                            "nftables, rp_filter or a socket filter)",
                            f"check `nft list ruleset` on {p.dst}", peer=p.src, direction="inbound",
                            where="receiver", **common)]
        out = []
        if n and p.answered < p.received and not ev.capture_drops.get(p.dst):
            out.append(_receiver_lossy(p, what, f"{got}, {_share(p.answered, p.received, 'answered')} (no iptables "
                                       "rule counted the others: nftables, a rate limit, or a full SYN queue)",
                                       f"check `nft list ruleset` and the listener's backlog on {p.dst}", None,
                                       p.received - p.answered, common))
        return out + _return_path(p, ev, what, common)
    # UDP: arrival is the proof. An ICMP port unreachable with no rule means nothing listens.
    if answer_icmp and b.swarm_active and p.port == 7946:
        return [Finding("port-closed", "error", p.dst, f"nothing listens on {what} on {p.dst}",
                        f"datagram arrived, {p.dst} answered {_icmp_text(p.receiver_reply)} with no rule counting it",
                        f"check that dockerd on {p.dst} listens on UDP 7946 (`ss -lun`)",
                        peer=p.src, direction="inbound", where="receiver", **common)]
    return []


def _receiver_lossy(p: Probe, what: str, evidence: str, fix: str, rule: str | None, lost: int,
                    common: dict[str, Any]) -> Finding:
    share = lost / p.received if p.received else 0.0
    return Finding("lossy", "warning", p.dst,
                   f"{p.dst} drops {round(100 * share)}% of {what} from {p.src}", evidence, fix,
                   peer=p.src, direction="inbound", where="receiver", rule=rule, loss=round(share, 3), **common)


def _return_path(p: Probe, ev: Evidence, what: str, common: dict[str, Any]) -> list[Finding]:
    """TCP: the receiver answered; did its answers get back to the sender (all, some, none)?"""
    hits = _path_hits(ev, p, reply=True)
    rule = "; ".join(describe(h) for h in hits) or None
    on_path = f"; on the path: {counted(hits)}" if hits else ""
    if not p.reply_arrived:
        return [Finding("path-drop", "error", p.src,
                        f"the answer to {what} from {p.dst} never reaches {p.src}",
                        f"{p.receiver_reply} left {p.dst}, never seen on {p.src}'s interface" + on_path,
                        f"open the return path from {p.dst_ip}:{p.port} to {p.src_ip}",
                        peer=p.dst, direction="inbound", where="path", rule=rule, **common)]
    if p.copies and p.answers_back < p.answered and not ev.capture_drops.get(p.src):
        lost = p.answered - p.answers_back
        return [Finding("lossy", "warning", p.src,
                        f"{round(100 * lost / p.answered)}% of the answers to {what} from {p.dst} never reach "
                        f"{p.src}",
                        f"{p.answered} answers left {p.dst}, {_share(p.answers_back, p.answered, 'arrived')} on "
                        f"{p.src}'s interface" + on_path,
                        ("remove or correct the rule on the path: " + rule) if rule else
                        f"find the lossy link, or the rate limit, between {p.dst_ip} and {p.src_ip}",
                        peer=p.dst, direction="inbound", where="path", rule=rule,
                        loss=round(lost / p.answered, 3), **common)]
    return []


def _receiver_decided(p: Probe, ev: Evidence, d: verdict.Decision, what: str, got: str,
                      answer_icmp: dict[str, Any] | None, common: dict[str, Any]) -> list[Finding]:
    """A firewall on the receiver stopped the probe's copies: all of them, some (a loss), or maybe."""
    where: dict[str, Any] = {"peer": p.src, "direction": "inbound", "where": "receiver", "rule": d.rule,
                             **common, **_fix(d)}
    if not d.certain:
        return [Finding("port-dropped", "warning", p.dst, f"{p.dst}'s firewall may drop {what} from {p.src}",
                        f"{got}; {d.evidence}", **where)]
    if p.copies and d.stopped is not None and 0 < d.stopped < p.received:
        share = d.stopped / p.received
        lossy = Finding("lossy", "warning", p.dst, f"{p.dst} drops {round(100 * share)}% of {what} from {p.src}",
                        f"{got}, " + (_share(p.answered, p.received, "answered") if p.proto == "tcp" else
                                      f"{d.stopped} stopped by its firewall") + f"; {d.evidence}",
                        loss=round(share, 3), **{**where, "fix": f"remove or correct the rule on {p.dst}",
                                                 "fix_parts": None})
        return [lossy, *(_return_path(p, ev, what, common) if p.proto == "tcp" and p.answered else [])]
    if d.reject:
        how = _icmp_text(p.receiver_reply) if answer_icmp else \
            ("a TCP reset" if p.receiver_reply == "rst" else p.receiver_reply or "nothing")
        return [Finding("port-rejected", "error", p.dst, f"{p.dst} rejects {what} from {p.src}",
                        f"{got}, answered with {how}; {d.evidence}", icmp=answer_icmp, **where)]
    return [Finding("port-dropped", "error", p.dst, f"{p.dst}'s firewall drops {what} from {p.src}",
                    f"{got}, no answer; {d.evidence}", **where)]


# ---------------------------------------------------------------- root cause

PRIORITY = [
    "host-unreachable", "host-unreadable", "docker-down", "kernel-missing-vxlan", "advertise-addr-not-local",
    "advertise-addr-duplicate", "advertise-addr-wrong-interface", "port-dropped",
    "port-closed", "not-in-swarm", "lossy", "mtu-too-small", "path-mtu-too-small", "mtu-mismatch",
    "subnet-overlap", "gossip-broken", "converging", "data-path-port",
    "kernel-missing-esp", "kernel-missing-ipvs", "probe-failed",
]


def _rank(f: Finding) -> tuple[int, int, int]:
    """Severity, then what breaks most: the host itself, then 2377 (joins), 7946 (gossip), the data path."""
    port_rank = {2377: 0, 7946: 1}.get(f.port or 0, 2) \
        if f.code in ("port-dropped", "port-rejected", "path-drop", "lossy") else 0
    code = "port-dropped" if f.code in ("port-rejected", "path-drop") else f.code
    return SEVERITIES.index(f.severity), PRIORITY.index(code) if code in PRIORITY else 99, port_rank


PORT_CODES = ("port-dropped", "port-rejected", "path-drop", "lossy", "port-closed")
WHERE = {"sender": "on the sending host's own firewall", "receiver": "on the receiving host's firewall",
         "path": "in the network between the hosts (not on either host)"}
CONSEQUENCES = {
    2377: "workers cannot join or stay joined: `docker swarm join` times out",
    7946: "nodes cannot gossip: they may show Ready, but containers on other hosts are unknown "
          "(names do not resolve, pings fail)",
}
OTHERS_SAID = 3  # other causes named in the summary; the findings table has them all


def causes(bad: list[Finding]) -> list[list[Finding]]:
    """The findings grouped by what caused them, most serious first: one firewall rule (whatever
    ports it stops), or else one kind of fault of one port on one host; other findings by code."""
    groups: dict[tuple[Any, ...], list[Finding]] = {}
    for f in sorted(bad, key=_rank):
        if f.code in PORT_CODES:
            key: tuple[Any, ...] = ("rule", f.rule) if f.rule else (f.code, f.host, f.port, f.proto, f.where,
                                                                   f.direction)
        else:
            key = (f.code,)
        groups.setdefault(key, []).append(f)
    # of causes equally serious, the one that cuts more pairs of hosts first
    return sorted(groups.values(), key=lambda g: (_rank(g[0]), -len({(f.host, f.peer) for f in g})))


def _pairs(found: list[Finding]) -> str:
    return ", ".join(sorted({f"{f.peer} -> {f.host}" if f.direction == "inbound" else f"{f.host} -> {f.peer}"
                             for f in found}))


def root_cause(findings: list[Finding]) -> str:
    """The most likely root cause, in plain language; other causes of port findings follow, each
    with its fix, and the codes of the other findings."""
    bad = [f for f in findings if f.severity in ("error", "warning")]
    if not bad:
        notes = [f for f in findings if f.severity == "info"]
        text = "No problem found: every host runs Docker in the swarm, every port the swarm needs arrives " \
               "where it should, in both directions."
        if notes:
            text += " Notes: " + " ".join(sorted({n.finding[0].upper() + n.finding[1:] + "." for n in notes}))
        return text
    first, *rest = causes(bad)
    text = _explain(first, bad)
    more = [c for c in rest if c[0].code in PORT_CODES]
    if more:
        said = "; ".join(_brief(c) for c in more[:OTHERS_SAID])
        if len(more) > OTHERS_SAID:
            said += f"; and {len(more) - OTHERS_SAID} more (see the findings)"
        text += f" {'Another cause' if len(more) == 1 else 'Other causes'}, each with its own fix: {said}."
    others = sorted({c[0].code for c in rest if c[0].code not in PORT_CODES} - {first[0].code})
    if others:
        text += f" Also found: {', '.join(others)}."
    return text


def _explain(cause: list[Finding], bad: list[Finding]) -> str:
    top = cause[0]
    same = [f for f in bad if f.code == top.code]
    port = f"{(top.proto or '').upper()} {top.port}".strip()
    if top.rule and len({(f.port, f.proto) for f in cause}) > 1:
        return _one_rule(top, cause)
    if top.code in ("port-dropped", "port-rejected", "path-drop"):
        effect = CONSEQUENCES.get(top.port or 0, VXLAN_LOST)
        return (f"Most likely cause: {port} is {_verb(top)} {WHERE.get(top.where or '', '')} ({_pairs(cause)}). "
                f"So {effect}. {_cap(top.fix)}.")
    if top.code == "path-mtu-too-small":
        pairs = sorted({f"{f.peer} -> {f.host}" for f in same})
        return (f"Most likely cause: the network between the hosts carries smaller packets than the interfaces "
                f"say, too small for VXLAN ({', '.join(pairs)}): {top.finding}. {_cap(top.fix)}.")
    if top.code == "lossy":
        effect = {2377: "joins and the workers' sessions with the manager time out now and then",
                  7946: "gossip misses beats: nodes may flap between Ready and Down, names resolve late"}.get(
            top.port or 0, "containers on different hosts lose packets: their connections stall and retransmit")
        return (f"Most likely cause: {port} loses {round(100 * (top.loss or 0))}% of its packets "
                f"{WHERE.get(top.where or '', '')} ({_pairs(cause)}), without being cut. So {effect}. "
                f"{_cap(top.fix)}.")
    if top.code == "docker-down":
        return (f"Most likely cause: Docker is not running on {top.host}, so it takes no part in the swarm. "
                f"{_cap(top.fix)}.")
    if top.code == "not-in-swarm":
        return (f"Most likely cause: {top.host} is not in the swarm (it left, or its join failed). "
                f"No port finding explains it. {_cap(top.fix)}.")
    return f"Most likely cause on {top.host}: {top.finding}. {_cap(top.fix)}."


def _verb(f: Finding) -> str:
    verb = {"port-rejected": "rejected", "lossy": f"losing {round(100 * (f.loss or 0))}% of its packets"}.get(
        f.code, "dropped")
    if f.icmp and f.where == "path":
        verb += f" by {f.icmp['from']} (ICMP type {f.icmp['type']} code {f.icmp['code']}, {f.icmp['meaning']})"
    return verb


def _brief(cause: list[Finding]) -> str:
    """Another cause in one clause: what it stops, where, between which hosts, and its fix."""
    top = cause[0]
    ports = sorted({(f.port or 0, (f.proto or "").upper()) for f in cause})
    if len(ports) > 1:
        named = [f"{proto} {port}" for port, proto in ports]
        return (f"{', '.join(named[:-1])} and {named[-1]} stopped by one rule ({top.rule}) ({_pairs(cause)}); "
                f"fix: {_one_fix(top.host, cause)}")
    port = f"{(top.proto or '').upper()} {top.port}"
    if top.code == "port-closed":
        return f"nothing listens on {port} on {top.host} ({_pairs(cause)}); fix: {top.fix}"
    return f"{port} {_verb(top)} {WHERE.get(top.where or '', '')} ({_pairs(cause)}); fix: {top.fix}"


VXLAN_LOST = ("overlay traffic (VXLAN) between the hosts is lost: containers on different hosts cannot reach "
              "each other, though the nodes look Ready")


def _one_rule(top: Finding, shared: list[Finding]) -> str:
    """One firewall rule behind several ports' findings: named once, with every fix it takes."""
    ports = sorted({(f.port or 0, (f.proto or "").upper()) for f in shared})
    named = [f"{proto} {port}" for port, proto in ports]
    said = ", ".join(named[:-1]) + " and " + named[-1]
    pairs = sorted({f"{f.peer} -> {f.host}" if f.direction == "inbound" else f"{f.host} -> {f.peer}"
                    for f in shared})
    place = {"sender": f"{top.host}'s own firewall", "receiver": f"{top.host}'s firewall"}.get(
        top.where or "", "the network between the hosts")
    effects = sorted({CONSEQUENCES.get(port, VXLAN_LOST) for port, _ in ports})
    return (f"Most likely cause: one rule in {place} stops {said} ({', '.join(pairs)}): {top.rule}. "
            f"So {'; and '.join(effects)}. Fix: {_one_fix(top.host, shared)}.")


def _one_fix(host: str, shared: list[Finding]) -> str:
    """The fixes of findings that one rule caused, said once: remove the rule, or let each port through."""
    ordered = sorted(shared, key=lambda f: (f.port or 0, f.proto or ""))
    parts = [f.fix_parts for f in ordered if f.fix_parts is not None]
    if len(parts) < len(ordered):  # some fix is advice, not a command: each is said as it is
        return "; ".join(dict.fromkeys(f.fix for f in ordered))
    said = "; ".join(dict.fromkeys(f"`{x.let_through}`" for x in parts))
    removals = {x.remove for x in parts if x.remove}
    keep = "".join(dict.fromkeys(f"; {x.keep}" for x in parts if x.keep))
    if len(removals) == 1:
        return f"on {host}: remove the rule, `{removals.pop()}`; or let each port through ahead of it: {said}{keep}"
    return f"on {host}: {said}{keep}"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def exit_code(findings: list[Finding]) -> int:
    return 1 if any(f.severity in ("error", "warning") for f in findings) else 0
