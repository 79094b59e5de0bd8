"""The host's network: name, interfaces, routes, the way to a peer and out, VXLAN devices."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from .. import validate
from ..ssh import Result
from .base import Fact, FactError


@dataclass(frozen=True)
class Hostname(Fact[str]):
    command = "uname -n"

    def parse(self, result: Result) -> str:
        return result.out.strip()


@dataclass(frozen=True)
class Interface:
    name: str
    mtu: int
    up: bool
    addrs: list[str]  # IPv4 address/prefix


@dataclass(frozen=True)
class Interfaces(Fact[list[Interface]]):
    command = "ip -j addr show"
    what = "interfaces"

    def parse(self, result: Result) -> list[Interface]:
        if not result.ok:
            raise FactError(f"`ip addr` failed: {result.tail(2)}")
        return [Interface(link.get("ifname", ""), link.get("mtu", 0), "UP" in link.get("flags", []),
                          [f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", [])
                           if a.get("family") == "inet"])
                for link in json.loads(result.out or "[]")]


@dataclass(frozen=True)
class Routes(Fact[list[str]]):
    """Destinations of the main table's routes, without the default route."""

    command = "ip -j route show"
    what = "routes"

    def parse(self, result: Result) -> list[str]:
        if not result.ok:
            raise FactError(f"`ip route` failed: {result.tail(2)}")
        return [r.get("dst", "") for r in json.loads(result.out or "[]") if r.get("dst") not in (None, "default")]


@dataclass(frozen=True)
class Route:
    dev: str
    src: str


@dataclass(frozen=True)
class RouteTo(Fact[Route]):
    """The interface and source address the kernel picks for `ip` (`ip route get`)."""

    ip: str
    what = "route"

    def __post_init__(self) -> None:
        validate.ipv4(self.ip)  # it goes into the command

    @property
    def command(self) -> str:
        return f"ip -j route get {self.ip}"

    def parse(self, result: Result) -> Route:
        found = json.loads(result.out) if result.ok and result.out.strip() else []
        return Route(found[0].get("dev", ""), found[0].get("prefsrc", "")) if found else Route("", "")

    def check(self, value: Route, host: str) -> Route:
        if value.dev:  # interface names go into capture and fault commands
            validate.interface(value.dev, reported_by=host)
        return value


@dataclass(frozen=True)
class Internet(Fact[str]):
    """A way out: "yes", or where it ends: "noroute", "nodns", "noreply"."""

    command = ("ip route show default | grep -q . || { echo noroute; exit 0; }; "
               "timeout 4 getent hosts google.com >/dev/null 2>&1 || { echo nodns; exit 0; }; "
               "ping -c 1 -W 3 google.com >/dev/null 2>&1 || { echo noreply; exit 0; }; echo yes")
    timeout = 15.0

    def parse(self, result: Result) -> str:
        word = result.out.strip()
        return word if word in ("yes", "noroute", "nodns", "noreply") else "noroute"


@dataclass(frozen=True)
class VxlanDevice:
    ns: str  # docker's network namespace (/var/run/docker/netns/NS)
    name: str
    vni: int
    port: int
    mtu: int
    fdb_peers: list[str] = field(default_factory=list)  # underlay addresses in its forwarding table


@dataclass(frozen=True)
class VxlanDevices(Fact[list[VxlanDevice]]):
    """VXLAN links in docker's network namespaces: VNI, port, MTU, and the peers of their
    forwarding tables. Per namespace: `netns PATH`, then `links` and `fdb`, each a JSON line."""

    command = ('for ns in /var/run/docker/netns/*; do [ -e "$ns" ] || continue; echo "netns $ns"; '
               'echo links; nsenter --net="$ns" ip -d -j link show type vxlan; echo; '
               'echo fdb; nsenter --net="$ns" bridge -j fdb show; echo; done')
    what = "VXLAN devices"

    def parse(self, result: Result) -> list[VxlanDevice]:
        devices: list[VxlanDevice] = []
        ns, section = "", ""
        docs: dict[str, str] = {}
        for line in [*result.out.splitlines(), "netns "]:
            if line.startswith("netns "):
                if ns:
                    devices += _devices(ns, json.loads(docs.get("links") or "[]"), json.loads(docs.get("fdb") or "[]"))
                ns, docs, section = os.path.basename(line[6:].strip()), {}, ""
            elif line in ("links", "fdb"):
                section = line
            elif line.strip() and section:
                docs[section] = docs.get(section, "") + line
        return devices


def _devices(ns: str, links: list[dict[str, Any]], fdb: list[dict[str, Any]]) -> list[VxlanDevice]:
    found = []
    for link in links:
        info = (link.get("linkinfo") or {}).get("info_data") or {}
        name = link.get("ifname", "")
        peers = sorted({e["dst"] for e in fdb if e.get("dst") and e.get("ifname", name) == name})
        found.append(VxlanDevice(ns, name, info.get("id", 0), info.get("port", 0), link.get("mtu", 0), peers))
    return found
