"""What the hosts' kernels and networks cannot do, found before a scenario runs.

- IPVS: the swarm's routing mesh and service virtual IPs are IPVS load balancers.
  Without it, a published port answers nowhere and a service's VIP is silent.
- ESP: encrypted overlays (`--opt encrypted`) need the kernel's ESP transform.
- A way out to the internet: only then can a container ping google.com.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import validate
from ..errors import LabError
from ..ssh import Host, fan_out, raise_first

IPVS_LOG_LINE = "Could not get ipvs family information"

# One round trip per host; each probe prints `key=value`.
PROBE = r"""
if [ -e /proc/net/ip_vs ] || { modprobe ip_vs 2>/dev/null && [ -e /proc/net/ip_vs ]; }; then
  echo ipvs=yes
elif grep -qs "Could not get ipvs family information" /var/log/dockerd.log \
  || journalctl -u docker --no-pager 2>/dev/null | grep -qs "Could not get ipvs family information"; then
  echo ipvs=log
else
  echo ipvs=no
fi
if ! command -v unshare >/dev/null 2>&1; then echo esp=unknown
elif unshare -n ip xfrm state add src 10.0.0.1 dst 10.0.0.2 proto esp spi 0x100 mode transport \
  enc 'cbc(aes)' 0x00112233445566778899aabbccddeeff \
  auth 'hmac(sha256)' 0x00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff 2>/dev/null
then echo esp=yes
else echo esp=no
fi
if [ -z "$(ip route show default 2>/dev/null)" ]; then echo internet=noroute
elif ! timeout 4 getent hosts google.com >/dev/null 2>&1; then echo internet=nodns
elif ! ping -c 1 -W 3 google.com >/dev/null 2>&1; then echo internet=noreply
else echo internet=yes
fi
echo node=$(docker info --format '{{.Name}}' 2>/dev/null)
echo swarm=$(docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null || echo no-dockerd)
"""

GLOBAL = ("ipvs", "esp")  # capabilities that every host must have

_IPVS_REASONS = {
    "log": f'no IPVS in the kernel (dockerd: "{IPVS_LOG_LINE}"): no routing mesh, no service VIPs',
    "no": "no IPVS in the kernel (no /proc/net/ip_vs, ip_vs cannot be loaded): no routing mesh, no service VIPs",
}
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


def parse(text: str) -> tuple[dict[str, str | None], str]:
    missing, node, _ = parse_all(text)
    return missing, node


def parse_all(text: str) -> tuple[dict[str, str | None], str, str]:
    values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    ipvs = values.get("ipvs", "no")
    esp = values.get("esp", "unknown")
    internet = values.get("internet", "noroute")
    missing: dict[str, str | None] = {
        "ipvs": None if ipvs == "yes" else _IPVS_REASONS.get(ipvs, _IPVS_REASONS["no"]),
        "esp": "no ESP transform in this kernel: encrypted overlays cannot work" if esp == "no" else None,
        "internet": None if internet == "yes" else _INTERNET_REASONS.get(internet, _INTERNET_REASONS["noroute"]),
    }
    return missing, values.get("node", "").strip(), values.get("swarm", "").strip() or "no-dockerd"


def detect(hosts: dict[str, Host]) -> Limits:
    def probe(host: Host) -> tuple[dict[str, str | None], str, str]:
        return parse_all(host.run(PROBE, sudo=True, timeout=30).out)
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
