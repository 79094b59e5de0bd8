"""What the docker provider needs from this machine's Docker: the lab's network,
and removal of anything labelled as the lab's that Vagrant did not remove."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable

from .errors import LabError
from .runner import Result, run_local
from .spec import LabSpec


def docker(*args: str, timeout: float = 60, check: bool = False) -> Result:
    """This machine's docker client; see `run_local` for its errors."""
    return run_local(["docker", *args], timeout=timeout, check=check)


def daemon_version() -> str | None:
    """This machine's dockerd version, or None when no daemon answers."""
    try:
        proc = docker("version", "--format", "{{.Server.Version}}", timeout=10)
    except LabError:  # no client, or a daemon that does not answer in time
        return None
    return proc.out.strip() if proc.ok else None


def ensure_network(spec: LabSpec) -> None:
    """The lab's private network: a docker bridge with the lab's subnet, made once."""
    name = spec.docker_network
    proc = docker("network", "inspect", name)
    if proc.ok:
        try:
            configs = json.loads(proc.out)[0].get("IPAM", {}).get("Config") or []
        except (ValueError, LookupError, AttributeError):
            raise LabError(f"`docker network inspect {name}` printed no network: {proc.out[:200]!r}") from None
        subnets = {c.get("Subnet") for c in configs}
        if spec.subnet not in subnets:
            raise LabError(
                f"docker network {name} exists with subnet {', '.join(map(str, subnets))}, not {spec.subnet}",
                hint=f"`labctl --lab {spec.name} down` removes it",
            )
        return
    gateway = str(ipaddress.ip_network(spec.subnet).network_address + 1)
    proc = docker("network", "create", "--driver", "bridge", "--subnet", spec.subnet, "--gateway", gateway,
                  "--label", f"labctl.lab={spec.name}", name)
    if not proc.ok:
        err = proc.err.strip()
        hint = "another lab or docker network uses this subnet: pick another with --subnet" \
            if "overlap" in err.lower() else None
        raise LabError(f"cannot create docker network {name} ({spec.subnet}): {err}", hint=hint)


def bridge_name(network: str) -> str:
    """The Linux bridge of a docker bridge network on this machine (br-<short id>)."""
    proc = docker("network", "inspect", "--format", "{{.Id}}", network, timeout=30)
    if not proc.ok:
        raise LabError(f"docker network {network} not found on this machine", hint="`labctl up`")
    return "br-" + proc.out.strip()[:12]


def remove_lab_leftovers(lab: str, on_line: Callable[[str], None]) -> None:
    """Containers (with their anonymous volumes) and networks labelled as this lab's."""
    label = f"label=labctl.lab={lab}"
    ids = docker("ps", "-aq", "--filter", label).out.split()
    if ids:
        on_line(f"removing {len(ids)} leftover container(s) of lab {lab}")
        docker("rm", "-f", "-v", *ids, check=True)
    for net in docker("network", "ls", "-q", "--filter", label).out.split():
        docker("network", "rm", net, check=True)


def lab_leftovers(lab: str) -> list[str]:
    """Containers and networks labelled as this lab's that still exist."""
    label = f"label=labctl.lab={lab}"
    names = docker("ps", "-a", "--filter", label, "--format", "{{.Names}}").out.split()
    nets = docker("network", "ls", "--filter", label, "--format", "{{.Name}}").out.split()
    return [f"container {n}" for n in names] + [f"docker network {n}" for n in nets]


def remove_untracked_nodes(lab: str, tracked: set[str], on_line: Callable[[str], None]) -> None:
    """Remove this lab's node containers whose IDs Vagrant has not recorded."""
    proc = docker("ps", "-aq", "--no-trunc", "--filter", f"label=labctl.lab={lab}")
    orphans = [cid for cid in proc.out.split() if cid not in tracked]
    if orphans:
        on_line(f"removing {len(orphans)} container(s) an interrupted run left behind")
        docker("rm", "-f", "-v", *orphans, check=True)


def attach_to_network(spec: LabSpec, containers: dict[str, str], on_line: Callable[[str], None]) -> None:
    """Connect each host's container (host -> id) to the lab's network where it is not: a `vagrant
    up` interrupted between `docker run` and `docker network connect` leaves a node Vagrant takes
    for made, without its private address."""
    for host, cid in containers.items():
        nets = docker("inspect", "-f", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}", cid)
        if not nets.ok or spec.docker_network in nets.out.split():
            continue  # gone (Vagrant makes it again) or attached
        on_line(f"{host} is not on the lab's network (an interrupted run?): connecting it")
        docker("network", "connect", "--ip", spec.host(host).ip, spec.docker_network, cid, check=True)
