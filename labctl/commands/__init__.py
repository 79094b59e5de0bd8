"""One module per verb: each parses and validates its options, calls a service, renders.
`register` adds them all to the main typer app."""

from __future__ import annotations

import typer

from . import capture, diagnose, down, drill, exec, fault, images, preflight, scenario, ssh, status, up

VERBS = (preflight, up, down, status, ssh, exec, images, scenario, diagnose, capture, fault, drill)


def register(app: typer.Typer) -> None:
    for verb in VERBS:
        verb.register(app)
