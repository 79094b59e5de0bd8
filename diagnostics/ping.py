"""`labctl diagnose ping SRC DST`: follow one container-to-container ping through the VXLAN underlay.

Both hosts capture their underlay (before their firewalls) while SRC pings DST;
the decoded VXLAN frames say where the echo died.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict, dataclass, field
from typing import Any

from labctl import facts, validate
from labctl.errors import LabError, UsageError
from labctl.spec import LabSpec
from labctl.ssh import Host, fan_out, split_results

from . import firewall
from .collect import data_port, read_host
from .evidence import HostFacts, RuleHit
from .firewall import describe
from .runner import WireJob, barrier, signal_file
from .target import Target


@dataclass
class ContainerEnd:
    container: str
    host: str
    host_ip: str
    networks: dict[str, dict[str, Any]]  # network id -> {name, ip, mac}


@dataclass
class PingTrace:
    src: ContainerEnd
    dst: ContainerEnd
    network: str = ""
    vni: int = 0
    data_port: int = 4789
    resolved: str = ""  # what SRC's resolver answered for DST's name ("" = no answer)
    peer_entry: str = ""  # the forwarding entry on SRC's host for DST's MAC ("" = none)
    ping_output: str = ""
    received: int = 0
    echo_encapsulated: int = 0  # on SRC's host, leaving
    echo_arrived: int = 0  # on DST's host, arriving
    reply_encapsulated: int = 0  # on DST's host, leaving
    reply_arrived: int = 0  # on SRC's host, arriving
    receiver_rules: list[str] = field(default_factory=list)
    sender_rules: list[str] = field(default_factory=list)
    verdict: str = ""  # ok, same-host, not-encapsulated, path, receiver-firewall, no-reply, reply-lost, sender-firewall
    where: str = ""
    root_cause: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _find(spec: LabSpec, hosts: dict[str, Host], name: str) -> ContainerEnd:
    def look(h: Host) -> dict[str, Any] | None:
        r = h.run(f"docker inspect --type container {shlex.quote(name)} "
                  "--format '{{.State.Running}} {{.Name}} {{json .NetworkSettings.Networks}}'", sudo=True,
                  timeout=20)
        if not r.ok:
            return None
        try:
            running, cname, nets = r.out.strip().split(" ", 2)
            networks = json.loads(nets or "{}")
            if not isinstance(networks, dict) or not all(isinstance(v, dict) for v in networks.values()):
                raise ValueError("networks are not objects")
            return {"name": validate.container(cname, reported_by=h.name), "nets": networks,
                    "running": running == "true"}
        except (ValueError, LabError):
            return {"malformed": f"{h.name}: `docker inspect {name}` printed {r.out.strip()[:120]!r}"}

    # a host that does not answer holds no container we can ping: the others are searched
    answers, _ = split_results(fan_out(list(hosts.values()), look))
    looked = {n: r for n, r in answers.items() if r is not None}
    bad = [r["malformed"] for r in looked.values() if "malformed" in r]
    if bad:
        raise LabError(bad[0], hint="the host's docker answered in an unexpected shape: nothing was run with it")
    found = looked
    if not found:
        raise UsageError(f"no container '{name}' on any host of lab '{spec.name}'",
                         hint="`labctl exec HOST -- docker ps` lists a host's containers")
    if len(found) > 1:
        raise UsageError(f"'{name}' names a container on several hosts ({', '.join(found)})",
                         hint="use the container's ID")
    host, info = next(iter(found.items()))
    if not info["running"]:
        raise LabError(f"container {info['name']} on {host} is not running",
                       hint=f"`labctl exec {host} -- docker start {info['name']}`")
    nets = {validate.network(v.get("NetworkID"), reported_by=host): {
        "name": validate.network(k, reported_by=host),
        "ip": validate.ipv4(v.get("IPAddress"), reported_by=host) if v.get("IPAddress") else "",
        "mac": validate.mac(v.get("MacAddress"), reported_by=host) if v.get("MacAddress") else ""}
            for k, v in info["nets"].items()}
    return ContainerEnd(info["name"], host, spec.host(host).ip, nets)


def trace(target: Target, src: str, dst: str, count: int = 3) -> PingTrace:
    spec, hosts = target.spec, target.hosts
    a, b = _find(spec, hosts, src), _find(spec, hosts, dst)
    common = [n for n in a.networks if n in b.networks]
    if not common:
        raise UsageError(f"{a.container} and {b.container} share no network",
                         hint="attach both to one attachable overlay network")
    t = PingTrace(src=a, dst=b)
    net = common[0]
    t.network = a.networks[net]["name"]
    dst_ip, dst_mac = b.networks[net]["ip"], b.networks[net]["mac"]
    if not dst_ip:
        raise LabError(f"{b.container} has no IPv4 address on {t.network}")
    sh, dh = hosts[a.host], hosts[b.host]
    peers = {a.host: b.host_ip, b.host: a.host_ip}
    manager = hosts[spec.manager.name]
    involved = list({h.name: h for h in (sh, dh, manager)}.values())

    def read(h: Host) -> HostFacts | int:
        if h.name in peers:
            return read_host(h, "", "", [peers[h.name]])
        return facts.read(h, facts.DataPathPort(), timeout=15)  # the manager knows the swarm's port

    got = fan_out(involved, read)
    both: dict[str, HostFacts] = {}
    for name, res in got.items():
        if isinstance(res, HostFacts):
            both[name] = res
        elif name not in peers:
            continue  # the port is looked for elsewhere
        elif isinstance(res, LabError):
            raise res
        else:
            raise LabError(f"{name}: the host's facts could not be read ({type(res).__name__}: {res})")
    manager_port = got.get(manager.name)
    if isinstance(manager_port, int) and manager_port:
        t.data_port = manager_port
    else:
        t.data_port = data_port(both)
    src_facts = both[a.host]
    for o in src_facts.overlays:
        if o["id"] == net and o.get("vnis"):
            t.vni = o["vnis"][0]
    # What the sender knows: the name, and a forwarding entry for DST's MAC.
    r = sh.run(f"docker exec {shlex.quote(a.container)} sh -c "
               + shlex.quote(f"getent hosts {shlex.quote(b.container)} 2>/dev/null || "
                             f"nslookup {shlex.quote(b.container)} 2>/dev/null"),
               sudo=True, timeout=15)
    t.resolved = dst_ip if dst_ip in r.out else ("" if not r.ok else r.out.strip()[-80:])
    ns = shlex.quote(f"/var/run/docker/netns/1-{net[:10]}")
    r = sh.run(f"nsenter --net={ns} bridge fdb show 2>/dev/null | grep -i {shlex.quote(dst_mac)} | grep dst",
               sudo=True, timeout=15)
    t.peer_entry = r.out.strip().splitlines()[0] if r.ok and r.out.strip() else ""
    if a.host == b.host:
        ping = facts.ContainerPing(a.container, dst_ip, count)
        r = sh.run(ping.command, sudo=True, timeout=ping.timeout)
        t.ping_output = r.out.strip()
        t.received = ping.parse(r).received or 0
        t.verdict, t.where = ("ok" if t.received else "same-host"), "sender"
        t.root_cause = "Both containers are on one host: no VXLAN is involved." + (
            "" if t.received else " The ping failed inside the host (bridge or container firewall).")
        return t
    jobs = []
    for host, ip in ((sh, a.host_ip), (dh, b.host_ip)):
        peer = b.host_ip if host is sh else a.host_ip
        dev = both[host.name].underlay()
        cfg = {"mode": "capture", "me": ip, "iface": dev or "eth1", "data_ports": [t.data_port],
               "filter": f"udp port {t.data_port} and host {peer}", "stream": False, "counters": True,
               "seconds": 20, "stop_file": signal_file("stop")}
        jobs.append(WireJob(host, cfg, timeout=40).start())
    with barrier(jobs, "stop_file", 8):
        ping = facts.ContainerPing(a.container, dst_ip, count, interval=0.2)
        r = sh.run(ping.command, sudo=True, timeout=ping.timeout)
        t.ping_output = r.out.strip() or r.err.strip()
        t.received = ping.parse(r).received or 0
    for j in jobs:
        if j.result is None:
            raise LabError(f"{j.host.name}: the capture failed: {j.error}")
    sent, recv = jobs[0].result or {}, jobs[1].result or {}
    a_ip, b_ip = a.networks[net]["ip"], dst_ip

    def icmp(pkts: list[dict[str, Any]], direction: str, typ: int, s: str, d: str) -> int:
        return sum(1 for k in pkts if k.get("dir") == direction and (k.get("inner") or {}).get("proto") == "icmp"
                   and k["inner"].get("type") == typ and k["inner"].get("src") == s and k["inner"].get("dst") == d)

    t.echo_encapsulated = icmp(sent["packets"], "out", 8, a_ip, b_ip)
    t.echo_arrived = icmp(recv["packets"], "in", 8, a_ip, b_ip)
    t.reply_encapsulated = icmp(recv["packets"], "out", 0, b_ip, a_ip)
    t.reply_arrived = icmp(sent["packets"], "in", 0, b_ip, a_ip)
    t.receiver_rules = [describe(h) for h in firewall.hits_from_saves(b.host, recv) if _udp_rule(h, t.data_port)]
    t.sender_rules = [describe(h) for h in firewall.hits_from_saves(a.host, sent) if _udp_rule(h, t.data_port)]
    judge(t)
    return t


def _udp_rule(h: RuleHit, port: int) -> bool:
    rule = h.rule
    return rule.startswith("-P ") or ("udp" in rule and str(port) in rule) or "-p" not in rule


def judge(t: PingTrace) -> None:
    """Where the ping died, from the counts on both hosts' underlays."""
    s, d, port = t.src.host, t.dst.host, t.data_port
    if t.received and t.reply_arrived:
        t.verdict, t.where = "ok", ""
        t.root_cause = (f"The ping works: {t.echo_encapsulated} echo(s) left {s} in VXLAN (VNI {t.vni}, "
                         f"network {t.network}), arrived on {d}, and the replies came back.")
    elif not t.echo_encapsulated:
        why = []
        if not t.peer_entry:
            why.append(f"{s} has no forwarding entry for {t.dst.container}'s MAC on {t.network}: the gossip "
                       f"(TCP+UDP 7946) between {s} and {d} is broken, so {s} never learnt where it lives")
        if not t.resolved:
            why.append(f"the name {t.dst.container} does not resolve in {t.src.container}")
        t.verdict, t.where = "not-encapsulated", "sender"
        t.root_cause = (f"The echo was never encapsulated on {s}: no VXLAN frame with it left {s}. "
                         + ("; ".join(why) + "." if why else f"Check the container's routes and {s}'s overlay."))
    elif not t.echo_arrived:
        t.verdict, t.where = "path", "path"
        t.root_cause = (f"The echo left {s} in VXLAN (UDP {port}) but never reached {d}'s interface: the network "
                         f"between the hosts drops UDP {port}. Open UDP {port} from {t.src.host_ip} to "
                         f"{t.dst.host_ip}.")
    elif not t.reply_encapsulated:
        if t.receiver_rules:
            t.verdict, t.where = "receiver-firewall", "receiver"
            t.root_cause = (f"The echo reached {d}'s interface, and {d}'s firewall dropped it: "
                             f"{'; '.join(t.receiver_rules)}. Allow UDP {port} from {t.src.host_ip}.")
        else:
            t.verdict, t.where = "no-reply", "receiver"
            t.root_cause = (f"The echo reached {d} but no reply was sent: {t.dst.container} did not answer "
                             "(its firewall, a wrong address or MTU), or the overlay on "
                             f"{d} did not deliver it.")
    elif not t.reply_arrived:
        t.verdict, t.where = "reply-lost", "path"
        t.root_cause = (f"{t.dst.container} replied, and the reply left {d} in VXLAN, but never reached {s}: "
                         f"UDP {port} from {t.dst.host_ip} to {t.src.host_ip} is dropped on the way back.")
    else:
        t.verdict, t.where = "sender-firewall", "sender"
        t.root_cause = (f"The reply reached {s}'s interface but not {t.src.container}: "
                         + ("; ".join(t.sender_rules) if t.sender_rules else f"{s}'s firewall or overlay") + ".")


def render(t: PingTrace) -> str:
    lines = [
        f"ping {t.src.container} ({t.src.host}) -> {t.dst.container} ({t.dst.host}) on {t.network}"
        f" (VNI {t.vni}, UDP {t.data_port})",
        f"  name resolution on {t.src.container}: {t.resolved or 'no answer'}",
        f"  forwarding entry on {t.src.host}: {t.peer_entry or 'none'}",
        f"  echo  left {t.src.host}: {t.echo_encapsulated}  arrived {t.dst.host}: {t.echo_arrived}",
        f"  reply left {t.dst.host}: {t.reply_encapsulated}  arrived {t.src.host}: {t.reply_arrived}",
        f"  ping received {t.received} replies",
        f"verdict: {t.verdict}" + (f" (where: {t.where})" if t.where else ""),
        t.root_cause,
    ]
    return "\n".join(lines)
