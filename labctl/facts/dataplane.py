"""Whether a host's overlay data plane reaches a peer: the one decision `labctl up` (convergence)
and `labctl diagnose` (the gossip rule) both make from the OverlayNetworks and VxlanDevices facts.

A host reaches a peer on an overlay when the network lists the peer among its gossip peers and,
if the host has the network's VXLAN device, that device's forwarding table has an entry for the
peer's address. After a re-join or a dockerd restart either can stay empty (`ingress` most often).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from .docker import Overlay
from .network import VxlanDevice

INGRESS = "ingress"


def unreached(peers: Collection[str], fdb: Collection[str] | None, addr: str) -> list[str]:
    """Why an overlay with gossip `peers` and a VXLAN forwarding table `fdb` (None: no VXLAN
    device on this host) cannot carry traffic to `addr`; empty when it can."""
    reasons = []
    if addr not in peers:
        reasons.append(f"not among the network's peers ({', '.join(peers) or 'none'})")
    if fdb is not None and addr not in fdb:
        reasons.append("no VXLAN forwarding entry for it")
    return reasons


def forwarding(vnis: Collection[int], devices: Iterable[VxlanDevice]) -> set[str] | None:
    """The peers in the forwarding tables of the network's VXLAN devices (None: it has none here)."""
    mine = [d for d in devices if d.vni in vnis]
    return {ip for d in mine for ip in d.fdb_peers} if mine else None


@dataclass(frozen=True)
class Gap:
    """One peer an overlay on this host does not reach, and why."""

    network: str
    addr: str
    reasons: tuple[str, ...]

    def describe(self) -> str:
        return f"{self.addr} " + " and ".join(self.reasons)


def gaps(overlays: Iterable[Overlay], devices: list[VxlanDevice], addrs: Iterable[str],
         network: str = INGRESS) -> list[Gap]:
    """The peers (underlay addresses `addrs`) the host's `network` does not reach; a host that
    does not have the network at all reaches none of them."""
    net = next((o for o in overlays if o.name == network), None)
    if net is None:
        return [Gap(network, a, (f"the host has no {network} network",)) for a in addrs]
    fdb = forwarding(net.vnis, devices)
    found = [Gap(network, a, tuple(unreached(net.peers, fdb, a))) for a in addrs]
    return [g for g in found if g.reasons]
