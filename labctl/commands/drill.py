"""`labctl drill list | start | hint | check | give-up | report`: graded break-and-fix exercises."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional
from xml.etree import ElementTree as ET

import typer

from diagnostics import collect, rules

from ..drills import catalog, engine
from ..errors import UsageError
from ..lab import Lab
from ..ui import FormatOpt, check_format, check_output, emit_table, info, note, write_output
from .context import diagnosis_target, selection

app = typer.Typer(help="Break-and-fix exercises: find a hidden fault from its symptom, fix it, get graded.",
                  no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="The result as JSON.")]


def _done(outcome: engine.Outcome, json_out: bool) -> None:
    if json_out:
        print(json.dumps({"ok": outcome.ok, **outcome.data}, indent=2))
    else:
        for line in outcome.lines:
            info(line)
    raise typer.Exit(0 if outcome.ok else 1)


def _status(json_out: bool) -> Any:
    return (lambda _: None) if json_out else (lambda text: note(f"... {text}"))


@app.command("list")
def list_cmd(json_out: JsonOpt = False, fmt: FormatOpt = "rich") -> None:
    """The drills: each with its level and the symptom it shows (never the cause)."""
    check_format(fmt)
    rows: list[dict[str, Any]] = [{"name": d.name, "level": d.level, "symptom": d.symptom,
                                   "needs": "docker provider" if d.needs_local_bridge else ""}
                                  for d in catalog.DRILLS]
    if json_out:
        print(json.dumps(rows, indent=2))
        return
    emit_table(["drill", "level", "symptom", "needs"], [[str(r["name"]), str(r["level"]), str(r["symptom"]),
                                                          str(r["needs"])] for r in rows], fmt, "drills")


@app.command("start")
def start(
    ctx: typer.Context,
    name: Annotated[Optional[str], typer.Argument(help="The drill (see `labctl drill list`); none: a random one.")]
    = None,
    random_pick: Annotated[bool, typer.Option("--random", help="A random drill (of --level, if given).")] = False,
    level: Annotated[Optional[int], typer.Option("--level", help="Only drills of this level (1-3).")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Make the random choices repeatable.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Hide a fault in the lab, run a workload, and show only its symptom."""
    if name is not None and (random_pick or level is not None):
        raise UsageError("give a drill's name, or --random / --level, not both",
                         hint="labctl drill start island, or labctl drill start --random --level 2")
    if level is not None and level not in (1, 2, 3):
        raise UsageError(f"--level {level}: levels are 1, 2 and 3")
    if name is not None:
        catalog.get(name)
    picked = selection(ctx)
    lab = Lab.open(picked)
    with lab.locked(picked.wait, note):
        outcome = engine.start(lab, name, level, seed, _status(json_out))
    _done(outcome, json_out)


@app.command("hint")
def hint(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """The next hint, from vague to specific (each one counts)."""
    picked = selection(ctx)
    lab = Lab.open(picked)
    with lab.locked(picked.wait, note):
        _done(engine.hint(lab), json_out)


@app.command("check")
def check(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Check your fix on the real lab: the workload works again, and nothing was opened beyond the fault.
    Exit 0: fixed (the drill ends, graded); 1: not yet."""
    picked = selection(ctx)
    lab = Lab.open(picked)
    with lab.locked(picked.wait, note):
        outcome = engine.check(lab, _status(json_out))
    _done(outcome, json_out)


def _diagnosis(lab: Lab) -> engine.Diagnosis:
    findings = rules.analyze(collect.gather_evidence(diagnosis_target(lab)))
    return engine.Diagnosis([f"[{f.code}] {f.finding}" for f in findings if f.severity == "error"],
                            rules.root_cause(findings), [f.to_json() for f in findings])


@app.command("give-up")
def give_up(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Show the fault and what `labctl diagnose` finds, then restore the lab exactly."""
    picked = selection(ctx)
    lab = Lab.open(picked)
    with lab.locked(picked.wait, note):
        outcome = engine.give_up(lab, _diagnosis, _status(json_out))
    _done(outcome, json_out)


@app.command("report")
def report(
    ctx: typer.Context,
    json_out: JsonOpt = False,
    junit: Annotated[Optional[Path], typer.Option("--junit", help="Also write the history as JUnit XML here.")]
    = None,
    fmt: FormatOpt = "rich",
) -> None:
    """Your drills so far (this lab's): time, hints, grade."""
    check_format(fmt)
    check_output(junit, "--junit")
    picked = selection(ctx)
    lab_name = picked.lab_name()
    entries = engine.report(lab_name)
    if junit is not None:
        write_output(junit, _junit(entries), "--junit")
    if json_out:
        print(json.dumps(entries, indent=2))
        return
    if not entries:
        info(f"no drills finished on lab '{lab_name}' yet: `labctl drill start`")
        return
    emit_table(["drill", "level", "outcome", "grade", "time", "hints", "diagnose"],
               [[e["drill"], str(e["level"]), e["outcome"], e["grade"], f"{e['seconds']:.0f} s", str(e["hints"]),
                 str(e.get("diagnose_used", 0))] for e in entries], fmt, f"drills on lab {lab_name}")


def _junit(entries: list[dict[str, Any]]) -> str:
    suite = ET.Element("testsuite", name="labctl drills", tests=str(len(entries)),
                       failures=str(sum(e["outcome"] != "fixed" for e in entries)))
    for e in entries:
        case = ET.SubElement(suite, "testcase", classname=f"drill.level{e['level']}", name=e["drill"],
                             time=str(e["seconds"]))
        if e["outcome"] != "fixed":
            ET.SubElement(case, "failure", message=e["outcome"]).text = "; ".join(e.get("fault", []))
        else:
            ET.SubElement(case, "system-out").text = f"grade {e['grade']}, hints {e['hints']}"
    return ET.tostring(suite, encoding="unicode") + "\n"


def register(parent: typer.Typer) -> None:
    parent.add_typer(app, name="drill")
