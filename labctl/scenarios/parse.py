"""Reading what docker and busybox print, as a person reads it (pure functions)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class NetworkRow:
    id: str
    name: str
    driver: str
    scope: str


def network_ls(text: str) -> dict[str, NetworkRow]:
    """`docker network ls` (the table), by network name."""
    rows = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] != "NETWORK":
            rows[parts[1]] = NetworkRow(*parts)
    return rows


def service_ls(text: str) -> dict[str, tuple[int, int]]:
    """`docker service ls` (the table): name -> (running, desired) replicas."""
    found = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[0] != "ID":
            match = re.fullmatch(r"(\d+)/(\d+)", parts[3])
            if match:
                found[parts[1]] = (int(match.group(1)), int(match.group(2)))
    return found


@dataclass(frozen=True)
class NetworkInspect:
    id: str
    name: str
    gateway: str
    subnet: str
    containers: dict[str, str]  # container name -> IPv4 address (without the prefix)
    peers: dict[str, str]  # peer name -> IP

    def tasks(self) -> dict[str, str]:
        """Containers without the load balancer endpoints (`lb-NET`, `NET-endpoint`)."""
        return {n: ip for n, ip in self.containers.items() if not n.endswith("-endpoint") and not n.startswith("lb-")}


def network_inspect(text: str) -> NetworkInspect:
    data = json.loads(text)
    net = data[0] if isinstance(data, list) else data
    containers = {c.get("Name", cid): (c.get("IPv4Address") or "").split("/")[0]
                  for cid, c in (net.get("Containers") or {}).items()}
    peers = {p.get("Name", ""): p.get("IP", "") for p in net.get("Peers") or []}
    configs = (net.get("IPAM") or {}).get("Config") or []
    gateway = next((c.get("Gateway", "") for c in configs if c.get("Gateway")), "")
    subnet = next((c.get("Subnet", "") for c in configs if "." in c.get("Subnet", "")), "")
    return NetworkInspect(net.get("Id", ""), net.get("Name", ""), gateway, subnet, containers, peers)


def nslookup_addresses(text: str) -> list[str]:
    """IPv4 addresses of the answer (busybox and bind nslookup), not the server's."""
    addresses: list[str] = []
    in_answer = False
    for line in text.splitlines():
        if line.startswith("Name:"):
            in_answer = True
            continue
        match = re.match(r"Address(?: \d+)?:\s*([0-9.]+)(?:#\d+)?$", line.strip())
        if in_answer and match and match.group(1) not in addresses:
            addresses.append(match.group(1))
    return addresses


def ip_addr_ipv4(text: str, interface: str = "eth0") -> str:
    """The first IPv4 address of an interface in `ip addr show`."""
    current = ""
    for line in text.splitlines():
        header = re.match(r"\d+:\s+([^:@]+)", line)
        if header:
            current = header.group(1)
        match = re.search(r"inet ([0-9.]+)/", line)
        if match and current == interface:
            return match.group(1)
    return ""


def service_ports(pretty: str) -> list[dict[str, str]]:
    """The `Ports:` section of `docker service inspect --pretty`."""
    ports: list[dict[str, str]] = []
    in_ports = False
    for line in pretty.splitlines():
        if line.startswith("Ports:"):
            in_ports = True
            continue
        if in_ports:
            match = re.match(r"\s*(\w+)\s*=\s*(\S*)", line)
            if not match:
                if line.strip() and not line.startswith(" "):
                    break
                continue
            key, value = match.groups()
            if key == "PublishedPort":
                ports.append({})
            if ports:
                ports[-1][key] = value
    return ports
