"""`labctl fault`: break the lab on purpose, record exactly what was done, undo exactly that.

Records live in the lab's state folder (faults.json, mode 0600). Diagnosis never
reads them: it finds faults from the hosts' real state and packets only.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import swarm, validate
from .errors import LabError, UsageError
from .lab import Lab
from .runner import run_local
from .state import write_private

KINDS = ("block", "path-drop", "mtu", "docker-stop", "leave", "wrong-advertise")
PATH_CHAIN = "DOCKER-USER"


@dataclass
class Fault:
    id: str
    host: str
    kind: str
    params: dict[str, Any] = field(default_factory=dict)
    undo: dict[str, Any] = field(default_factory=dict)  # what `clear` needs to restore

    def describe(self) -> str:
        p = self.params
        if self.kind == "block":
            peer = f" {'from' if p['direction'] == 'in' else 'to'} {p['peer']}" if p.get("peer") else ""
            return f"{p['action']} {p['proto'].upper()} {p['port']} {p['direction']}bound on {self.host}{peer}"
        if self.kind == "path-drop":
            verb = "reject (ICMP admin-prohibited)" if p.get("action") == "REJECT" else "drop"
            return f"{verb} {p['proto'].upper()} {p['port']} from {p['peer']} to {self.host} on the path"
        if self.kind == "mtu":
            return f"underlay {p['dev']} MTU {self.undo['mtu']} -> {p['mtu']} on {self.host}"
        if self.kind == "docker-stop":
            return f"Docker stopped on {self.host}"
        if self.kind == "leave":
            return f"{self.host} left the swarm"
        return f"{self.host} re-joined advertising {p['addr']}"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "description": self.describe()}


def _path(lab: Lab) -> Path:
    return lab.state.dir / "faults.json"


def load(lab: Lab) -> list[Fault]:
    try:
        data = json.loads(_path(lab).read_text())
        return [_record(lab, f) for f in data] if isinstance(data, list) else _damaged("not a list")
    except FileNotFoundError:
        return []
    except (ValueError, OSError) as exc:
        raise LabError(f"fault records {_path(lab)} are damaged ({exc})",
                       hint="undo the faults by hand (or `labctl down`), then delete the file") from None


def _damaged(why: str) -> Any:
    raise ValueError(why)


def _record(lab: Lab, item: Any) -> Fault:
    """One fault record, checked: what `clear` runs on the hosts comes from it."""
    if not isinstance(item, dict):
        _damaged("a record is not an object")
    known = {"id", "host", "kind", "params", "undo"}
    fields = {k: v for k, v in item.items() if k in known}
    if not {"id", "host", "kind"} <= set(fields) or not all(isinstance(fields[k], str) for k in ("id", "host", "kind")):
        _damaged("a record lacks id, host or kind")
    fault = Fault(**fields)
    if fault.kind not in KINDS or fault.host not in lab.spec.host_names:
        _damaged(f"record {fault.id!r}: unknown kind or host")
    if not isinstance(fault.params, dict) or not isinstance(fault.undo, dict):
        _damaged(f"record {fault.id!r}: params and undo must be objects")
    u = fault.undo
    try:
        if fault.kind in ("block", "path-drop"):
            rule = u.get("rule")
            if u.get("chain") not in ("INPUT", "OUTPUT", PATH_CHAIN) or not isinstance(rule, list) \
                    or not all(isinstance(w, str) for w in rule):
                _damaged(f"record {fault.id!r}: bad chain or rule")
        elif fault.kind == "mtu":
            validate.interface(u.get("dev"))
            if not isinstance(u.get("mtu"), int):
                _damaged(f"record {fault.id!r}: bad mtu")
    except UsageError as exc:
        _damaged(f"record {fault.id!r}: {exc.message}")
    try:
        fault.describe()
    except (KeyError, TypeError, AttributeError) as exc:
        _damaged(f"record {fault.id!r}: missing {exc}")
    return fault


def _save(lab: Lab, faults: list[Fault]) -> None:
    write_private(_path(lab), json.dumps([asdict(f) for f in faults], indent=2) + "\n")


def _port(text: str | None) -> tuple[int, str]:
    if not text:
        raise UsageError("this fault needs --port PORT/PROTO", hint="e.g. --port 4789/udp or --port 2377/tcp")
    port, _, proto = text.partition("/")
    proto = (proto or "tcp").lower()
    hint = "e.g. --port 4789/udp or --port 7946/tcp"
    if proto not in ("tcp", "udp"):
        raise UsageError(f"'{text}' is not PORT/PROTO", hint=hint)
    return validate.port(port, hint=hint), proto


def _sh(lab: Lab, host: str, cmd: str, timeout: float = 60) -> str:
    res = lab.host(host).run(cmd, sudo=True, timeout=timeout)
    if not res.ok:
        raise LabError(f"{host}: `{cmd}` failed: {res.tail(2)}")
    return res.out


def _local(args: list[str], check: bool = True) -> int:
    """A command on this machine (iptables for path faults); its exit code."""
    return run_local(args, timeout=30, check=check,
                     hint="path faults change this machine's iptables: run as root").rc


def underlay(lab: Lab, host: str) -> str:
    """The host's interface towards its peers (its underlay)."""
    peer = next(h.ip for h in lab.spec.hosts if h.name != host)
    out = _sh(lab, host, f"ip -j route get {shlex.quote(peer)}")
    try:
        dev = json.loads(out)[0]["dev"]
    except (ValueError, LookupError, TypeError):
        raise LabError(f"{host}: `ip -j route get {peer}` printed no route: {out.strip()[:200]!r}") from None
    return validate.interface(dev, reported_by=host)


def add(lab: Lab, host: str, kind: str, *, port: str | None = None, action: str = "DROP", direction: str = "in",
        peer: str | None = None, mtu: int = 1400, addr: str | None = None) -> Fault:
    """Make the fault and record it in faults.json."""
    faults = load(lab)
    fault = apply(lab, host, kind, port=port, action=action, direction=direction, peer=peer, mtu=mtu, addr=addr)
    faults.append(fault)
    _save(lab, faults)
    return fault


def apply(lab: Lab, host: str, kind: str, *, port: str | None = None, action: str = "DROP", direction: str = "in",
          peer: str | None = None, mtu: int = 1400, addr: str | None = None,
          comment: str | None = "labctl-fault") -> Fault:
    """Make the fault on the lab and return its record, without keeping it: `undo` takes it back.
    `comment` starts the comment on its firewall rule (None: a rule without one, as a person writes it)."""
    if kind not in KINDS:
        raise UsageError(f"unknown fault kind '{kind}'", hint=f"kinds: {', '.join(KINDS)}")
    fault = Fault(id=secrets.token_hex(3), host=host, kind=kind)
    spec = lab.spec
    if kind == "block":
        num, proto = _port(port)
        action, direction = action.upper(), direction.lower()
        if action not in ("DROP", "REJECT") or direction not in ("in", "out"):
            raise UsageError("--action is DROP or REJECT, --direction is in or out")
        chain = "INPUT" if direction == "in" else "OUTPUT"
        match = ["-p", proto, "--dport", str(num)]
        if peer:
            match = [("-s" if direction == "in" else "-d"), spec.host(peer).ip, *match]
        rule = [*match, *_comment(comment, fault.id), "-j", action]
        fault.params = {"port": num, "proto": proto, "action": action, "direction": direction, "peer": peer}
        fault.undo = {"chain": chain, "rule": rule}
        _sh(lab, host, f"iptables -I {chain} 1 " + shlex.join(rule))
    elif kind == "path-drop":
        num, proto = _port(port)
        if not peer or peer == host:
            raise UsageError("path-drop needs --peer (the other end of the path)",
                             hint=f"labctl fault add {host} path-drop --peer manager --port 4789/udp")
        bridge = lab.backend().local_bridge()
        if bridge is None:
            raise UsageError(f"path-drop is made on this machine's bridge: provider {spec.provider} is not supported",
                             hint="use `block` on the receiving host instead")
        action = action.upper()
        if action not in ("DROP", "REJECT"):
            raise UsageError("--action is DROP or REJECT")
        if _bridge_nf() != "1":
            raise LabError("bridged traffic does not pass iptables here (bridge-nf-call-iptables = 0)",
                           hint="modprobe br_netfilter; sysctl -w net.bridge.bridge-nf-call-iptables=1")
        rule = ["-i", bridge, "-o", bridge, "-s", spec.host(peer).ip, "-d", spec.host(host).ip, "-p", proto,
                "--dport", str(num), *_comment(comment, fault.id), "-j", action]
        if action == "REJECT":  # what a router or a cloud ACL answers
            rule += ["--reject-with", "icmp-admin-prohibited"]
        fault.params = {"port": num, "proto": proto, "peer": peer, "action": action}
        fault.undo = {"chain": PATH_CHAIN, "rule": rule}
        _local(["iptables", "-I", PATH_CHAIN, "1", *rule])
    elif kind == "mtu":
        if not 576 <= mtu <= 9000:
            raise UsageError("--mtu must be between 576 and 9000")
        dev = underlay(lab, host)
        text = _sh(lab, host, f"cat /sys/class/net/{shlex.quote(dev)}/mtu").strip()
        if not text.isascii() or not text.isdigit():
            raise LabError(f"{host}: the MTU of {dev} reads {text[:40]!r}, not a number")
        old = int(text)
        fault.params = {"dev": dev, "mtu": mtu}
        fault.undo = {"dev": dev, "mtu": old}
        _sh(lab, host, f"ip link set dev {shlex.quote(dev)} mtu {mtu}")
    elif kind == "docker-stop":
        systemd = _sh(lab, host, "[ -d /run/systemd/system ] && echo yes || echo no").strip() == "yes"
        fault.undo = {"systemd": systemd}
        if systemd:
            _sh(lab, host, "systemctl stop docker.socket docker")
        else:
            _sh(lab, host, "pid=$(cat /var/run/docker.pid 2>/dev/null || pgrep -xo dockerd) && kill $pid; "
                           "for i in $(seq 200); do kill -0 $pid 2>/dev/null || exit 0; sleep 0.1; done; exit 1")
    elif kind in ("leave", "wrong-advertise"):
        if spec.host(host).role != "worker":
            raise UsageError(f"{kind} is for workers: {host} is the manager")
        if kind == "leave":
            swarm.leave(lab.host(host), check=True)
        else:
            addr = validate.ipv4(addr or _unused_addr(lab), hint="--addr takes an IPv4 address")
            if addr == spec.manager.ip:
                raise UsageError("advertising the manager's address would break the whole swarm",
                                 hint="use an unused address, or a worker's (advertise-addr-duplicate)")
            fault.params = {"addr": addr}
            token = swarm.worker_token(lab.host(spec.manager.name))
            swarm.join_worker(lab.host(host), spec.host(host), spec.manager.ip, token, advertise_addr=addr)
    return fault


def _comment(comment: str | None, fault_id: str) -> list[str]:
    return ["-m", "comment", "--comment", f"{comment}-{fault_id}"] if comment else []


def _bridge_nf() -> str:
    """Whether bridged traffic passes iptables on this machine ("1"), or why it cannot."""
    path = "/proc/sys/net/bridge/bridge-nf-call-iptables"
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        raise LabError(f"{path} does not exist: bridged traffic does not pass iptables here",
                       hint="modprobe br_netfilter; sysctl -w net.bridge.bridge-nf-call-iptables=1") from None


def _unused_addr(lab: Lab) -> str:
    net = ipaddress.ip_network(lab.spec.subnet)
    used = {h.ip for h in lab.spec.hosts}
    for ip in reversed(list(net.hosts())):
        if str(ip) not in used:
            return str(ip)
    raise LabError("no free address in the lab's subnet")


def undo(lab: Lab, f: Fault) -> str:
    """Take a fault back, and check that it is gone (LabError if not)."""
    u = f.undo
    if f.kind == "block":
        # -D fails when the rule is already gone (removed by hand): the check below decides.
        lab.host(f.host).run(f"iptables -D {u['chain']} " + shlex.join(u["rule"]), sudo=True, timeout=30)
    elif f.kind == "path-drop":
        _local(["iptables", "-D", u["chain"], *u["rule"]], check=False)
    elif f.kind == "mtu":
        _sh(lab, f.host, f"ip link set dev {shlex.quote(u['dev'])} mtu {int(u['mtu'])}")
    elif f.kind == "docker-stop":
        if u.get("systemd"):
            _sh(lab, f.host, "systemctl start docker")
        else:
            _sh(lab, f.host, "docker info >/dev/null 2>&1 || "
                             "{ setsid nohup dockerd >>/var/log/dockerd.log 2>&1 </dev/null & }; "
                             "for i in $(seq 300); do docker info >/dev/null 2>&1 && exit 0; sleep 0.1; done; exit 1")
        _wait_swarm(lab, f.host)
    elif f.kind in ("leave", "wrong-advertise"):
        hosts = lab.hosts()
        token = swarm.worker_token(hosts[lab.spec.manager.name])
        swarm.join_worker(hosts[f.host], lab.spec.host(f.host), lab.spec.manager.ip, token)
        # A worker whose address was borrowed lost its gossip entries meanwhile: it re-joins too.
        victim = next((h for h in lab.spec.workers if h.ip == f.params.get("addr") and h.name != f.host), None)
        if victim is not None:
            swarm.leave(hosts[victim.name])
            swarm.join_worker(hosts[victim.name], victim, lab.spec.manager.ip, token)
        _wait_swarm(lab, f.host)
    problem = _still_there(lab, f)
    if problem:
        raise LabError(f"fault {f.id} ({f.describe()}) was not undone: {problem}")
    return f"fault {f.id} cleared: {f.describe()}"


def _still_there(lab: Lab, f: Fault) -> str | None:
    """What of a fault is still in place after its undo (None: nothing).
    Swarm and Docker faults are verified by the undo itself (it waits for a healthy swarm)."""
    u = f.undo
    if f.kind == "block":
        check = lab.host(f.host).run(f"iptables -C {u['chain']} " + shlex.join(u["rule"]), sudo=True, timeout=30)
        return f"its rule is still in {f.host}'s {u['chain']} chain" if check.ok else None
    if f.kind == "path-drop":
        rc = _local(["iptables", "-C", u["chain"], *u["rule"]], check=False)
        return f"its rule is still in this machine's {u['chain']} chain" if rc == 0 else None
    if f.kind == "mtu":
        now = _sh(lab, f.host, f"cat /sys/class/net/{shlex.quote(u['dev'])}/mtu").strip()
        return f"{u['dev']} has MTU {now}, not {u['mtu']}" if now != str(u["mtu"]) else None
    return None


def _wait_swarm(lab: Lab, host: str, timeout: float = 60) -> None:
    """Until the swarm sees every host Ready again (a restarted dockerd re-joins on its own)."""
    try:
        swarm.verify(lab.spec, lab.hosts(), timeout=timeout)
    except LabError as exc:
        raise LabError(f"{host}: the fault was undone, but the swarm is not healthy yet: {exc.message}",
                       hint="`labctl up` heals it") from None


@dataclass
class Cleared:
    """What `clear` undid (and verified), and what it could not undo (records kept)."""

    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def clear(lab: Lab, host: str | None = None, kinds: tuple[str, ...] = KINDS) -> Cleared:
    """Undo the faults (all, one host's, or only some kinds), newest first, each verified.
    A fault that could not be undone keeps its record, so a later `clear` can try again."""
    faults = load(lab)
    todo = [f for f in faults if host in (None, f.host) and f.kind in kinds]
    out = Cleared()
    # Newest first: a later fault may depend on the state an earlier one made.
    for f in reversed(todo):
        try:
            out.done.append(undo(lab, f))
        except LabError as exc:
            out.failed.append(exc.message)
            continue
        faults.remove(f)
        _save(lab, faults)
    return out


def clear_machine_rules(lab: Lab) -> Cleared:
    """Undo only the faults that live on this machine (path drops): for `down` of a lab
    whose hosts are destroyed anyway."""
    return clear(lab, kinds=("path-drop",))
