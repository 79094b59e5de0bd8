"""`labctl status`: each host's provider state, addresses, Docker and swarm role."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from .. import status
from ..errors import EXIT_FAILED, LabError
from ..lab import Lab
from ..state import LabState, all_labs
from ..ui import FormatOpt, check_format, emit_table, note
from .context import selection


def print_status(lab: Lab, rows: list[status.HostStatus], fmt: str) -> None:
    headers = ["host", "provider", "address", "ssh", "docker", "swarm role", "state", "avail.", "problem"]
    table = [[f"{r.host} ({r.aliases})", r.provider_state, r.private_ip, r.ssh, r.docker, r.swarm_role,
              r.swarm_state, r.availability, r.problem or "-"] for r in rows]
    emit_table(headers, table, fmt, title=f"lab {lab.spec.name} ({lab.spec.provider}, {lab.spec.subnet})")


def _every_lab() -> list[dict[str, str | None]]:
    labs: list[dict[str, str | None]] = []
    for name in all_labs():
        try:
            spec = LabState(name).load_spec()
        except LabError as exc:  # one damaged lab does not hide the others
            labs.append({"lab": name, "provider": "damaged", "subnet": "-", "hosts": exc.message})
            continue
        labs.append({"lab": name, "provider": spec.provider, "subnet": spec.subnet,
                     "hosts": ", ".join(spec.host_names)})
    return labs


def status_cmd(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    all_labs_flag: Annotated[bool, typer.Option("--all", help="List every lab on this machine.")] = False,
    fmt: FormatOpt = "rich",
) -> None:
    """Each host: provider state, addresses, Docker version, swarm role and state. Exit 1 if unhealthy."""
    check_format(fmt)
    if all_labs_flag:
        labs = _every_lab()
        if json_out:
            print(json.dumps(labs, indent=2))
        else:
            emit_table(["lab", "provider", "subnet", "hosts"], [list(map(str, lab.values())) for lab in labs], fmt)
        return
    chosen = selection(ctx)
    lab = Lab.open(chosen)
    with lab.locked(chosen.wait, note, shared=True):
        rows = status.collect(lab)
    if json_out:
        print(status.to_json(lab, rows))
    else:
        print_status(lab, rows, fmt)
    if not status.healthy(rows):
        raise typer.Exit(EXIT_FAILED)


def register(app: typer.Typer) -> None:
    app.command("status")(status_cmd)
