"""`labctl images load | build-node`."""

from __future__ import annotations

import re
from typing import Annotated, Optional

import typer

from .. import host_images, local_docker, node_image, validate, vm_box
from ..errors import LabError, UsageError
from ..lab import Lab
from ..spec import LabSpec
from ..state import LabState
from ..ui import info, phase
from .context import selection

app = typer.Typer(help="Images inside the lab's hosts, the docker provider's node image, the libvirt provider's box.",
                  no_args_is_help=True)


@app.command("load")
def load(
    ctx: typer.Context,
    names: Annotated[list[str], typer.Argument(help="Local images, or one `docker save` tarball.")],
) -> None:
    """Copy images from this machine's Docker (or a tarball) into every host."""
    chosen = selection(ctx)
    lab = Lab.open(chosen)
    with lab.locked(chosen.wait, info), phase(f"load {', '.join(names)} into every host") as progress:
        loaded = host_images.load(list(lab.hosts().values()), names)
        progress.done("; ".join(f"{h}: {what}" for h, what in loaded.items()))


@app.command("build-node")
def build_node(
    ctx: typer.Context,
    image: Annotated[Optional[str], typer.Option(help="Image name (default: the lab's node image).")] = None,
    method: Annotated[str, typer.Option(help="auto, dockerfile or debootstrap.")] = "auto",
) -> None:
    """(Re)build the docker provider's node image from provision/node-image."""
    if image is None:
        state = LabState(selection(ctx).lab_name())
        image = state.load_spec().node_image if state.exists() else LabSpec().node_image
    validate.image(image)
    if local_docker.daemon_version() is None:
        raise LabError("no Docker daemon answers here", hint="start dockerd first")
    with phase(f"build node image {image}") as progress:
        used = node_image.build(image, method, progress.note)
        progress.done(f"built with {used}")


@app.command("build-box")
def build_box(
    mirror: Annotated[Optional[str], typer.Option(help="Debian mirror (default: deb.debian.org).")] = None,
) -> None:
    """(Re)build the libvirt provider's offline box labctl/bookworm from provision/vm-box."""
    if mirror is not None and not re.fullmatch(r"https?://[A-Za-z0-9.:/_~%+-]+", mirror):
        raise UsageError(f"--mirror {mirror!r} is not an http(s) URL", hint="e.g. --mirror http://deb.debian.org/debian")
    with phase(f"build VM box {vm_box.BOX}") as progress:
        progress.done(vm_box.build(progress.note, mirror))


def register(parent: typer.Typer) -> None:
    parent.add_typer(app, name="images")
