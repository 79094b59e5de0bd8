"""`labctl fault add | list | clear`: break the lab on purpose, and undo exactly that."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer
from rich.markup import escape

from .. import faults, validate
from ..errors import LabError
from ..lab import Lab
from ..ui import console, info, note
from .context import selection

app = typer.Typer(help="Break the lab on purpose (and undo it exactly).", no_args_is_help=True)


@app.command("add", context_settings={"allow_interspersed_args": True})
def add(
    ctx: typer.Context,
    host: Annotated[str, typer.Argument(help="The host to break.")],
    kind: Annotated[str, typer.Argument(help="block, path-drop, mtu, docker-stop, leave, wrong-advertise.")],
    port: Annotated[Optional[str], typer.Option("--port", help="PORT/PROTO, e.g. 4789/udp (block, path-drop).")]
    = None,
    action: Annotated[str, typer.Option("--action", help="block, path-drop: DROP or REJECT (on the path: ICMP "
                                                         "admin-prohibited, as a router answers).")] = "DROP",
    direction: Annotated[str, typer.Option("--direction", help="block: in or out.")] = "in",
    peer: Annotated[Optional[str], typer.Option("--peer", help="Only traffic with this host (path-drop: "
                                                               "required, the other end).")] = None,
    mtu: Annotated[int, typer.Option("--mtu", help="mtu: the new underlay MTU.")] = 1400,
    addr: Annotated[Optional[str], typer.Option("--addr", help="wrong-advertise: the address to advertise "
                                                               "(default: an unused one of the subnet).")] = None,
) -> None:
    """Break the lab on purpose: block a port, drop it on the path, shrink the MTU, stop Docker,
    make a worker leave, or re-join it with a wrong advertise address."""
    if addr is not None:
        addr = validate.ipv4(addr, hint="--addr takes an IPv4 address, e.g. 192.168.56.99")
    picked = selection(ctx)
    lab = Lab.open(picked)
    with lab.locked(picked.wait):
        fault = faults.add(lab, lab.spec.host(host).name, kind, port=port, action=action, direction=direction,
                           peer=lab.spec.host(peer).name if peer else None, mtu=mtu, addr=addr)
    info(f"fault {fault.id} added: {fault.describe()}")


@app.command("list")
def list_cmd(ctx: typer.Context, json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The faults labctl added to this lab (and has not cleared)."""
    picked = selection(ctx)
    lab = Lab.open(picked)
    with lab.locked(picked.wait, note, shared=True):
        items = faults.load(lab)
    if json_out:
        print(json.dumps([f.to_json() for f in items], indent=2))
        return
    if not items:
        info("no faults added")
        return
    for f in items:
        console.print(escape(f"{f.id}  {f.host:<9} {f.describe()}"))


@app.command("clear")
def clear(
    ctx: typer.Context,
    host: Annotated[Optional[str], typer.Argument(help="Only this host's faults.")] = None,
) -> None:
    """Undo exactly the faults labctl added (all, or one host's)."""
    picked = selection(ctx)
    lab = Lab.open(picked)
    with lab.locked(picked.wait):
        cleared = faults.clear(lab, lab.spec.host(host).name if host else None)
    if not cleared.done and not cleared.failed:
        info("no faults to clear")
    for line in cleared.done:
        info(line)
    if cleared.failed:
        raise LabError("; ".join(cleared.failed),
                       hint="undo it by hand, or run `labctl fault clear` again; "
                            "`labctl fault list` shows the faults still recorded")


def register(parent: typer.Typer) -> None:
    parent.add_typer(app, name="fault")
