"""What the hosts' kernels and networks cannot do, found before a scenario runs.

- IPVS: the swarm's routing mesh and service virtual IPs are IPVS load balancers.
  Without it, a published port answers nowhere and a service's VIP is silent.
- ESP: encrypted overlays (`--opt encrypted`) need the kernel's ESP transform with AES-GCM.
- A way out to the internet: only then can a container ping google.com.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import facts, validate
from ..errors import LabError
from ..ssh import Host, fan_out, raise_first

# One round trip per host.
PROBE: tuple[facts.Fact[Any], ...] = (facts.DockerInfo(), facts.IpvsSupport(), facts.EspSupport(), facts.Internet())

GLOBAL = ("ipvs", "esp")  # capabilities that every host must have

IPVS_MISSING = (f'no IPVS in the kernel (no generic netlink family "IPVS"; dockerd logs "{facts.IPVS_LOG_LINE}"): '
                "no routing mesh, no service VIPs")
_INTERNET_REASONS = {
    "noroute": "the host has no default route: no way out to the internet",
    "nodns": "google.com does not resolve on the host: no way out to the internet",
    "noreply": "google.com does not answer ping from the host: no way out to the internet",
}


@dataclass
class Limits:
    """Per capability, per host: None where it works, else the reason it cannot."""

    missing_by_host: dict[str, dict[str, str | None]] = field(default_factory=dict)
    node_names: dict[str, str] = field(default_factory=dict)
    swarm_states: dict[str, str] = field(default_factory=dict)  # `docker info`: active, inactive, ...

    def missing(self, capability: str, host: str | None = None) -> str | None:
        """Why `capability` cannot work on `host`, or None. IPVS and ESP count lab-wide:
        the mesh and encrypted overlays span every host, so one host without them is enough."""
        hosts = [host] if host is not None and capability not in GLOBAL else list(self.missing_by_host)
        where = [h for h in hosts if self.missing_by_host.get(h, {}).get(capability)]
        if not where:
            return None
        reason = self.missing_by_host[where[0]][capability]
        return reason if len(hosts) == 1 or len(where) == len(hosts) else f"{reason} (on {', '.join(where)})"

    def summary(self) -> list[str]:
        lines = []
        for capability, text in (("ipvs", "no IPVS"), ("esp", "no ESP (encrypted overlays)"),
                                 ("internet", "no way out to the internet")):
            hosts = [h for h, caps in self.missing_by_host.items() if caps.get(capability)]
            if hosts:
                lines.append(f"{text} on {', '.join(hosts)}")
        return lines

    def to_json(self) -> dict[str, object]:
        return {"missing": self.missing_by_host, "node_names": self.node_names}


def missing(ipvs: facts.Capability, esp: facts.Capability, internet: str) -> dict[str, str | None]:
    """Per capability, None where it works (or could not be tested), else why it cannot."""
    return {
        "ipvs": IPVS_MISSING if ipvs.ok is False else None,
        "esp": "no ESP (AES-GCM) transform in this kernel: encrypted overlays cannot work" if esp.ok is False
        else None,
        "internet": None if internet == "yes" else _INTERNET_REASONS.get(internet, _INTERNET_REASONS["noroute"]),
    }


def detect(hosts: dict[str, Host]) -> Limits:
    def probe(host: Host) -> tuple[dict[str, str | None], str, str]:
        readings = facts.read_many(host, PROBE, timeout=30)
        docker = readings[facts.DockerInfo()]
        found = missing(readings[facts.IpvsSupport()], readings[facts.EspSupport()], readings[facts.Internet()])
        return found, docker.name, docker.swarm.state if docker.running else "no-dockerd"
    limits = Limits()
    for name, found in raise_first(fan_out(list(hosts.values()), probe), what="the kernel-limit probe").items():
        limits.missing_by_host[name], node, limits.swarm_states[name] = found
        # the node name goes into the scenarios' commands (--constraint node.hostname!=NAME)
        limits.node_names[name] = validate.hostname(node, reported_by=name) if node else name
    return limits


def require_swarm(limits: Limits) -> None:
    """Every host an active swarm member: scenarios are about the swarm's networks."""
    bad = {h: s for h, s in limits.swarm_states.items() if s != "active"}
    if bad:
        raise LabError("not every host is in the swarm: " + ", ".join(f"{h} is {s}" for h, s in bad.items()),
                       hint="`labctl status` shows each host; `labctl up` heals the lab")
