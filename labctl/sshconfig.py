"""Parse `vagrant ssh-config` output (all machines at once) into endpoints."""

from __future__ import annotations

import paramiko

from .ssh import Endpoint


def parse_ssh_config(text: str, names: list[str]) -> dict[str, Endpoint]:
    """Endpoints of the named hosts found in an ssh-config text; absent hosts are left out."""
    config = paramiko.SSHConfig.from_text(text)
    declared = config.get_hostnames()
    endpoints: dict[str, Endpoint] = {}
    for name in names:
        if name not in declared:
            continue
        entry = config.lookup(name)
        keys: str | list[str] = entry.get("identityfile") or []
        if isinstance(keys, str):
            keys = [keys]
        endpoints[name] = Endpoint(
            hostname=entry.get("hostname", name),
            port=int(entry.get("port", 22)),
            user=entry.get("user", "vagrant"),
            key_file=keys[0] if keys else "",
        )
    return endpoints
