"""The overlay data plane, converged: every host's `ingress` network reaches every peer.

`docker node ls` can show every node Ready while a host's ingress keeps no VXLAN forwarding
entries for a peer (after a worker re-joins or a dockerd restarts), and nothing repairs it.
Right after a join or a restart the entries come within seconds, so a gap is first waited for;
one that stays is healed by re-joining the worker involved (its new membership makes every host
program its entries again; faster than restarting a dockerd, measured), then checked again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import facts, swarm
from ..errors import LabError
from ..facts.dataplane import INGRESS, Gap, gaps
from ..spec import LabSpec
from ..ssh import Host, fan_out, raise_first
from ..wait import WaitTimeout, wait_until

# How long gaps may close by themselves: after this `up` started a dockerd or joined a worker
# (measured: 1-2 s after joins and a worker's restart, 15 s after the manager's dockerd restarted),
# and on a lab `up` did not change (gaps there are old: heal them soon).
SETTLE_CHANGED = 25.0
SETTLE = 5.0
HEALED = 45.0  # how long a healed lab may take to converge (measured: 3 s after re-joining a worker)
FACTS: list[facts.Fact[Any]] = [facts.OverlayNetworks(), facts.VxlanDevices()]

Gaps = dict[str, list[Gap]]  # host -> the peers its ingress does not reach


def ingress_gaps(spec: LabSpec, hosts: dict[str, Host]) -> Gaps:
    """Per host, the peers its ingress network does not reach (read in one round trip each)."""

    def one(host: Host) -> list[Gap]:
        readings = facts.read_many(host, FACTS, timeout=20)
        addrs = [h.ip for h in spec.hosts if h.name != host.name]
        overlays: list[facts.Overlay] = readings[facts.OverlayNetworks()]
        return gaps(overlays, readings[facts.VxlanDevices()], addrs, INGRESS)

    found = raise_first(fan_out([hosts[h.name] for h in spec.hosts], one))
    return {name: g for name, g in found.items() if g}


def describe(spec: LabSpec, found: Gaps) -> str:
    names = {h.ip: h.name for h in spec.hosts}
    return "; ".join(f"{host}'s {g.network} lacks {names.get(g.addr, g.addr)} ({g.describe()})"
                     for host, gs in sorted(found.items()) for g in gs)


def pairs(spec: LabSpec, found: Gaps) -> str:
    """The gaps in brief: "manager -> worker-1, worker-1 -> manager"."""
    names = {h.ip: h.name for h in spec.hosts}
    return ", ".join(f"{host} -> {names.get(g.addr, g.addr)}" for host, gs in sorted(found.items()) for g in gs)


def to_heal(spec: LabSpec, found: Gaps) -> list[str]:
    """The workers to re-join: of each host-peer pair that does not reach, the worker (the peer
    when both are workers: its new membership is announced to every host)."""
    names = {h.ip: h.name for h in spec.hosts}
    workers = {w.name for w in spec.workers}
    picked = set()
    for host, gs in found.items():
        for g in gs:
            peer = names.get(g.addr, "")
            picked.add(peer if peer in workers else host)
    return sorted(picked & workers)


def wait_converged(spec: LabSpec, hosts: dict[str, Host], timeout: float) -> Gaps:
    """Wait up to `timeout` s for no gaps; the gaps left (empty: converged)."""
    last: dict[str, Gaps] = {}

    def converged() -> bool:
        last["gaps"] = ingress_gaps(spec, hosts)
        return not last["gaps"]

    try:
        wait_until(converged, timeout, "the ingress network converged", interval=1.0)
    except WaitTimeout:
        pass
    return last["gaps"]


@dataclass(frozen=True)
class Outcome:
    summary: str
    rejoined: tuple[str, ...] = ()


def converge(spec: LabSpec, hosts: dict[str, Host], note: Callable[[str], None],
             settle: float = SETTLE, healed: float = HEALED) -> Outcome:
    """Make sure every host's ingress reaches every peer: wait, heal once, check; or a LabError."""
    start = time.monotonic()
    found = wait_converged(spec, hosts, settle)
    if not found:
        return Outcome(f"every host's {INGRESS} network reaches every peer ({time.monotonic() - start:.1f} s)")
    workers = to_heal(spec, found)
    if not workers:  # the manager alone: nothing a re-join reaches
        raise LabError(f"the overlay data plane did not converge: {describe(spec, found)}",
                       hint=_HINT)
    before = pairs(spec, found)
    note(f"not converged after {settle:g} s ({describe(spec, found)}); re-joining {', '.join(workers)}")
    for name in workers:
        swarm.leave(hosts[name], force=True, check=True)
    swarm.join_workers(spec, hosts)
    swarm.verify(spec, hosts)
    found = wait_converged(spec, hosts, healed)
    if found:
        raise LabError(f"the overlay data plane did not converge, even after re-joining {', '.join(workers)}: "
                       f"{describe(spec, found)}", hint=_HINT)
    return Outcome(f"healed by re-joining {', '.join(workers)} (no {INGRESS} forwarding: {before}); "
                   f"every host's {INGRESS} network reaches every peer ({time.monotonic() - start:.1f} s)",
                   tuple(workers))


_HINT = ("`labctl diagnose` checks the gossip (TCP+UDP 7946) and VXLAN (UDP 4789) ports between the hosts; "
         "`labctl down` then `labctl up` rebuilds the lab")
