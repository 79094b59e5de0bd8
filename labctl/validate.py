"""What may reach a shell on a host: image references, container, network and node names,
interface names, addresses and ports - checked where they enter.

A value a user gave is refused with a UsageError (exit 2). A value a host reported
(`reported_by=HOST`) that is not of the expected shape is a LabError (exit 1): the
host is not what labctl expects, and nothing is run with that value.
"""

from __future__ import annotations

import ipaddress
import re

from .errors import LabError, UsageError

# docker's reference grammar, simplified: [registry[:port]/]path[:tag][@digest]
_IMAGE_RE = re.compile(
    r"^(?:[a-zA-Z0-9][a-zA-Z0-9.-]*(?::[0-9]{1,5})?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$"
)
# container and network names or IDs, as dockerd accepts them
_DOCKER_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")
_NODE_ID_RE = re.compile(r"^[a-z0-9]{1,64}$")
# a host name (swarm node names are host names)
_HOSTNAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,252})$")
# Linux: at most 15 bytes, no '/', no whitespace; we also refuse what a shell would read
_IFACE_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,14}$")


def _refuse(what: str, value: object, reported_by: str | None, hint: str | None) -> LabError:
    shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
    if reported_by is not None:
        return LabError(f"{reported_by} reported {shown} as {what}: not of that shape, so it is not used",
                        hint=hint or f"`labctl exec {reported_by} -- ...` to look at the host")
    return UsageError(f"{shown} is not {what}", hint=hint)


def _text(value: object, pattern: re.Pattern[str], what: str, reported_by: str | None, hint: str | None) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise _refuse(what, value, reported_by, hint)
    return value


def image(value: object, reported_by: str | None = None, hint: str | None = None) -> str:
    """A docker image reference: name[:tag][@digest], optionally with a registry."""
    if isinstance(value, str) and len(value) > 255:
        raise _refuse("an image reference", value, reported_by, hint)
    return _text(value, _IMAGE_RE, "an image reference", reported_by,
                 hint or "an image is like alpine, nginx:1.27 or registry.example:5000/team/app:tag")


def container(value: object, reported_by: str | None = None, hint: str | None = None) -> str:
    """A container name or ID."""
    return _text(value.lstrip("/") if isinstance(value, str) and reported_by else value, _DOCKER_NAME_RE,
                 "a container name or ID", reported_by,
                 hint or "container names are letters, digits, '_', '.' and '-'")


def network(value: object, reported_by: str | None = None, hint: str | None = None) -> str:
    """A docker network name or ID."""
    return _text(value, _DOCKER_NAME_RE, "a network name or ID", reported_by, hint)


def node_id(value: object, reported_by: str | None = None) -> str:
    """A swarm node ID."""
    return _text(value, _NODE_ID_RE, "a swarm node ID", reported_by, None)


def hostname(value: object, reported_by: str | None = None) -> str:
    """A host name (a swarm node's name)."""
    return _text(value, _HOSTNAME_RE, "a host name", reported_by, None)


def interface(value: object, reported_by: str | None = None) -> str:
    """A network interface name."""
    return _text(value, _IFACE_RE, "an interface name", reported_by, None)


_MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}$")


def mac(value: object, reported_by: str | None = None) -> str:
    """An Ethernet address."""
    return _text(value, _MAC_RE, "a MAC address", reported_by, None)


def ipv4(value: object, reported_by: str | None = None, hint: str | None = None) -> str:
    """An IPv4 address, in its canonical form."""
    try:
        return str(ipaddress.IPv4Address(value if isinstance(value, (str, int)) and not isinstance(value, bool)
                                         else ""))
    except ValueError:
        raise _refuse("an IPv4 address", value, reported_by, hint) from None


def port(value: object, reported_by: str | None = None, hint: str | None = None) -> int:
    """A TCP/UDP port number, 1-65535 (an int, or digits)."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 5:
        number = int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        raise _refuse("a port number", value, reported_by, hint)
    if not 0 < number < 65536:
        raise _refuse("a port number", value, reported_by, hint)
    return number
