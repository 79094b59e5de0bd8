"""The node image of the docker provider: built from provision/node-image."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from .errors import LabError, UsageError
from .local_docker import docker
from .paths import provision_dir

BASE_IMAGE = "debian:bookworm"
METHODS = ("auto", "dockerfile", "debootstrap")


def present(image: str) -> bool:
    return docker("image", "inspect", image).returncode == 0


def node_image_dir() -> Path:
    return provision_dir() / "node-image"


def _pulled(image: str) -> bool:
    try:
        return docker("pull", image, timeout=300).returncode == 0
    except LabError:  # a pull that hangs: no registry to speak of
        return False


def _stream(cmd: list[str], on_line: Callable[[str], None]) -> tuple[int, list[str]]:
    lines: list[str] = []
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                cwd=node_image_dir())
    except OSError as exc:
        raise LabError(f"cannot run {cmd[0]}: {exc.strerror or exc}") from None
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line.rstrip())
        if line.strip():
            on_line(line.strip())
    return proc.wait(), lines


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
    rc, lines = _stream(cmd, on_line)
    if rc != 0:
        tail = " / ".join(line for line in lines[-3:] if line)
        hint = "debootstrap needs root and Debian's package mirror" if method == "debootstrap" else None
        raise LabError(f"building node image {image} with {method} failed (exit {rc}): {tail}", hint=hint)
    return method
