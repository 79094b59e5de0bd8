"""The lab description: hosts, roles, private addresses, provider.

It is the single source of these facts: labctl writes it as JSON into the lab's
state folder and the Vagrantfile reads that file (LABCTL_LAB_JSON).
"""

from __future__ import annotations

import ipaddress
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from .errors import UsageError

PROVIDERS = ("virtualbox", "libvirt", "docker")  # Vagrant's
EXISTING = "existing"  # hosts that already run, reached over SSH, no Vagrant
HOST_KEY_POLICIES = ("strict", "accept-new")
ROLES = ("manager", "worker")
DEFAULT_NAME = "lab"
DEFAULT_SUBNET = "192.168.56.0/24"
# VirtualBox >= 6.1.28 only allows host-only addresses in this range by default.
DEFAULT_SUBNET_POOL = "192.168.56.0/21"
DEFAULT_BOX = "debian/bookworm64"
DEFAULT_NODE_IMAGE = "labctl-node:bookworm"
LAB_FILE_NAME = "labctl.toml"
# (name, role, host number in the subnet); aliases host1.. follow this order.
DEFAULT_HOSTS = (("manager", "manager", 10), ("worker-1", "worker", 11), ("worker-2", "worker", 12))

_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")  # host names
# A lab's name becomes a folder, Docker resource and VM names: a plain word, never a path.
LAB_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")
LAB_NAME_RULE = "lower-case letters, digits and '-', starting with a letter or digit, at most 31"
_LAB_KEYS = {"name", "subnet", "provider", "box", "node_image", "memory", "cpus", "ssh_user", "ssh_key",
             "host_keys"}
_HOST_KEYS = {"role", "ip", "ssh_host", "ssh_port", "ssh_user", "ssh_key"}
# An SSH address: a DNS name or an IPv4/IPv6 address, nothing a shell would read.
_SSH_HOST_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.:-]{0,252}$")


@dataclass(frozen=True)
class HostSpec:
    name: str
    role: str
    ip: str
    aliases: tuple[str, ...] = ()
    # Only for existing hosts: where their sshd answers.
    ssh_host: str | None = None
    ssh_port: int = 22
    ssh_user: str | None = None
    ssh_key: str | None = None


@dataclass(frozen=True)
class LabSpec:
    name: str = DEFAULT_NAME
    subnet: str = DEFAULT_SUBNET
    hosts: tuple[HostSpec, ...] = field(default_factory=tuple)
    provider: str | None = None  # None: detect at `up`
    box: str = DEFAULT_BOX
    node_image: str = DEFAULT_NODE_IMAGE
    memory: int = 1024
    cpus: int = 1
    host_keys: str = "strict"  # existing hosts: known_hosts checking

    @property
    def existing(self) -> bool:
        return self.provider == EXISTING

    @property
    def manager(self) -> HostSpec:
        return next(h for h in self.hosts if h.role == "manager")

    @property
    def workers(self) -> list[HostSpec]:
        return [h for h in self.hosts if h.role == "worker"]

    @property
    def host_names(self) -> list[str]:
        return [h.name for h in self.hosts]

    @property
    def netmask(self) -> str:
        return str(ipaddress.ip_network(self.subnet).netmask)

    @property
    def docker_network(self) -> str:
        """Name of the private network for the docker provider (one per lab)."""
        return f"labctl-{self.name}"

    def resource_name(self, host: str) -> str:
        """Name of a host's VM or container: lab-scoped so two labs never collide."""
        return f"labctl-{self.name}-{host}"

    def host(self, name: str) -> HostSpec:
        """A host by name or by the tutorial's alias (host1, host2, host3)."""
        for h in self.hosts:
            if name == h.name or name in h.aliases:
                return h
        known = ", ".join(f"{h.name} ({'/'.join(h.aliases)})" if h.aliases else h.name for h in self.hosts)
        raise UsageError(f"no host named '{name}' in lab '{self.name}'", hint=f"hosts are: {known}")

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "subnet": self.subnet,
            "netmask": self.netmask,
            "provider": self.provider,
            "box": self.box,
            "node_image": self.node_image,
            "memory": self.memory,
            "cpus": self.cpus,
            "docker_network": self.docker_network,
            "host_keys": self.host_keys,
            "hosts": [
                {"name": h.name, "role": h.role, "ip": h.ip, "aliases": list(h.aliases),
                 "resource_name": self.resource_name(h.name),
                 "ssh_host": h.ssh_host, "ssh_port": h.ssh_port, "ssh_user": h.ssh_user, "ssh_key": h.ssh_key}
                for h in self.hosts
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LabSpec:
        keys = _HOST_KEYS if data.get("provider") == EXISTING else {"role", "ip"}
        hosts = {h["name"]: {k: h[k] for k in keys if h.get(k) is not None} for h in data["hosts"]}
        raw = {"lab": {k: data[k] for k in _LAB_KEYS if data.get(k) is not None}, "hosts": hosts}
        return build_spec(raw)


def _fail(source: str, field_name: str, problem: str, text: str | None = None) -> UsageError:
    where = source
    if text is not None:
        key = field_name.rsplit(".", 1)[-1]
        for lineno, line in enumerate(text.splitlines(), 1):
            if re.match(rf"\s*\[?\s*\"?{re.escape(key)}\"?\s*[=\]]", line) or re.match(
                rf"\s*\[\s*hosts\.\"?{re.escape(key)}\"?\s*\]", line
            ):
                where = f"{source}, line {lineno}"
                break
    return UsageError(f"{where}: field '{field_name}' {problem}", hint="see the lab file format in the README")


def build_spec(
    raw: dict[str, Any], source: str = "lab settings", text: str | None = None,
    default_subnet: str = DEFAULT_SUBNET,
) -> LabSpec:
    """Validate a raw description (lab file + flags) and fill in the defaults."""
    lab = raw.get("lab", {})
    if not isinstance(lab, dict):
        raise _fail(source, "lab", "must be a table", text)
    for key in lab:
        if key not in _LAB_KEYS:
            raise _fail(source, f"lab.{key}", f"is unknown (known: {', '.join(sorted(_LAB_KEYS))})", text)
    for key in raw:
        if key not in ("lab", "hosts"):
            raise _fail(source, key, "is unknown (known sections: [lab], [hosts.NAME])", text)

    def get(key: str, typ: type, default: Any) -> Any:
        value = lab.get(key, default)
        if (value is not None and not isinstance(value, typ)) or (isinstance(value, bool) and typ is int):
            raise _fail(source, f"lab.{key}", f"must be a {typ.__name__}, not {value!r}", text)
        return value

    name = get("name", str, DEFAULT_NAME)
    if not LAB_NAME_RE.fullmatch(name):
        raise _fail(source, "lab.name", f"{name!r} must be {LAB_NAME_RULE}", text)
    provider = get("provider", str, None)
    if provider in ("auto", ""):
        provider = None
    if provider is not None and provider not in (*PROVIDERS, EXISTING):
        raise _fail(source, "lab.provider", f"'{provider}' is not one of {', '.join(PROVIDERS)}, {EXISTING} or auto",
                    text)
    host_keys = get("host_keys", str, "strict")
    if host_keys not in HOST_KEY_POLICIES:
        raise _fail(source, "lab.host_keys", f"'{host_keys}' is not one of {', '.join(HOST_KEY_POLICIES)}", text)
    if provider == EXISTING and "subnet" not in lab:
        default_subnet = _covering_subnet(raw.get("hosts"))
    subnet_text = get("subnet", str, default_subnet)
    try:
        subnet = ipaddress.IPv4Network(subnet_text, strict=True)
    except ValueError as exc:
        raise _fail(source, "lab.subnet", f"is not an IPv4 network ({exc})", text) from None
    if subnet.prefixlen > 28:
        raise _fail(source, "lab.subnet", f"{subnet} is too small (at most /28)", text)
    memory = get("memory", int, 1024)
    cpus = get("cpus", int, 1)
    if memory < 256 or cpus < 1:
        raise _fail(source, "lab.memory" if memory < 256 else "lab.cpus", "is too small", text)

    ssh_defaults = {"ssh_user": get("ssh_user", str, None), "ssh_key": get("ssh_key", str, None)}
    hosts = _build_hosts(raw.get("hosts"), subnet, source, text, provider == EXISTING, ssh_defaults)
    return LabSpec(
        name=name,
        subnet=str(subnet),
        hosts=hosts,
        provider=provider,
        box=get("box", str, DEFAULT_BOX),
        node_image=get("node_image", str, DEFAULT_NODE_IMAGE),
        memory=memory,
        cpus=cpus,
        host_keys=host_keys,
    )


def check_lab_name(name: str, source: str) -> str:
    """A lab name from the command line, the environment or a lab file, or a usage error."""
    if not LAB_NAME_RE.fullmatch(name):
        raise UsageError(f"{source}: {name!r} is not a lab name ({LAB_NAME_RULE})",
                         hint="e.g. --lab lab2; `labctl status --all` lists the labs")
    return name


def _covering_subnet(raw_hosts: Any) -> str:
    """For existing hosts without a subnet: the smallest network holding their addresses."""
    addrs = []
    if isinstance(raw_hosts, dict):
        for fields in raw_hosts.values():
            try:
                addrs.append(ipaddress.IPv4Address(str(fields.get("ip"))))
            except (ValueError, AttributeError):
                pass
    if not addrs:
        return DEFAULT_SUBNET
    net = ipaddress.IPv4Network(f"{addrs[0]}/24", strict=False)
    while not all(a in net for a in addrs) and net.prefixlen > 8:
        net = net.supernet()
    return str(net)


def _build_hosts(
    raw_hosts: Any, subnet: ipaddress.IPv4Network, source: str, text: str | None,
    existing: bool = False, ssh_defaults: dict[str, Any] | None = None,
) -> tuple[HostSpec, ...]:
    if raw_hosts is None:
        raw_hosts = {name: {"role": role} for name, role, _ in DEFAULT_HOSTS}
    if not isinstance(raw_hosts, dict) or not raw_hosts:
        raise _fail(source, "hosts", "must have at least one [hosts.NAME] table", text)
    default_ips = {name: num for name, _, num in DEFAULT_HOSTS}
    hosts: list[HostSpec] = []
    seen_ips: dict[str, str] = {}
    for index, (name, fields) in enumerate(raw_hosts.items()):
        if not isinstance(fields, dict):
            raise _fail(source, f"hosts.{name}", "must be a table", text)
        if not _NAME_RE.fullmatch(name) or re.match(r"^host\d+$", name):
            raise _fail(source, f"hosts.{name}", "is not a valid host name (lower-case, digits, '-'; not hostN)", text)
        for key in fields:
            if key not in _HOST_KEYS:
                raise _fail(source, f"hosts.{name}.{key}", f"is unknown (known: {', '.join(sorted(_HOST_KEYS))})", text)
        role = fields.get("role", "manager" if name == "manager" else "worker")
        if role not in ROLES:
            raise _fail(source, f"hosts.{name}.role", f"'{role}' is not one of {', '.join(ROLES)}", text)
        ip_text = fields.get("ip")
        if existing and ip_text is None:
            raise _fail(source, f"hosts.{name}.ip", "is required for existing hosts (the address the swarm "
                        "advertises)", text)
        if ip_text is None:
            ip = subnet.network_address + default_ips.get(name, 10 + index)
        else:
            try:
                ip = ipaddress.IPv4Address(str(ip_text))
            except ValueError:
                raise _fail(source, f"hosts.{name}.ip", f"'{ip_text}' is not an IPv4 address", text) from None
        usable = ip in subnet and ip not in (subnet.network_address, subnet.broadcast_address,
                                              subnet.network_address + 1)
        if not usable:
            raise _fail(source, f"hosts.{name}.ip", f"{ip} is not a host address of {subnet} (.1 is the gateway)", text)
        if str(ip) in seen_ips:
            raise _fail(source, f"hosts.{name}.ip", f"{ip} is already used by {seen_ips[str(ip)]}", text)
        seen_ips[str(ip)] = name
        ssh = _ssh_fields(name, fields, ssh_defaults or {}, existing, source, text)
        hosts.append(HostSpec(name=name, role=role, ip=str(ip), aliases=(f"host{index + 1}",), **ssh))
    managers = [h.name for h in hosts if h.role == "manager"]
    if len(managers) != 1:
        raise _fail(source, "hosts", f"needs exactly one host with role = \"manager\" (found {len(managers)})", text)
    return tuple(hosts)


def _ssh_fields(name: str, fields: dict[str, Any], defaults: dict[str, Any], existing: bool, source: str,
                text: str | None) -> dict[str, Any]:
    """How to reach an existing host; nothing of it may reach a shell unchecked."""
    given = [k for k in ("ssh_host", "ssh_port", "ssh_user", "ssh_key") if k in fields]
    if not existing:
        if given:
            raise _fail(source, f"hosts.{name}.{given[0]}", 'only applies with provider = "existing"', text)
        return {}
    ssh_host = fields.get("ssh_host")
    if not isinstance(ssh_host, str) or not _SSH_HOST_RE.fullmatch(ssh_host):
        raise _fail(source, f"hosts.{name}.ssh_host",
                    "must be a host name or address (letters, digits, '.', '-', ':')" if ssh_host
                    else "is required for existing hosts", text)
    port = fields.get("ssh_port", 22)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise _fail(source, f"hosts.{name}.ssh_port", f"must be a port number, not {port!r}", text)
    user = fields.get("ssh_user", defaults.get("ssh_user")) or "root"
    if not isinstance(user, str) or not re.fullmatch(r"[a-z_][a-z0-9_.-]{0,31}", user):
        raise _fail(source, f"hosts.{name}.ssh_user", f"{user!r} is not a user name", text)
    key = fields.get("ssh_key", defaults.get("ssh_key"))
    if key is not None and (not isinstance(key, str) or not key or "\0" in key):
        raise _fail(source, f"hosts.{name}.ssh_key", "must be the path of a private key file", text)
    return {"ssh_host": ssh_host, "ssh_port": port, "ssh_user": user,
            "ssh_key": str(Path(key).expanduser()) if key else None}


def read_lab_file(path: Path) -> tuple[dict[str, Any], str]:
    """Parse a lab file; syntax errors name the line."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise UsageError(f"cannot read lab file {path}: {exc.strerror}") from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}", hint="fix the line it names") from None


def load_spec(
    path: Path | None, overrides: dict[str, Any] | None = None, default_subnet: str = DEFAULT_SUBNET
) -> LabSpec:
    """The lab from a lab file (if any) with flag overrides applied; `default_subnet`
    is used when neither sets one."""
    raw: dict[str, Any] = {}
    text = None
    source = "flags"
    if path is not None:
        raw, text = read_lab_file(path)
        source = str(path)
    if overrides:
        lab = dict(raw.get("lab", {}))
        lab.update({k: v for k, v in overrides.items() if v is not None})
        raw = {**raw, "lab": lab}
    return build_spec(raw, source, text, default_subnet)


def describe(spec: LabSpec) -> dict[str, str]:
    """The facts of a lab that `up` cannot change in place, as text."""
    return {"subnet": spec.subnet, "box": spec.box, "node_image": spec.node_image,
            "memory": str(spec.memory), "cpus": str(spec.cpus),
            "hosts": ", ".join(f"{h.name} {h.role} {h.ip}" for h in spec.hosts)}


def free_subnet(in_use: set[str]) -> str:
    """The first /24 of the default pool that no other lab on this machine uses."""
    taken = [ipaddress.ip_network(s) for s in in_use]
    for candidate in ipaddress.ip_network(DEFAULT_SUBNET_POOL).subnets(new_prefix=24):
        if not any(candidate.overlaps(t) for t in taken):
            return str(candidate)
    raise UsageError("every /24 of 192.168.56.0/21 is used by another lab", hint="set lab.subnet or pass --subnet")
