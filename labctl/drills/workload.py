"""The workload that shows a drill's symptom the way a user meets it: one standalone container
per host on an attachable overlay, each pinging the others by name, small and large, and the
manager's address on the hosts' own network (what a container reaches outside the overlay)."""

from __future__ import annotations

import re
import shlex
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import LabError
from ..lab import Lab
from ..scenarios import images
from ..ssh import Host, fan_out
from ..wait import WaitTimeout, wait_until

NETWORK = "drillnet"
SUBNET = "10.213.7.0/24"
COUNT = 10  # small pings per pair: a 50% loss shows in all but 1 of 1000 runs
NAME_WAIT = 30.0  # seconds for a new container's name to reach its peers (gossip)
BIG = 1400  # bytes of ICMP payload: fits the overlay's 1450, not an underlay cut to 1400


def container(host: str) -> str:
    return f"drill-{host}"


@dataclass
class Pair:
    src: str
    dst: str
    sent: int = 0
    received: int = 0
    big_ok: bool = False
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and self.sent > 0 and self.received == self.sent and self.big_ok


@dataclass
class Result:
    setup: dict[str, str] = field(default_factory=dict)  # host -> why its container is not running
    pairs: list[Pair] = field(default_factory=list)
    outside: dict[str, str] = field(default_factory=dict)  # host -> why its container cannot reach out
    outside_addr: str = ""

    @property
    def ok(self) -> bool:
        return not self.setup and bool(self.pairs) and all(p.ok for p in self.pairs) and not self.outside

    def symptoms(self) -> list[str]:
        """What a user would see, one sentence each; nothing about the cause."""
        out = [f"on {host}: {why}" for host, why in sorted(self.setup.items())]
        for p in self.pairs:
            who = f"{container(p.src)} -> {container(p.dst)}"
            if p.error:
                out.append(f"{who}: {p.error}")
            elif p.received == 0:
                out.append(f"{who}: ping by name: all {p.sent} lost")
            elif p.received < p.sent:
                out.append(f"{who}: ping by name: {p.sent - p.received} of {p.sent} lost")
            elif not p.big_ok:
                out.append(f"{who}: small pings pass, {BIG}-byte pings are lost")
        for host, why in sorted(self.outside.items()):
            out.append(f"{container(host)} -> {self.outside_addr} (the manager, on the hosts' network): {why}")
        return out

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "setup": self.setup, "pairs": [asdict(p) | {"ok": p.ok} for p in self.pairs],
                "outside": self.outside, "outside_addr": self.outside_addr, "symptoms": self.symptoms()}


def _swarm_state(host: Host) -> str | None:
    """The host's swarm state as its dockerd says it (active, inactive, ...); None: no dockerd answers."""
    res = host.run("docker info -f '{{.Swarm.LocalNodeState}}'", sudo=True, timeout=30)
    return res.out.strip() if res.ok else None


def _start(host: Host, image: str, swarm: str) -> str:
    """Its container running on the overlay ('' when it is), or what went wrong, as docker says it."""
    name = container(host.name)
    # A container stays running when its host leaves the swarm, cut off from the overlay, and one
    # started before a re-join is not attached again: only a member's attached container counts.
    state = host.run(f"docker inspect -f '{{{{.State.Running}}}} {{{{range $k, $v := .NetworkSettings.Networks}}}}"
                     f"{{{{$k}}}} {{{{end}}}}' {name}", sudo=True, timeout=30)
    running, _, networks = state.out.strip().partition(" ")
    if swarm == "active" and state.ok and running == "true" and NETWORK in networks.split():
        return ""
    host.run(f"docker rm -f {name} >/dev/null 2>&1", sudo=True, timeout=30)
    run = host.run(f"docker run -d --name {name} --hostname {name} --network {NETWORK} "
                   f"{shlex.quote(image)} sleep 1d", sudo=True, timeout=90)
    if run.ok:
        return ""
    why = f"`docker run --network {NETWORK}` failed: {run.tail(1)}"
    return why if swarm == "active" else f"{why} (`docker info`: Swarm: {swarm or 'unknown'})"


def _resolves(host: Host, src: str, dst: str) -> bool:
    return host.run(f"docker exec {container(src)} nslookup {container(dst)} >/dev/null 2>&1",
                    sudo=True, timeout=30).ok


def _await_names(hosts: dict[str, Host], jobs: list[tuple[str, str]]) -> None:
    """A container just started is known to its peers once gossip has carried its name: wait for
    that (bounded), so a ping reports the data path, not a record still on its way. A name that
    never arrives is left for the ping to report."""
    def known(job: tuple[str, str]) -> None:
        try:
            wait_until(lambda: _resolves(hosts[job[0]], *job), NAME_WAIT, f"{job[1]} known on {job[0]}",
                       interval=0.5)
        except WaitTimeout:
            pass
    with ThreadPoolExecutor(max_workers=max(1, len(jobs))) as pool:
        list(pool.map(known, jobs))


def _ping(host: Host, src: str, dst: str) -> Pair:
    pair = Pair(src, dst)
    res = host.run(f"docker exec {container(src)} ping -c {COUNT} -i 0.2 -W 1 {container(dst)}",
                   sudo=True, timeout=60)
    m = re.search(r"(\d+) packets transmitted, (\d+) (?:packets )?received", res.out)
    if m is None:
        pair.error = "ping by name: " + (res.tail(1) or f"exit {res.rc}")
        return pair
    pair.sent, pair.received = int(m.group(1)), int(m.group(2))
    big = host.run(f"docker exec {container(src)} ping -c 3 -i 0.2 -W 1 -s {BIG} {container(dst)}",
                   sudo=True, timeout=60)
    got = re.search(r"(\d+) (?:packets )?received", big.out)
    pair.big_ok = got is not None and int(got.group(1)) > 0
    return pair


def _reach_out(host: Host, addr: str) -> str:
    """'' when the host's container reaches `addr` (outside the overlay), else what ping said."""
    res = host.run(f"docker exec {container(host.name)} ping -c 3 -i 0.2 -W 1 {addr}", sudo=True, timeout=60)
    m = re.search(r"(\d+) packets transmitted, (\d+) (?:packets )?received", res.out)
    if m is None:
        return "ping: " + (res.tail(1) or f"exit {res.rc}")
    sent, got = int(m.group(1)), int(m.group(2))
    return "" if got == sent else f"ping: {sent - got} of {sent} lost"


def run(lab: Lab) -> Result:
    """Set the workload up where it is missing, then ping every ordered pair (all at once)."""
    hosts = lab.hosts()
    manager = hosts[lab.spec.manager.name]
    result = Result()
    live: dict[str, str] = {}  # host -> its swarm state, for the hosts whose dockerd answers
    for name, state in fan_out(list(hosts.values()), _swarm_state).items():
        if isinstance(state, BaseException):
            result.setup[name] = f"unreachable: {state}"
        elif state is None:
            result.setup[name] = "docker does not answer (`docker ps`: Cannot connect to the Docker daemon)"
        else:
            live[name] = state
    if manager.name not in live:
        return result  # the network lives on the manager: nothing can be started
    image = images.choose({n: hosts[n] for n in live}, manager.name).alpine
    net = manager.run(f"docker network inspect {NETWORK} >/dev/null 2>&1 || docker network create -d overlay "
                      f"--attachable --subnet {SUBNET} {NETWORK}", sudo=True, timeout=60)
    if not net.ok:
        result.setup[manager.name] = f"`docker network create {NETWORK}` failed: {net.tail(1)}"
    started = fan_out([hosts[n] for n in live], lambda h: _start(h, image, live[h.name]))
    for name, why in started.items():
        if isinstance(why, BaseException):
            result.setup[name] = f"unreachable: {why}"
        elif why:
            result.setup[name] = why
    up = [h for h in lab.spec.host_names if h not in result.setup]
    jobs = [(src, dst) for src in up for dst in up if src != dst]
    _await_names(hosts, jobs)
    result.outside_addr = lab.spec.manager.ip
    with ThreadPoolExecutor(max_workers=max(1, len(jobs) + len(up))) as pool:
        out = {h: pool.submit(_reach_out, hosts[h], result.outside_addr) for h in up}
        result.pairs = list(pool.map(lambda j: _ping(hosts[j[0]], *j), jobs))
        result.outside = {h: why for h, f in out.items() if (why := f.result())}
    return result


GONE_DEADLINE = 60.0  # seconds for the overlay to be removable once its containers are gone


def remove(lab: Lab, wait: bool = False) -> None:
    """The workload's containers and network go (where the hosts answer). With `wait`, the
    network is gone when this returns (LabError if not): the manager refuses to remove it while
    the workers still detach their containers' endpoints."""
    hosts = lab.hosts()
    fan_out(list(hosts.values()), lambda h: h.run(f"docker rm -f {container(h.name)} >/dev/null 2>&1",
                                                  sudo=True, timeout=60))
    manager = hosts[lab.spec.manager.name]

    def gone() -> bool:
        manager.run(f"docker network rm {NETWORK} >/dev/null 2>&1", sudo=True, timeout=60)
        return not manager.run(f"docker network inspect {NETWORK} >/dev/null 2>&1", sudo=True, timeout=30).ok
    if not wait:
        gone()
        return
    try:
        wait_until(gone, GONE_DEADLINE, f"the overlay {NETWORK} removed", interval=1.0)
    except WaitTimeout as exc:
        raise LabError(f"{manager.name}: {exc}", hint=f"`docker network inspect {NETWORK}` shows what still uses it") \
            from None
