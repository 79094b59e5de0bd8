"""`labctl images load | build-node`."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from .. import host_images, local_docker, node_image, validate
from ..errors import LabError
from ..lab import Lab
from ..spec import LabSpec
from ..state import LabState
from ..ui import info, phase
from .context import selection

app = typer.Typer(help="Images inside the lab's hosts, and the docker provider's node image.", no_args_is_help=True)


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


def register(parent: typer.Typer) -> None:
    parent.add_typer(app, name="images")
