"""The node image of the docker provider: built from provision/node-image."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .errors import LabError, UsageError
from .local_docker import docker
from .paths import provision_dir
from .runner import run_local

BASE_IMAGE = "debian:bookworm"
METHODS = ("auto", "dockerfile", "debootstrap")
BUILD_TIMEOUT = 3600.0  # debootstrap over a slow mirror takes long; a hung build does not take forever


def present(image: str) -> bool:
    return docker("image", "inspect", image).ok


def node_image_dir() -> Path:
    return provision_dir() / "node-image"


def _pulled(image: str) -> bool:
    try:
        return docker("pull", image, timeout=300).ok
    except LabError:  # a pull that hangs: no registry to speak of
        return False


def build(image: str, method: str, on_line: Callable[[str], None]) -> str:
    """Build the node image; returns the method used. 'auto' uses the Dockerfile
    when the base image can be had from a registry, else debootstrap."""
    if method not in METHODS:
        raise UsageError(f"unknown build method '{method}'", hint=f"use one of: {', '.join(METHODS)}")
    if method == "auto":
        reachable = present(BASE_IMAGE) or _pulled(BASE_IMAGE)
        method = "dockerfile" if reachable else "debootstrap"
        on_line(f"{'a registry serves' if reachable else 'no registry serves'} {BASE_IMAGE}: building with {method}")
    if method == "dockerfile":
        cmd = ["docker", "build", "-t", image, str(node_image_dir())]
    else:
        cmd = ["sh", str(node_image_dir() / "build-offline.sh"), image]
    seen: list[str] = []  # both outputs in the order they came (docker build reports on stderr)

    def show(line: str) -> None:
        seen.append(line)
        on_line(line)

    result = run_local(cmd, timeout=BUILD_TIMEOUT, cwd=node_image_dir(), on_line=show)
    if not result.ok:
        tail = " / ".join(seen[-3:])
        hint = "debootstrap needs root and Debian's package mirror" if method == "debootstrap" else None
        raise LabError(f"building node image {image} with {method} failed (exit {result.rc}): {tail}", hint=hint)
    return method
