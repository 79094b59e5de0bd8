"""`labctl down`: destroy the lab and everything it made."""

from __future__ import annotations

import typer

from ..lab import Lab
from ..lifecycle import down as lifecycle
from ..state import LabState
from ..ui import info
from .context import selection


def down(ctx: typer.Context) -> None:
    """Destroy the lab's hosts and everything the lab made. Nothing is left behind."""
    chosen = selection(ctx)
    name = chosen.lab_name()
    state = LabState(name)
    if not state.exists():
        state.remove()  # a folder an interrupted `up` left, if labctl made it
        info(f"lab '{name}' does not exist: nothing to remove")
        return
    lab = Lab(state.load_spec(), state)
    with lab.locked(chosen.wait, info):
        lifecycle.down(lab)
    info(f"lab '{name}' removed")


def register(app: typer.Typer) -> None:
    app.command()(down)
