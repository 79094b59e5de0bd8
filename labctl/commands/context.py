"""The lab selection made by the main options (--lab, --lab-file, --wait), as every verb
reads it: it travels in typer's context object."""

from __future__ import annotations

import typer

from diagnostics.target import Target

from ..errors import LabError
from ..lab import Lab, Selection


def selection(ctx: typer.Context) -> Selection:
    found = ctx.find_object(Selection)
    if found is None:  # only if a verb is invoked without the main app's options callback
        raise LabError("no lab selection: run labctl through its main command")
    return found


def diagnosis_target(lab: Lab) -> Target:
    """The lab as diagnostics see it: description, hosts, and whether its path crosses this machine."""
    return Target(lab.spec, lab.hosts(), path_here=lab.backend().local_bridge() is not None)
