"""Which images the scenarios use: `alpine` and `nginx` where the hosts can pull
them, else labctl's offline set (provision/lab-images/build.sh), loaded into the
hosts from this machine's Docker when they lack it."""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass

from .. import host_images, validate
from ..errors import LabError, UsageError
from ..local_docker import docker
from ..paths import provision_dir
from ..runner import run_local
from ..ssh import Host, fan_out, raise_first

REGISTRY_SET = ("alpine", "nginx")
OFFLINE_SET = ("labctl/alpine-lite:latest", "labctl/nginx-lite:latest")
MODES = ("auto", "registry", "offline")


@dataclass(frozen=True)
class ImageSet:
    alpine: str
    nginx: str
    local_only: bool  # only in the hosts' Docker: services need --no-resolve-image
    reason: str

    def to_json(self) -> dict[str, object]:
        return dict(self.__dict__)


def _present(host: Host, names: tuple[str, ...]) -> bool:
    quoted = " ".join(shlex.quote(n) for n in names)
    return host.run(f"docker image inspect {quoted} >/dev/null 2>&1", sudo=True, timeout=30).ok


def _pull(host: Host, name: str) -> tuple[bool, str]:
    result = host.run(f"docker pull -q {shlex.quote(name)}", sudo=True, timeout=120)
    return result.ok, result.tail(1)


def request(mode: str | None = None, alpine: str | None = None,
            nginx: str | None = None) -> tuple[str, str | None, str | None]:
    """The image set asked for (flags, then LABCTL_SCENARIO_IMAGES / _ALPINE / _NGINX), checked:
    image names end up in the commands the hosts run."""
    mode = mode or os.environ.get("LABCTL_SCENARIO_IMAGES") or "auto"
    if mode not in MODES:
        raise UsageError(f"unknown image set '{mode}'", hint=f"use one of: {', '.join(MODES)}")
    alpine = alpine or os.environ.get("LABCTL_ALPINE_IMAGE") or None
    nginx = nginx or os.environ.get("LABCTL_NGINX_IMAGE") or None
    for flag, env, value in (("--alpine-image", "LABCTL_ALPINE_IMAGE", alpine),
                             ("--nginx-image", "LABCTL_NGINX_IMAGE", nginx)):
        if value is not None:
            try:
                validate.image(value)
            except UsageError as exc:
                raise UsageError(f"{flag} (or {env}): {exc.message}", hint=exc.hint) from None
    return mode, alpine, nginx


def choose(hosts: dict[str, Host], manager: str, mode: str | None = None, alpine: str | None = None,
           nginx: str | None = None, notify: Callable[[str], None] | None = None) -> ImageSet:
    """The image set for this run (see `request`)."""
    mode, alpine, nginx = request(mode, alpine, nginx)
    say = notify or (lambda _: None)
    if mode == "auto":
        wanted = (alpine or REGISTRY_SET[0], nginx or REGISTRY_SET[1])
        if all(raise_first(fan_out(list(hosts.values()), lambda h: _present(h, wanted))).values()):
            return ImageSet(*wanted, local_only=alpine is not None or nginx is not None,
                            reason="images already in every host")
        ok, why = _pull(hosts[manager], wanted[0])
        if ok:
            return ImageSet(*wanted, local_only=False, reason="the hosts pull from a registry")
        if alpine or nginx:
            raise LabError(f"{manager} cannot pull {wanted[0]} ({why}) and the images are not in every host",
                           hint="`labctl images load IMAGE...` copies them from this machine's Docker")
        say(f"no registry reachable from the hosts ({why}): using the offline image set "
            f"{', '.join(OFFLINE_SET)}")
        return _offline(hosts, OFFLINE_SET, "offline set: no registry reachable from the hosts", say)
    if mode == "registry":
        return ImageSet(alpine or REGISTRY_SET[0], nginx or REGISTRY_SET[1], local_only=False,
                        reason="registry images (--images registry)")
    return _offline(hosts, (alpine or OFFLINE_SET[0], nginx or OFFLINE_SET[1]), "offline set (--images offline)", say)


def _offline(hosts: dict[str, Host], names: tuple[str, str], reason: str, say: Callable[[str], None]) -> ImageSet:
    """The offline set, loaded into the hosts that lack it."""
    lacking = [hosts[n] for n, ok in raise_first(fan_out(list(hosts.values()), lambda h: _present(h, names))).items()
               if not ok]
    if lacking:
        missing_here = [n for n in names if not docker("image", "inspect", n).ok]
        build_script = provision_dir() / "lab-images" / "build.sh"
        if missing_here and names == OFFLINE_SET:
            say(f"building the offline image set on this machine ({build_script.name}, about a minute)")
            run_local(["sh", str(build_script)], timeout=1200, check=True,
                      hint=f"run `sh {build_script}` by hand (needs root, debootstrap, busybox-static)")
            missing_here = [n for n in names if not docker("image", "inspect", n).ok]
        if missing_here:
            raise LabError(
                f"{', '.join(h.name for h in lacking)} lack {', '.join(names)}, and this machine's Docker "
                f"does not have {', '.join(missing_here)} to load",
                hint=f"build them: `sh {build_script}` (Debian packages only, about a minute), then run again",
            )
        say(f"loading {', '.join(names)} into {', '.join(h.name for h in lacking)}")
        host_images.load(lacking, list(names))
    return ImageSet(names[0], names[1], local_only=True, reason=reason)
