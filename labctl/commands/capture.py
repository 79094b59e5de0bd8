"""`labctl capture HOST`: a live, decoded view of a host's underlay."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from diagnostics import capture as cap

from ..errors import UsageError
from ..lab import Lab
from ..ui import check_output, console, info, note, write_output
from .context import diagnosis_target, selection


def capture(
    ctx: typer.Context,
    host: Annotated[str, typer.Argument(help="manager, worker-1, worker-2 (or host1..host3).")],
    vxlan: Annotated[bool, typer.Option("--vxlan", help="Only VXLAN (the swarm's data path port).")] = False,
    count: Annotated[int, typer.Option("--count", help="Stop after N packets (0: no limit).")] = 0,
    seconds: Annotated[float, typer.Option("--seconds", help="Stop after S seconds.")] = 10.0,
    write: Annotated[Optional[Path], typer.Option("--write", help="Write a pcap file (Wireshark opens it).")] = None,
    bpf: Annotated[Optional[str], typer.Option("--filter", help="A BPF filter (default: all but SSH).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object per packet.")] = False,
) -> None:
    """Live decoded view of a host's underlay: outer and inner addresses, VNI as network name, protocol."""
    if count < 0 or not math.isfinite(seconds) or seconds <= 0:
        raise UsageError("--count must be >= 0 and --seconds > 0")
    check_output(write, "--write")
    picked = selection(ctx)
    lab = Lab.open(picked)
    name = lab.spec.host(host).name
    with lab.locked(picked.wait, note, shared=True):
        result = cap.run(diagnosis_target(lab), name, vxlan=vxlan, count=count, seconds=seconds, bpf=bpf,
                         on_packet=(lambda d: print(json.dumps(d), flush=True)) if json_out else
                         (lambda d: console.print(escape(cap.line(d)))), on_ready=note)
    if write is not None:
        write_output(write, result.pcap, "--write")
        if not json_out:
            info(f"{result.count} packets written to {write}")
    elif not json_out:
        info(f"{result.count} packets")


def register(app: typer.Typer) -> None:
    app.command("capture")(capture)
