"""Swarm init, join, heal and verification, over SSH.

This module alone reads the join token and joins workers. The token is read from
the manager's output and handed to the worker's dockerd in the body of an Engine
API request, on the standard input of the command that sends it: it never
appears on any process's command line, in a file, a log or the terminal.
"""

from __future__ import annotations

import json
import time

from . import facts
from .errors import LabError
from .facts import NodeEntry, SwarmInfo
from .runner import Result
from .spec import HostSpec, LabSpec
from .ssh import Host, fan_out, raise_first
from .wait import WaitTimeout, wait_until


def swarm_info(host: Host) -> SwarmInfo:
    """The host's swarm membership; a daemon that does not answer is an error."""
    state = facts.read(host, facts.DockerInfo())
    if not state.running:
        raise LabError(f"{host.name}: dockerd does not answer: {state.error}", hint="`labctl up` starts it again")
    return state.swarm


def node_list(manager: Host) -> list[NodeEntry]:
    return facts.read(manager, facts.NodeList())


def init_manager(manager: Host, spec: HostSpec) -> str:
    """Make `manager` the swarm's manager, advertising its private address."""
    info = swarm_info(manager)
    if info.state == "active" and info.is_manager and info.node_addr == spec.ip:
        return "already the manager"
    note = ""
    if info.state != "inactive":
        # In a swarm of the wrong shape (a worker, another address, a failed join): start over.
        leave(manager, force=True)
        note = f" (left a swarm it was in as {'manager' if info.is_manager else 'worker'} at {info.node_addr})"
    result = manager.run(
        f"docker swarm init --advertise-addr {spec.ip} --listen-addr {spec.ip}:2377", sudo=True, timeout=90
    )
    if not result.ok:
        raise LabError(f"{manager.name}: `docker swarm init` failed: {result.tail(2)}")
    return f"initialised, advertising {spec.ip}{note}"


def leave(host: Host, force: bool = False, check: bool = False) -> Result:
    """Make `host` leave its swarm (`force`: also a manager, or a node cut off from the others).
    With `check`, a failure is a LabError."""
    for _ in range(JOIN_ATTEMPTS):
        result = host.run("docker swarm leave" + (" --force" if force else ""), sudo=True, timeout=60)
        # A node whose peers cannot reach it (e.g. one that advertised a wrong address) may have its
        # leave time out once ("context deadline exceeded"); the next one goes through.
        if result.ok or not transient(result.tail(2)):
            break
    if check and not result.ok:
        raise LabError(f"{host.name}: `docker swarm leave` failed: {result.tail(2)}")
    return result


def worker_token(manager: Host) -> str:
    result = manager.run("docker swarm join-token -q worker", sudo=True, timeout=30)
    token = result.out.strip()
    if not result.ok or not token.startswith("SWMTKN-"):
        raise LabError(f"{manager.name}: cannot read the worker join token: {mask(result.tail(1), token)}")
    return token


# `docker swarm join` takes the token only as an argument (visible in `ps`), so the
# worker's dockerd gets the CLI's request itself: POST /swarm/join, body on stdin.
JOIN_COMMAND = (
    "curl -sS --max-time 100 --unix-socket /var/run/docker.sock -X POST "
    "-H 'Content-Type: application/json' --data-binary @- -w '\\n%{http_code}' http://localhost/swarm/join"
)


def join_request(spec: HostSpec, manager_ip: str, token: str, advertise_addr: str) -> bytes:
    """The body `docker swarm join --advertise-addr A --listen-addr IP:2377 MANAGER:2377` sends."""
    return json.dumps({
        "ListenAddr": f"{spec.ip}:2377",
        "AdvertiseAddr": advertise_addr,
        "DataPathAddr": "",
        "RemoteAddrs": [f"{manager_ip}:2377"],
        "JoinToken": token,
    }).encode()


def api_error(result: Result) -> str:
    """Why an Engine API call sent with JOIN_COMMAND's curl failed ("" if it succeeded)."""
    if not result.ok:  # curl itself failed: no socket, no curl, a timeout
        return result.tail(2) or f"exit {result.rc}"
    body, _, status = result.out.rpartition("\n")
    if status.strip().startswith("2"):
        return ""
    try:
        message = str(json.loads(body)["message"])
    except (ValueError, KeyError, TypeError):
        message = body.strip() or f"HTTP status {status.strip() or 'missing'}"
    return f"Error response from daemon: {message}"


def join_worker(worker: Host, spec: HostSpec, manager_ip: str, token: str,
                advertise_addr: str | None = None) -> str:
    """Join `worker` to the manager's swarm (leaving any swarm it is in), advertising its
    private address, or `advertise_addr` (a deliberately wrong one, for `labctl fault`)."""
    addr = advertise_addr or spec.ip
    info = swarm_info(worker)
    note = ""
    if info.state != "inactive":
        leave(worker, force=True)
        note = f" (left its stale swarm membership: {info.state}, {info.node_addr or 'no address'})"
    for attempt in range(1, JOIN_ATTEMPTS + 1):
        error = _join_once(worker, join_request(spec, manager_ip, token, addr), addr)
        if not error or not transient(error) or attempt == JOIN_ATTEMPTS:
            break
        leave(worker, force=True)  # a join that timed out can leave the node pending or in error
    if error:
        raise LabError(
            f"{worker.name} could not join the swarm at {manager_ip}:2377: {mask(error, token)}",
            hint=f"`labctl diagnose {worker.name}` checks the ports the swarm needs",
        )
    return f"joined, advertising {addr}{note}" + (f" (attempt {attempt})" if attempt > 1 else "")


JOIN_ATTEMPTS = 3
# What a busy or slow manager makes a join fail with; worth another try.
TRANSIENT = ("DeadlineExceeded", "context deadline exceeded", "not so after", "i/o timeout")


def transient(error: str) -> bool:
    return any(marker in error for marker in TRANSIENT)


def _join_once(worker: Host, body: bytes, addr: str) -> str:
    """One join through the Engine API: "" once joined, else why not."""
    error = api_error(worker.run(JOIN_COMMAND, sudo=True, stdin=body, timeout=120))
    if JOIN_GOES_ON in error:
        # dockerd gave up waiting after 20 s but keeps joining (a slow or busy manager): wait for it.
        error = _joined_in_background(worker)
    elif transient(error) and _landed_after_all(worker, addr):
        error = ""  # the request timed out, the join did not: a retry would find it "already part of a swarm"
    return error


JOIN_GOES_ON = "will continue in the background"
BACKGROUND_JOIN_TIMEOUT = 90.0


def _joined_in_background(worker: Host) -> str:
    """Wait for a join dockerd goes on with in the background: "" once the worker is an
    active node, else why not."""
    def settled() -> SwarmInfo | None:
        info = swarm_info(worker)
        return info if info.state in ("active", "error", "inactive") else None
    try:
        info = wait_until(settled, BACKGROUND_JOIN_TIMEOUT, f"{worker.name} joining the swarm", interval=1.0)
    except WaitTimeout as exc:
        return str(exc)
    if info is None or info.state == "active":  # (wait_until returns only a settled state)
        return ""
    return f"the join ended {info.state}: {info.error or 'no reason given'}"


def _landed_after_all(worker: Host, addr: str) -> bool:
    """After a join request that timed out: whether the worker became a member advertising `addr`."""
    try:
        return not _joined_in_background(worker) and swarm_info(worker).node_addr == addr
    except LabError:
        return False


def mask(text: str, token: str) -> str:
    return text.replace(token, "SWMTKN-****") if token else text


def healthy_workers(spec: LabSpec, nodes: list[NodeEntry], infos: dict[str, SwarmInfo]) -> set[str]:
    """Workers that are in this manager's swarm, with the right address."""
    known = {n.node_id for n in nodes}
    return {
        w.name for w in spec.workers
        if infos[w.name].state == "active" and infos[w.name].node_id in known
        and infos[w.name].node_addr == w.ip and not infos[w.name].is_manager
    }


def join_workers(spec: LabSpec, hosts: dict[str, Host]) -> dict[str, str]:
    """Join (or re-join) every worker that is not a healthy member; forget stale entries."""
    manager = hosts[spec.manager.name]
    infos = raise_first(fan_out([hosts[w.name] for w in spec.workers], swarm_info))
    nodes = node_list(manager)
    healthy = healthy_workers(spec, nodes, infos)
    outcome = {w: "already joined" for w in healthy}
    todo = [w for w in spec.workers if w.name not in healthy]
    if todo:
        token = worker_token(manager)
        joined = fan_out([hosts[w.name] for w in todo],
                         lambda h: join_worker(h, spec.host(h.name), spec.manager.ip, token))
        outcome.update(raise_first(joined))
    return outcome


def stale_entries(spec: LabSpec, nodes: list[NodeEntry], infos: dict[str, SwarmInfo]) -> list[str]:
    """Node entries named after a lab host that are not that host's current node:
    left behind when a host left or was rebuilt and joined again under a new ID."""
    current = {infos[h].node_id for h in infos}
    return [n.node_id for n in nodes if n.hostname in spec.host_names and n.node_id not in current]


def verify(spec: LabSpec, hosts: dict[str, Host], timeout: float = 60.0) -> list[NodeEntry]:
    """Wait until every host is a Ready node advertising its own private address."""
    manager = hosts[spec.manager.name]
    deadline = time.monotonic() + timeout
    while True:
        infos = raise_first(fan_out(list(hosts.values()), swarm_info))
        entries = node_list(manager)
        stale = stale_entries(spec, entries, infos)
        if stale:
            manager.run("docker node rm --force " + " ".join(stale), sudo=True, timeout=60)
        nodes = {n.node_id: n for n in entries}
        problems = []
        for h in spec.hosts:
            node = nodes.get(infos[h.name].node_id)
            if node is None:
                problems.append(f"{h.name} is not in the swarm")
            elif node.state != "ready":
                problems.append(f"{h.name} is {node.state}")
            elif node.addr != h.ip:
                problems.append(f"{h.name} advertises {node.addr}, not its private address {h.ip}")
            elif node.role != h.role:
                problems.append(f"{h.name} is a {node.role}, not a {h.role}")
        if not problems:
            return [nodes[infos[h.name].node_id] for h in spec.hosts]
        if time.monotonic() > deadline:
            raise LabError("the swarm is not ready: " + "; ".join(problems),
                           hint="`labctl status` shows each node; `labctl diagnose` looks for the cause")
        time.sleep(0.5)
