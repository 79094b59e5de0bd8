"""The node image of the docker provider: built from provision/node-image."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from .errors import LabError, UsageError
from .local_docker import docker
from .paths import provision_dir
from .runner import run_local
from .spec import DEFAULT_NODE_IMAGE

BASE_IMAGE = "debian:bookworm"
METHODS = ("auto", "dockerfile", "debootstrap")
BUILD_TIMEOUT = 3600.0  # debootstrap over a slow mirror takes long; a hung build does not take forever
INPUTS_LABEL = "org.labctl.node-inputs"  # a hash of provision/node-image, stamped on the image at build time


def present(image: str) -> bool:
    return docker("image", "inspect", image).ok


def inputs_hash() -> str:
    """A hash of every file the node image is built from (names and contents)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in node_image_dir().rglob("*") if p.is_file()):
        digest.update(path.relative_to(node_image_dir()).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def current(image: str) -> bool:
    """Whether the image exists and was built from today's provision/node-image. An image without
    the label counts as stale only under the default name (a user's own image is left alone)."""
    result = docker("image", "inspect", "--format", f'{{{{index .Config.Labels "{INPUTS_LABEL}"}}}}', image)
    if not result.ok:
        return False
    label = result.out.strip()
    if label in ("", "<no value>"):
        return image != DEFAULT_NODE_IMAGE
    return label == inputs_hash()


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
    label = f"{INPUTS_LABEL}={inputs_hash()}"
    if method == "dockerfile":
        cmd = ["docker", "build", "--label", label, "-t", image, str(node_image_dir())]
    else:
        cmd = ["sh", str(node_image_dir() / "build-offline.sh"), image, "", label]
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
