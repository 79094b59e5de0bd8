"""`labctl diagnose [HOST]` and `labctl diagnose ping SRC DST`: findings with evidence and a fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from diagnostics import collect, ping, rules

from .. import validate
from ..drills import engine as drill
from ..errors import UsageError
from ..lab import Lab
from ..ui import FormatOpt, check_format, check_output, console, emit_table, info, note, write_output
from .context import diagnosis_target, selection

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def diagnose(
    ctx: typer.Context,
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
    check_format(fmt)
    picked = selection(ctx)
    check_output(evidence_out, "--save-evidence")
    args = list(target or [])
    if args and args[0] == "ping":
        if len(args) != 3:
            raise UsageError("`labctl diagnose ping` needs two containers", hint="labctl diagnose ping SRC DST")
        src, dst = validate.container(args[1]), validate.container(args[2])
        return _ping(Lab.open(picked), picked.wait, src, dst, json_out)
    lab = Lab.open(picked)
    if len(args) > 1:
        raise UsageError("diagnose takes one host (or none for the whole lab)",
                         hint="labctl diagnose worker-2")
    focus = lab.spec.host(args[0]).name if args else None
    with lab.locked(picked.wait, note, shared=True):
        on = diagnosis_target(lab)
        if json_out:
            ev = collect.gather_evidence(on, focus)
        else:
            with console.status(f"probing {focus or 'every host'} against every peer, both directions..."):
                ev = collect.gather_evidence(on, focus)
        drill.diagnosed(lab)
    findings = rules.analyze(ev)
    summary = rules.root_cause(findings)
    if evidence_out is not None:
        write_output(evidence_out, json.dumps(ev.to_json(), indent=1) + "\n", "--save-evidence")
    code = rules.exit_code(findings)
    if json_out:
        print(json.dumps({"lab": lab.spec.name, "host": focus, "healthy": code == 0, "seconds": ev.seconds,
                          "data_port": ev.data_port, "findings": [f.to_json() for f in findings],
                          "root_cause": summary, "probes": len(ev.probes),
                          "probe_groups": rules.probe_groups(ev)}, indent=2))
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


def _ping(lab: Lab, wait: float, src: str, dst: str, json_out: bool) -> None:
    with lab.locked(wait, note, shared=True):
        target = diagnosis_target(lab)
        if json_out:
            result = ping.trace(target, src, dst)
        else:
            with console.status(f"pinging {dst} from {src} while capturing VXLAN on both hosts..."):
                result = ping.trace(target, src, dst)
    if json_out:
        print(json.dumps(result.to_json(), indent=2))
    else:
        console.print(escape(ping.render(result)))
    raise typer.Exit(0 if result.verdict == "ok" else 1)


def register(app: typer.Typer) -> None:
    app.command("diagnose", context_settings={"allow_interspersed_args": True})(diagnose)
