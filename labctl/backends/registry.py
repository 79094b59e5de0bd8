"""Which backend runs a lab, found by provider name; auto-detection asks each provider's
probe, which tests what the provider relies on (a device file or an installed plugin is
not proof that a VM can run)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import MissingToolError, UsageError
from ..spec import EXISTING, PROVIDERS, LabSpec
from ..state import LabState
from . import existing, vagrant
from .base import Backend, HostsFn


@dataclass(frozen=True)
class Provider:
    name: str
    make: Callable[[LabSpec, LabState, HostsFn], Backend]
    probe: Callable[[], str | None]  # None when usable here, else why not
    detected: bool  # tried by auto-detection (existing hosts are described, never detected)
    # auto-detection's first pass, where it differs from `probe`: only the fast form of the
    # provider (libvirt with KVM); the slow form is tried when nothing else works
    fast_probe: Callable[[], str | None] | None = None


REGISTRY: dict[str, Provider] = {p.name: p for p in (
    Provider("virtualbox", vagrant.VagrantBackend, vagrant.probe_virtualbox, True),
    Provider("libvirt", vagrant.VagrantBackend, vagrant.probe_libvirt, True, vagrant.probe_libvirt_kvm),
    Provider("docker", vagrant.VagrantBackend, vagrant.probe_docker, True),
    Provider(EXISTING, existing.ExistingBackend, existing.probe, False),
)}
assert tuple(name for name, p in REGISTRY.items() if p.detected) == PROVIDERS


def create(spec: LabSpec, state: LabState, hosts: HostsFn) -> Backend:
    if spec.provider not in REGISTRY:
        raise UsageError(f"lab '{spec.name}' has no provider chosen")  # resolved by `up` before this
    return REGISTRY[spec.provider].make(spec, state, hosts)


@dataclass(frozen=True)
class Choice:
    provider: str
    reason: str


def choose(spec: LabSpec, flag: str | None, current: str | None) -> Choice:
    """The provider of the lab `up` makes: --provider, then LABCTL_PROVIDER, then the lab file,
    then the provider the lab already runs on, then the first that works here."""
    if spec.provider == EXISTING:
        if flag not in (None, EXISTING):
            raise UsageError(f"the lab file describes existing hosts: --provider {flag} does not apply")
        return Choice(EXISTING, "the lab file describes existing hosts (no Vagrant)")
    vagrant.require_vagrant()
    chosen = _given(flag, None if current else spec.provider)
    if chosen is not None:
        if current and chosen.provider != current:
            raise UsageError(f"lab '{spec.name}' runs on {current}, not {chosen.provider}",
                             hint=f"`labctl --lab {spec.name} down` first to change provider")
        return chosen
    if current:
        return Choice(current, "the lab already runs on it")
    return _detect()


def _given(flag: str | None, lab_file: str | None) -> Choice | None:
    for value, source in ((flag, "--provider"), (os.environ.get("LABCTL_PROVIDER"), "LABCTL_PROVIDER"),
                          (lab_file, "the lab file")):
        if value and value != "auto":
            if value not in PROVIDERS:
                raise UsageError(f"unknown provider '{value}' (from {source})",
                                 hint=f"use one of: {', '.join(PROVIDERS)}, auto")
            why_not = REGISTRY[value].probe()
            if why_not:
                raise MissingToolError(f"provider {value} (from {source}) cannot run here: {why_not}",
                                       hint="install it, or choose another with --provider")
            return Choice(value, f"set by {source}")
    return None


def _detect() -> Choice:
    skipped: list[str] = []
    detected = [p for p in REGISTRY.values() if p.detected]
    for provider in detected:
        why_not = (provider.fast_probe or provider.probe)()
        if why_not is None:
            tried = f" ({'; '.join(skipped)})" if skipped else ""
            return Choice(provider.name, f"auto-detected{tried}")
        skipped.append(f"{provider.name}: {why_not}")
    for provider in detected:  # the slow forms, as a last resort
        if provider.fast_probe is not None and provider.probe() is None:
            return Choice(provider.name, f"auto-detected, slow: nothing faster works here ({'; '.join(skipped)})")
    raise MissingToolError(
        "no Vagrant provider can run here: " + "; ".join(skipped),
        hint="install VirtualBox or libvirt, or start a Docker daemon for the docker provider",
    )
