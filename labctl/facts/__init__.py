"""Host state, read one way: each fact is a command and its parser, side by side.

`read(host, fact)` runs one fact; `read_many(host, [facts...])` reads several in one SSH
round trip. Parsers are pure and tested with recorded outputs (tests/facts/).
"""

from .base import Fact, FactError, Readings, read, read_many
from .docker import (
    DEFAULT_DATA_PORT,
    DataPathPort,
    DockerdProcess,
    DockerInfo,
    DockerState,
    NodeEntry,
    NodeList,
    Overlay,
    OverlayNetworks,
    Service,
    Services,
    SwarmInfo,
)
from .firewall import FirewallRule, FirewallRules, dropping, parse_rules
from .kernel import IPVS_LOG_LINE, Capability, EspSupport, IpvsSupport, KernelRelease, VxlanSupport
from .network import Hostname, Interface, Interfaces, Internet, Route, Routes, RouteTo, VxlanDevice, VxlanDevices
from .ping import ContainerPing, PingSummary, parse_ping

__all__ = [
    "DEFAULT_DATA_PORT", "IPVS_LOG_LINE", "Capability", "ContainerPing", "DataPathPort", "DockerInfo",
    "DockerState", "DockerdProcess", "EspSupport", "Fact", "FactError", "FirewallRule", "FirewallRules",
    "Hostname", "Interface", "Interfaces", "Internet", "IpvsSupport", "KernelRelease", "NodeEntry", "NodeList",
    "Overlay", "OverlayNetworks", "PingSummary", "Readings", "Route", "RouteTo", "Routes", "Service", "Services",
    "SwarmInfo", "VxlanDevice", "VxlanDevices", "VxlanSupport", "dropping", "parse_ping", "parse_rules", "read",
    "read_many",
]
