"""The drills: each a hidden fault, made the way people meet it (a rule written by hand, a
firewall tool set up as its users set it up, a host that left), the symptom it shows, and hints
from vague to specific. Names and symptoms never tell the cause."""

from __future__ import annotations

import base64
import ipaddress
import random
import shlex
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import faults
from ..errors import LabError, UsageError
from ..lab import Lab
from ..runner import run_local
from . import workload

DATA = 4789
GUARD = ["-p", "tcp", "--dport", "3306", "-j", "DROP"]  # the host's own policy: its database port stays shut
GUARD_OUT = ["-p", "tcp", "--dport", "25", "-j", "REJECT"]  # and it sends no mail
LOSS = ["-p", "udp", "--dport", str(DATA), "-m", "statistic", "--mode", "random", "--probability", "0.5",
        "-j", "DROP"]

# ufw keeps its settings in /etc (saved before, put back after) and, once disabled, leaves its
# chains and the jumps to them in iptables, and the ip6 filter table it made: removed, so the
# host is as it was.
UFW_SAVE = ("rm -rf /run/labctl-ufw && mkdir -p /run/labctl-ufw/default && "
            "cp -a /etc/ufw /run/labctl-ufw/ && cp -a /etc/default/ufw /run/labctl-ufw/default/ && "
            "{ nft list tables 2>/dev/null | grep -qx 'table ip6 filter' && "
            "touch /run/labctl-ufw/had-ip6-filter; true; }")
UFW_RESTORE = """
[ -d /run/labctl-ufw ] || exit 0
ufw --force disable >/dev/null
rm -rf /etc/ufw && cp -a /run/labctl-ufw/ufw /etc/ufw && cp -a /run/labctl-ufw/default/ufw /etc/default/ufw
for t in iptables ip6tables; do
  for c in INPUT FORWARD OUTPUT; do
    $t -S $c | grep -e "-j ufw" | sed "s/^-A /-D /" | while read -r rule; do $t $rule; done
  done
  chains=$($t -S | sed -n "s/^-N \\(ufw6\\{0,1\\}-.*\\)$/\\1/p")
  for c in $chains; do $t -F $c; done
  for c in $chains; do $t -X $c; done
done
if [ ! -e /run/labctl-ufw/had-ip6-filter ] && ! ip6tables -S 2>/dev/null | grep -q '^-[AN] '; then
  nft delete table ip6 filter 2>/dev/null || true
fi
rm -rf /run/labctl-ufw
"""

# firewalld, started where dockerd already runs, flushes Docker's iptables rules: they are saved
# before and put back after, as restarting dockerd (what Docker's docs say to do) would; its
# settings in /etc are put back when it stops.
FIREWALLD_START = """
rm -rf /run/labctl-firewalld && mkdir -p /run/labctl-firewalld
iptables-nft-save > /run/labctl-firewalld/v4 && ip6tables-nft-save > /run/labctl-firewalld/v6
cp -a /etc/firewalld /run/labctl-firewalld/etc
if [ -d /run/systemd/system ]; then
  systemctl start firewalld
else
  mkdir -p /run/dbus
  if ! { [ -e /run/dbus/pid ] && kill -0 "$(cat /run/dbus/pid)" 2>/dev/null; }; then
    rm -f /run/dbus/pid && dbus-daemon --system --fork && touch /run/labctl-firewalld/started-dbus
  fi
  firewalld
fi
for i in $(seq 120); do firewall-cmd --state >/dev/null 2>&1 && break; sleep 0.25; done
firewall-cmd --state >/dev/null
iptables-nft-restore < /run/labctl-firewalld/v4 && ip6tables-nft-restore < /run/labctl-firewalld/v6
"""
FIREWALLD_STOP = """
[ -d /run/labctl-firewalld ] || exit 0
if [ -d /run/systemd/system ]; then
  systemctl stop firewalld
else
  pid=$(cat /run/firewalld.pid 2>/dev/null || pgrep -f /usr/sbin/firewalld || true)
  [ -z "$pid" ] || kill $pid 2>/dev/null || true
  for i in $(seq 80); do pgrep -f /usr/sbin/firewalld >/dev/null || break; sleep 0.25; done
  if [ -e /run/labctl-firewalld/started-dbus ]; then
    kill "$(cat /run/dbus/pid)" 2>/dev/null || true; rm -f /run/dbus/pid
  fi
fi
if pgrep -f /usr/sbin/firewalld >/dev/null; then echo "firewalld does not stop" >&2; exit 1; fi
nft delete table inet firewalld 2>/dev/null || true
rm -rf /etc/firewalld && cp -a /run/labctl-firewalld/etc /etc/firewalld
iptables-nft-restore < /run/labctl-firewalld/v4 && ip6tables-nft-restore < /run/labctl-firewalld/v6
rm -rf /run/labctl-firewalld
"""


@dataclass
class Made:
    """What a drill did to the lab, in the order it was done: each part can be undone."""

    parts: list[dict[str, Any]] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)  # for hints and the answer
    answer: list[str] = field(default_factory=list)  # what the fault was, in plain words
    expect: list[list[Any]] = field(default_factory=list)  # diagnose's errors: [code, host, port]
    # The firewall lines the faults themselves added (not the scaffolding around them, such as a
    # host's own policy): removing those is the fix, removing anything else opens too much.
    fault_lines: dict[str, list[str]] = field(default_factory=dict)
    read_rules: Callable[[], dict[str, list[str]]] | None = None

    @contextmanager
    def fault(self) -> Iterator[None]:
        before = self.read_rules() if self.read_rules else {}
        yield
        after = self.read_rules() if self.read_rules else {}
        for host, lines in after.items():
            new = sorted(set(lines) - set(before.get(host, [])))
            if new:
                self.fault_lines[host] = sorted(set(self.fault_lines.get(host, [])) | set(new))


@dataclass(frozen=True)
class Drill:
    name: str
    level: int
    symptom: str
    make: Callable[[Lab, random.Random, Made], None]
    hints: tuple[str, ...]
    needs_local_bridge: bool = False
    one_of: tuple[str, ...] = ()  # a drill of two faults: drawn from these


def _sh(lab: Lab, host: str, cmd: str) -> str:
    res = lab.host(host).run(cmd, sudo=True, timeout=60)
    if not res.ok:
        raise LabError(f"{host}: `{cmd[:80]}` failed: {res.tail(2)}")
    return res.out


def _script(lab: Lab, host: str, text: str) -> str:
    return _sh(lab, host, f"echo {base64.b64encode(text.encode()).decode()} | base64 -d | sh -e")


def _fault(lab: Lab, made: Made, host: str, kind: str, **kw: Any) -> faults.Fault:
    fault = faults.apply(lab, host, kind, comment=None, **kw)
    made.parts.append({"kind": "fault", "fault": asdict(fault)})
    return fault


def _rule(lab: Lab, made: Made, host: str, chain: str, rule: list[str]) -> None:
    _sh(lab, host, f"iptables -I {chain} 1 " + shlex.join(rule))
    made.parts.append({"kind": "rule", "host": host, "chain": chain, "rule": rule})


def _pick(lab: Lab, rng: random.Random, made: Made, workers_only: bool = False) -> str:
    taken = set(made.facts.get("taken", []))
    pool = [h.name for h in (lab.spec.workers if workers_only else lab.spec.hosts) if h.name not in taken]
    host = rng.choice(pool)
    made.facts["taken"] = sorted(taken | {host})
    return host


def _blocked(lab: Lab, rng: random.Random, made: Made, direction: str) -> None:
    """VXLAN stopped by the host's iptables: dropped coming in, or rejected going out."""
    host = _pick(lab, rng, made)
    chain, guard, action = ("INPUT", GUARD, "DROP") if direction == "in" else ("OUTPUT", GUARD_OUT, "REJECT")
    _rule(lab, made, host, chain, guard)
    with made.fault():
        _fault(lab, made, host, "block", port=f"{DATA}/udp", action=action, direction=direction)
    made.facts |= {"host": host}
    how = "drops" if direction == "in" else "rejects"
    made.answer.append(f"{host}'s iptables {chain} chain {how} UDP {DATA} (VXLAN)"
                       + ("" if direction == "in" else " on the way out")
                       + f": `iptables -I {chain} -p udp --dport {DATA} -j {action}`")
    made.expect += [["port-dropped" if direction == "in" else "port-rejected", host, DATA]]


def _inbound(lab: Lab, rng: random.Random, made: Made) -> None:
    _blocked(lab, rng, made, "in")


def _egress(lab: Lab, rng: random.Random, made: Made) -> None:
    _blocked(lab, rng, made, "out")


def _ufw(lab: Lab, rng: random.Random, made: Made) -> None:
    host = _pick(lab, rng, made)
    _sh(lab, host, UFW_SAVE)
    made.parts.append({"kind": "ufw", "host": host})
    _sh(lab, host, f"ufw default deny incoming && ufw allow 22/tcp && ufw allow 2377/tcp && ufw allow 7946 && "
                   f"ufw allow {DATA}/tcp && ufw --force enable")
    made.facts |= {"host": host}
    made.answer.append(f"{host} runs ufw with `default deny incoming`; VXLAN was allowed as `ufw allow {DATA}/tcp`: "
                       f"the wrong protocol (VXLAN is UDP)")
    made.expect += [["port-dropped", host, DATA]]


def _nft_peer(lab: Lab, rng: random.Random, made: Made) -> None:
    host = _pick(lab, rng, made)
    peer = rng.choice([h.name for h in lab.spec.hosts if h.name != host])
    tables = _sh(lab, host, "nft list tables")
    table = next(t for t in ("filter", "host-firewall", "labfw") if f"table inet {t}\n" not in tables + "\n")
    _sh(lab, host, f"nft add table inet {table} && nft add chain inet {table} input "
                   f"'{{ type filter hook input priority 0; policy accept; }}' && "
                   f"nft add rule inet {table} input tcp dport 3306 drop")
    made.parts.append({"kind": "nft-table", "host": host, "table": f"inet {table}"})
    with made.fault():
        _sh(lab, host, f"nft add rule inet {table} input ip saddr {lab.spec.host(peer).ip} udp dport {DATA} drop")
    made.facts |= {"host": host, "peer": peer, "table": f"inet {table}"}
    made.answer.append(f"an nftables table (inet {table}) on {host} drops VXLAN (UDP {DATA}) from {peer} only")
    made.expect += [["port-dropped", host, DATA]]


def _firewalld(lab: Lab, rng: random.Random, made: Made) -> None:
    host = _pick(lab, rng, made)
    made.parts.append({"kind": "firewalld", "host": host})
    _script(lab, host, FIREWALLD_START)
    _sh(lab, host, "firewall-cmd --add-port=2377/tcp --add-port=7946/tcp --add-port=7946/udp "
                   f"--add-port={DATA}/tcp")
    made.facts |= {"host": host}
    made.answer.append(f"{host} runs firewalld; VXLAN was opened as `firewall-cmd --add-port={DATA}/tcp`: the wrong "
                       f"protocol (VXLAN is UDP), so firewalld rejects it (ICMP admin-prohibited)")
    made.expect += [["port-rejected", host, DATA]]


def _path(lab: Lab, rng: random.Random, made: Made, action: str = "DROP") -> None:
    host = _pick(lab, rng, made, workers_only=True)
    peer = next(h.name for h in lab.spec.workers if h.name != host)
    with made.fault():
        _fault(lab, made, host, "path-drop", port=f"{DATA}/udp", peer=peer, action=action)
    made.facts |= {"host": host, "peer": peer}
    what = "drops" if action == "DROP" else "rejects (ICMP admin-prohibited, as a router or cloud ACL answers)"
    made.answer.append(f"the path between {peer} and {host} (this machine's bridge, DOCKER-USER chain) {what} "
                       f"VXLAN from {peer} to {host}")
    made.expect += [["path-drop" if action == "DROP" else "port-rejected", host, DATA]]


def _path_reject(lab: Lab, rng: random.Random, made: Made) -> None:
    _path(lab, rng, made, "REJECT")


def _mtu(lab: Lab, rng: random.Random, made: Made) -> None:
    host = _pick(lab, rng, made)
    fault = _fault(lab, made, host, "mtu", mtu=1400)
    made.facts |= {"host": host, "dev": fault.params["dev"]}
    made.answer.append(f"{host}'s underlay interface {fault.params['dev']} has MTU 1400: the overlay's 1450 plus "
                       f"VXLAN's 50 bytes do not fit")
    made.expect += [["mtu-too-small", host, None]]


def _machine_end(lab: Lab, host: str) -> str:
    """This machine's end of the veth pair that is `host`'s underlay interface (on the lab's bridge)."""
    bridge = lab.backend().local_bridge()
    iflink = _sh(lab, host, f"cat /sys/class/net/{faults.underlay(lab, host)}/iflink").strip()
    for dev in Path("/sys/class/net").iterdir():
        try:
            if (dev / "ifindex").read_text().strip() == iflink and (dev / "master").resolve().name == bridge:
                return dev.name
        except OSError:
            continue
    raise LabError(f"no interface on {bridge} here is {host}'s link (ifindex {iflink})")


def _narrow(lab: Lab, rng: random.Random, made: Made) -> None:
    """The link between a host and the bridge carries 1400 bytes; every interface still says 1500."""
    host = _pick(lab, rng, made)
    dev = _machine_end(lab, host)
    old = int(Path(f"/sys/class/net/{dev}/mtu").read_text())
    made.parts.append({"kind": "link-mtu", "dev": dev, "mtu": old})
    local(["ip", "link", "set", "dev", dev, "mtu", "1400"])
    made.facts |= {"host": host, "dev": dev, "bridge": lab.backend().local_bridge()}
    made.answer.append(f"the link between {host} and this machine's bridge ({dev}, here) carries 1400 bytes while "
                       f"every host's interface says {old}: the overlay's 1450 plus VXLAN's 50 bytes do not fit")
    made.expect += [["path-mtu-too-small", h.name, DATA] for h in lab.spec.hosts]


def local(argv: list[str]) -> None:
    """A command on this machine; a failure is a LabError."""
    res = run_local(argv, timeout=30)
    if not res.ok:
        raise LabError(f"`{shlex.join(argv)}` failed here: {res.tail(2)}")


def _lossy(lab: Lab, rng: random.Random, made: Made) -> None:
    host = _pick(lab, rng, made)
    _rule(lab, made, host, "INPUT", GUARD)
    with made.fault():
        _rule(lab, made, host, "INPUT", LOSS)
    made.facts |= {"host": host}
    made.answer.append(f"{host}'s iptables INPUT chain drops half of the VXLAN packets at random "
                       f"(`-m statistic --mode random --probability 0.5`)")
    made.expect += [["lossy", host, DATA]]


def _worker_down(lab: Lab, rng: random.Random, made: Made, kind: str, answer: str, code: str) -> None:
    """A worker out of the swarm by `labctl fault` KIND; `answer` names it with {host}."""
    host = _pick(lab, rng, made, workers_only=True)
    _fault(lab, made, host, kind)
    made.facts |= {"host": host}
    made.answer.append(answer.format(host=host))
    made.expect += [[code, host, None]]


def _left(lab: Lab, rng: random.Random, made: Made) -> None:
    _worker_down(lab, rng, made, "leave", "{host} left the swarm (`docker swarm leave`)", "not-in-swarm")


def _dockerd(lab: Lab, rng: random.Random, made: Made) -> None:
    _worker_down(lab, rng, made, "docker-stop", "dockerd is stopped on {host}", "docker-down")


def _advertise(lab: Lab, rng: random.Random, made: Made) -> None:
    host = _pick(lab, rng, made, workers_only=True)
    fault = _fault(lab, made, host, "wrong-advertise")
    made.facts |= {"host": host, "ip": lab.spec.host(host).ip, "addr": fault.params["addr"]}
    made.answer.append(f"{host} joined the swarm with `--advertise-addr {fault.params['addr']}`, an address no host "
                       f"has: its peers send its overlay traffic there (its own is {lab.spec.host(host).ip})")
    made.expect += [["advertise-addr-not-local", host, None]]


def _overlap(lab: Lab, rng: random.Random, made: Made) -> None:
    """The drill's overlay re-created on the hosts' own network: containers reach each other, and
    every address of that network is routed into the overlay."""
    net = str(ipaddress.ip_network(f"{lab.spec.manager.ip}/24", strict=False))
    made.parts.append({"kind": "overlay-subnet"})
    workload.remove(lab, wait=True)
    _sh(lab, lab.spec.manager.name,
        f"docker network create -d overlay --attachable --subnet {net} {workload.NETWORK}")
    made.facts |= {"subnet": net, "addr": lab.spec.manager.ip}
    made.answer.append(f"the overlay {workload.NETWORK} was created with `--subnet {net}`, the hosts' own network: "
                       "inside the containers that whole network is routed into the overlay")
    made.expect += [["subnet-overlap", h.name, None] for h in lab.spec.hosts]


LAYER = "The swarm's control plane looks fine (`docker node ls`): look at the data path between hosts."
DRILLS: tuple[Drill, ...] = (
    Drill("island", 1, "Containers on one host cannot be reached over the overlay from the others.", _inbound, (
        LAYER,
        "Every pair that fails involves {host}.",
        f"Overlay traffic travels as VXLAN, UDP {DATA}. Watch it arrive: `labctl capture {{host}} --port {DATA}/udp` "
        "while a ping runs.",
        "Read {host}'s firewall: `labctl exec {host} -- sudo iptables -S INPUT`.")),
    Drill("one-way", 2, "Containers on one host cannot be reached over the overlay from the others.", _egress, (
        LAYER,
        "Every pair that fails involves {host}.",
        f"Capture VXLAN (UDP {DATA}) on a peer of {{host}}: do {{host}}'s packets ever leave it?",
        "Read {host}'s firewall, outgoing side: `labctl exec {host} -- sudo iptables -S OUTPUT`.")),
    Drill("closed-door", 2, "Containers on one host cannot be reached over the overlay from the others.", _ufw, (
        LAYER,
        "Every pair that fails involves {host}, and it runs a firewall tool of its own.",
        f"The swarm needs TCP 2377, TCP and UDP 7946, UDP {DATA}. Which does {{host}} let in?",
        "`labctl exec {host} -- sudo ufw status verbose`: look at the protocol of each rule.")),
    Drill("bad-neighbours", 2, "Two hosts' containers cannot reach each other over the overlay; "
          "the third reaches both.", _nft_peer, (
        LAYER,
        "Only the pair {host} and {peer} fails: look at what the two do differently with each other.",
        f"Capture VXLAN (UDP {DATA}) on {{host}}: do {{peer}}'s packets arrive?",
        "iptables is clean on {host}; `labctl exec {host} -- sudo nft list ruleset` is not.")),
    Drill("middleman", 3, "Two hosts' containers cannot reach each other over the overlay; "
          "the third reaches both.", _path, (
        LAYER,
        "Only the pair {host} and {peer} fails, and neither host's firewall has anything against it.",
        f"Capture VXLAN (UDP {DATA}) on both: the packets leave {{peer}} and never reach {{host}}.",
        "The hosts share a bridge on this machine: `sudo iptables -S DOCKER-USER` here."),
        needs_local_bridge=True),
    Drill("roadblock", 3, "Two hosts' containers cannot reach each other over the overlay; "
          "the third reaches both.", _path_reject, (
        LAYER,
        "Only the pair {host} and {peer} fails, and neither host's firewall has anything against it.",
        "Capture on {peer} while its container pings {host}'s: `labctl capture {peer} --filter icmp`. "
        "Who answers, and with what?",
        "The hosts share a bridge on this machine: `sudo iptables -S DOCKER-USER` here."),
        needs_local_bridge=True),
    Drill("gatekeeper", 2, "Containers on one host cannot be reached over the overlay from the others.", _firewalld, (
        LAYER,
        "Every pair that fails involves {host}, and it runs a firewall daemon of its own.",
        f"The swarm needs TCP 2377, TCP and UDP 7946, UDP {DATA}. Which does {{host}} let in?",
        "`labctl exec {host} -- sudo firewall-cmd --list-ports`: look at the protocol of each port.")),
    Drill("stranger", 2, "Containers on one host cannot be reached over the overlay from the others.", _advertise, (
        "Every host's firewall lets the swarm's ports in: look at where the packets are sent.",
        "Every pair that fails involves {host}.",
        "Which address does the swarm know {host} by? `labctl exec manager -- docker node inspect {host} "
        "-f '{{{{.Status.Addr}}}}'`, and compare with `labctl exec {host} -- ip -4 addr`.",
        "Join it again with its own address: on {host} `docker swarm leave`, then the manager's "
        "`docker swarm join-token worker` command with `--advertise-addr {ip}`.")),
    Drill("crossed-wires", 2, "Containers on the overlay reach each other, but not the hosts' network.", _overlap, (
        "The overlay itself works: look at where a container sends a packet for a host.",
        "`labctl exec manager -- docker exec drill-manager ip route`: which route takes {addr}?",
        f"Compare `docker network inspect {workload.NETWORK}` (its subnet) with the hosts' network.",
        f"Re-create {workload.NETWORK} with a subnet no host uses: remove its containers, `docker network rm "
        f"{workload.NETWORK}`, then `docker network create -d overlay --attachable --subnet 10.213.9.0/24 "
        f"{workload.NETWORK}`.")),
    Drill("big-packets", 2, "Pings over the overlay work, but larger transfers to one host hang.", _mtu, (
        "Small packets pass and large ones do not: think of sizes, not of ports.",
        "The large packets fail whenever {host} is one end.",
        "Compare the MTUs: `labctl exec {host} -- ip link` and the overlay's 1450 plus 50 bytes of VXLAN.",
        "{dev} on {host} is smaller than the other hosts' interfaces.")),
    Drill("narrow-path", 3, "Pings over the overlay work, but larger transfers to one host hang.", _narrow, (
        "Small packets pass and large ones do not: think of sizes, not of ports.",
        "The large packets fail whenever {host} is one end, yet every host's interfaces say the same MTU.",
        "Measure what the path carries: `labctl exec {host} -- ping -M do -s 1422 <a peer's address>`, then smaller.",
        "The hosts share the bridge {bridge} on this machine: `ip link show master {bridge}` lists their links; "
        "{dev} is {host}'s."), needs_local_bridge=True),
    Drill("flaky", 2, "Pings over the overlay to one host lose some packets, not all.", _lossy, (
        "Nothing is cut: something loses a share of the packets.",
        "The losses involve {host}.",
        f"Count what arrives: capture UDP {DATA} on {{host}} while you ping it 20 times.",
        "Read {host}'s firewall with counters: `labctl exec {host} -- sudo iptables -L INPUT -v -n`.")),
    Drill("missing-node", 1, "A container cannot be started on the overlay on one host.", _left, (
        "Attachable overlays exist only on swarm members.",
        "Look at {host}: `labctl exec {host} -- docker info` (its Swarm line).",
        "`docker node ls` on the manager shows {host} as Down.",
        "Join it again: `docker swarm join-token worker` on the manager prints the command.")),
    Drill("dead-daemon", 1, "One host's containers are gone, and nothing new starts there.", _dockerd, (
        "It is not the network.",
        "`labctl exec {host} -- docker ps`.",
        "Is dockerd running on {host}? `labctl exec {host} -- pgrep -a dockerd`.",
        "Start it again: `systemctl start docker` where systemd runs; on a lab node, `labctl up` provisions it.")),
    Drill("double-trouble", 3, "Overlay traffic fails in more than one way.", lambda *_: None, (),
          one_of=("island", "one-way", "closed-door", "big-packets", "missing-node")),
)


def names() -> list[str]:
    return [d.name for d in DRILLS]


def get(name: str) -> Drill:
    for d in DRILLS:
        if d.name == name:
            return d
    raise UsageError(f"unknown drill '{name}'", hint=f"drills: {', '.join(names())} (`labctl drill list`)")


def available(lab: Lab) -> list[Drill]:
    local = lab.backend().local_bridge() is not None
    return [d for d in DRILLS if local or not d.needs_local_bridge]


def make(lab: Lab, drill: Drill, rng: random.Random, made: Made) -> list[str]:
    """Make the drill's fault(s); the names of the drills made (two for a drill of two faults)."""
    if not drill.one_of:
        drill.make(lab, rng, made)
        return [drill.name]
    done = []
    for name in rng.sample(list(drill.one_of), 2):
        sub = Made(facts={"taken": made.facts.get("taken", [])}, read_rules=made.read_rules)
        get(name).make(lab, rng, sub)
        made.parts += sub.parts
        made.answer += sub.answer
        made.expect += sub.expect
        for host, lines in sub.fault_lines.items():
            made.fault_lines[host] = sorted(set(made.fault_lines.get(host, [])) | set(lines))
        made.facts["taken"] = sub.facts["taken"]
        made.facts.setdefault("each", []).append({"drill": name, **{k: v for k, v in sub.facts.items()
                                                                      if k != "taken"}})
        done.append(name)
    return done


def hints(drill: Drill, facts: dict[str, Any]) -> list[str]:
    """The drill's hints with its hosts filled in; a drill of two faults: each one's in turn."""
    if not drill.one_of:
        return [h.format(**facts) for h in drill.hints]
    each = [hints(get(f["drill"]), f) for f in facts.get("each", [])]
    out = ["There are two faults: fixing one leaves the other's symptom."]
    for i in range(max((len(h) for h in each), default=0)):
        out += [h[i] for h in each if i < len(h)]
    return out
