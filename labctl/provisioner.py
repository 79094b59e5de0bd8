"""Run the shell provisioners of provision/ on every host at once, over SSH."""

from __future__ import annotations

from .errors import LabError
from .paths import provision_dir
from .ssh import Host, fan_out, raise_first

PROVISIONERS = ("kernel.sh", "docker.sh", "tools.sh")


def script() -> bytes:
    """All provisioners as one script: one SSH round trip per host."""
    parts = [b"set -e\n"]
    for name in PROVISIONERS:
        body = (provision_dir() / name).read_bytes()
        parts.append(b"(\n" + body + b"\n) || { echo \"provisioner " + name.encode() + b" failed\" >&2; exit 1; }\n")
    return b"".join(parts)


def provision_host(host: Host, body: bytes) -> list[str]:
    """Provision one host; the changes it made (none on a provisioned host)."""
    result = host.run("sudo -n sh -s", stdin=body, timeout=900)
    if not result.ok:
        raise LabError(f"provisioning {host.name} failed: {result.tail(4)}",
                       hint=f"`labctl exec {host.name} -- sudo tail /var/log/dockerd.log` shows dockerd's side")
    return [line.removeprefix("changed: ") for line in result.out.splitlines() if line.startswith("changed: ")]


def provision_all(hosts: list[Host]) -> dict[str, list[str]]:
    body = script()
    return raise_first(fan_out(hosts, lambda h: provision_host(h, body)))
