"""`labctl diagnose`, `labctl capture` and `labctl fault`: the commands of the diagnostics package."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from . import validate
from .errors import LabError, UsageError
from .lab import Lab
from .ui import FormatOpt, check_format, check_output, console, emit_table, info, note, write_output

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def _ctx():  # the selection made by the main callback (imported late: cli imports this module)
    from .cli import CTX

    return CTX.selection


def register(app: typer.Typer) -> None:
    app.command("diagnose", context_settings={"allow_interspersed_args": True})(diagnose)
    app.command("capture")(capture)
    fault_app = typer.Typer(help="Break the lab on purpose (and undo it exactly).", no_args_is_help=True)
    fault_app.command("add", context_settings={"allow_interspersed_args": True})(fault_add)
    fault_app.command("list")(fault_list)
    fault_app.command("clear")(fault_clear)
    app.add_typer(fault_app, name="fault")


def diagnose(
    target: Annotated[Optional[list[str]], typer.Argument(
        help="HOST (or nothing: the whole lab), or `ping SRC DST` (two containers, on any hosts).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Findings and evidence as JSON.")] = False,
    evidence_out: Annotated[Optional[Path], typer.Option("--save-evidence",
                                                         help="Also write the raw evidence (JSON) here.")] = None,
    fmt: FormatOpt = "rich",
) -> None:
    """Why a host cannot join the swarm or carry overlay traffic: real packets, both directions.

    Exit 0 when healthy, 1 when something is wrong. `labctl diagnose ping SRC DST` follows one ping
    through both hosts' VXLAN underlay and says where it died.
    """
    from diagnostics import collect, rules

    check_format(fmt)
    check_output(evidence_out, "--save-evidence")
    args = list(target or [])
    if args and args[0] == "ping":
        if len(args) != 3:
            raise UsageError("`labctl diagnose ping` needs two containers", hint="labctl diagnose ping SRC DST")
        src, dst = validate.container(args[1]), validate.container(args[2])
        return _ping(Lab.open(_ctx()), src, dst, json_out)
    lab = Lab.open(_ctx())
    if len(args) > 1:
        raise UsageError("diagnose takes one host (or none for the whole lab)",
                         hint="labctl diagnose worker-2")
    focus = lab.spec.host(args[0]).name if args else None
    with lab.locked(_ctx().wait, note, shared=True):
        if json_out:
            ev = collect.gather_evidence(lab, focus)
        else:
            with console.status(f"probing {focus or 'every host'} against every peer, both directions..."):
                ev = collect.gather_evidence(lab, focus)
    findings = rules.analyze(ev)
    summary = rules.root_cause(findings)
    if evidence_out is not None:
        write_output(evidence_out, json.dumps(ev.to_json(), indent=1) + "\n", "--save-evidence")
    code = rules.exit_code(findings)
    if json_out:
        print(json.dumps({"lab": lab.spec.name, "host": focus, "healthy": code == 0, "seconds": ev.seconds,
                          "data_port": ev.data_port, "findings": [f.to_json() for f in findings],
                          "root_cause": summary, "probes": len(ev.probes)}, indent=2))
    else:
        _print_findings(findings, f"diagnosis of {focus or 'lab ' + lab.spec.name} "
                                  f"({len(ev.probes)} probes, {ev.seconds:.1f} s)", fmt)
        console.print(escape(summary))
    raise typer.Exit(code)


def _print_findings(findings: list, title: str, fmt: str = "rich") -> None:
    if not findings:
        info(f"{title}: no findings")
        return
    # The same fact on several hosts (a kernel limit, say) is one row naming them all.
    rows: dict[tuple[str, str, str, str, str], list[str]] = {}
    for f in findings:
        who = f.host + (f" <- {f.peer}" if f.direction == "inbound" and f.peer else
                        f" -> {f.peer}" if f.peer else "")
        key = (f.severity, f"[{f.code}] {f.finding}", f.evidence, f.fix, f.host if f.peer else "")
        rows.setdefault(key, []).append(who)
    if fmt != "rich":
        emit_table(["severity", "host", "finding", "evidence", "fix"],
                   [[k[0], ", ".join(hosts), k[1], k[2], k[3]] for k, hosts in rows.items()], fmt, title)
        return
    table = Table(title=title, title_justify="left", show_lines=True)
    for col in ("severity", "host", "finding", "evidence", "fix"):
        table.add_column(col, overflow="fold")
    for (severity, finding, evidence, fix, _), hosts in rows.items():
        table.add_row(f"[{SEVERITY_STYLE[severity]}]{severity}[/]", escape(", ".join(hosts)),
                      escape(finding), escape(evidence), escape(fix))
    console.print(table)


def _ping(lab: Lab, src: str, dst: str, json_out: bool) -> None:
    from diagnostics import ping

    with lab.locked(_ctx().wait, note, shared=True):
        if json_out:
            result = ping.trace(lab, src, dst)
        else:
            with console.status(f"pinging {dst} from {src} while capturing VXLAN on both hosts..."):
                result = ping.trace(lab, src, dst)
    if json_out:
        print(json.dumps(result.to_json(), indent=2))
    else:
        console.print(escape(ping.render(result)))
    raise typer.Exit(0 if result.verdict == "ok" else 1)


def capture(
    host: Annotated[str, typer.Argument(help="manager, worker-1, worker-2 (or host1..host3).")],
    vxlan: Annotated[bool, typer.Option("--vxlan", help="Only VXLAN (the swarm's data path port).")] = False,
    count: Annotated[int, typer.Option("--count", help="Stop after N packets (0: no limit).")] = 0,
    seconds: Annotated[float, typer.Option("--seconds", help="Stop after S seconds.")] = 10.0,
    write: Annotated[Optional[Path], typer.Option("--write", help="Write a pcap file (Wireshark opens it).")] = None,
    bpf: Annotated[Optional[str], typer.Option("--filter", help="A BPF filter (default: all but SSH).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object per packet.")] = False,
) -> None:
    """Live decoded view of a host's underlay: outer and inner addresses, VNI as network name, protocol."""
    from diagnostics import capture as cap

    if count < 0 or not math.isfinite(seconds) or seconds <= 0:
        raise UsageError("--count must be >= 0 and --seconds > 0")
    check_output(write, "--write")
    lab = Lab.open(_ctx())
    name = lab.spec.host(host).name
    with lab.locked(_ctx().wait, note, shared=True):
        result = cap.run(lab, name, vxlan=vxlan, count=count, seconds=seconds, bpf=bpf,
                         on_packet=(lambda d: print(json.dumps(d), flush=True)) if json_out else
                         (lambda d: console.print(escape(cap.line(d)))), on_ready=note)
    if write is not None:
        write_output(write, result.pcap, "--write")
        if not json_out:
            info(f"{result.count} packets written to {write}")
    elif not json_out:
        info(f"{result.count} packets")


def fault_add(
    host: Annotated[str, typer.Argument(help="The host to break.")],
    kind: Annotated[str, typer.Argument(help="block, path-drop, mtu, docker-stop, leave, wrong-advertise.")],
    port: Annotated[Optional[str], typer.Option("--port", help="PORT/PROTO, e.g. 4789/udp (block, path-drop).")]
    = None,
    action: Annotated[str, typer.Option("--action", help="block: DROP or REJECT.")] = "DROP",
    direction: Annotated[str, typer.Option("--direction", help="block: in or out.")] = "in",
    peer: Annotated[Optional[str], typer.Option("--peer", help="Only traffic with this host (path-drop: "
                                                               "required, the other end).")] = None,
    mtu: Annotated[int, typer.Option("--mtu", help="mtu: the new underlay MTU.")] = 1400,
    addr: Annotated[Optional[str], typer.Option("--addr", help="wrong-advertise: the address to advertise "
                                                               "(default: an unused one of the subnet).")] = None,
) -> None:
    """Break the lab on purpose: block a port, drop it on the path, shrink the MTU, stop Docker,
    make a worker leave, or re-join it with a wrong advertise address."""
    from diagnostics import faults

    if addr is not None:
        addr = validate.ipv4(addr, hint="--addr takes an IPv4 address, e.g. 192.168.56.99")
    lab = Lab.open(_ctx())
    with lab.locked(_ctx().wait):
        fault = faults.add(lab, lab.spec.host(host).name, kind, port=port, action=action, direction=direction,
                           peer=lab.spec.host(peer).name if peer else None, mtu=mtu, addr=addr)
    info(f"fault {fault.id} added: {fault.describe()}")


def fault_list(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The faults labctl added to this lab (and has not cleared)."""
    from diagnostics import faults

    lab = Lab.open(_ctx())
    with lab.locked(_ctx().wait, note, shared=True):
        items = faults.load(lab)
    if json_out:
        print(json.dumps([f.to_json() for f in items], indent=2))
        return
    if not items:
        info("no faults added")
        return
    for f in items:
        console.print(escape(f"{f.id}  {f.host:<9} {f.describe()}"))


def fault_clear(host: Annotated[Optional[str], typer.Argument(help="Only this host's faults.")] = None) -> None:
    """Undo exactly the faults labctl added (all, or one host's)."""
    from diagnostics import faults

    lab = Lab.open(_ctx())
    with lab.locked(_ctx().wait):
        cleared = faults.clear(lab, lab.spec.host(host).name if host else None)
    if not cleared.done and not cleared.failed:
        info("no faults to clear")
    for line in cleared.done:
        info(line)
    if cleared.failed:
        raise LabError("; ".join(cleared.failed),
                       hint="undo it by hand, or run `labctl fault clear` again; "
                            "`labctl fault list` shows the faults still recorded")
