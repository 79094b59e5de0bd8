"""`labctl scenario list | run | clean`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from tabulate import tabulate
from typer.core import TyperGroup

try:  # typer >= 0.20 vendors its own Click
    from typer import _click as click  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - older typer uses Click itself
    import click  # type: ignore[no-redef]

from ..errors import EXIT_FAILED, LabError, UsageError
from ..lab import Lab, Selection
from ..ui import check_output, console, info, phase, write_output
from . import images, limits
from .catalog import SCENARIOS
from .engine import Ctx, Scenario, ScenarioResult, clean_up, run_scenario, snapshot
from .report import (
    SUMMARY_HEADERS,
    QuietPrinter,
    TerminalPrinter,
    markdown,
    run_ok,
    summary_line,
    summary_rows,
    to_json,
)


class _ScenarioGroup(TyperGroup):
    """`labctl scenario NAME ...` is `labctl scenario run NAME ...`."""

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[str | None, click.Command | None,
                                                                             list[str]]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            return "run", self.commands["run"], args
        return super().resolve_command(ctx, args)


app = typer.Typer(cls=_ScenarioGroup, no_args_is_help=True,
                  help="Docker's overlay-networking tutorials, run on the lab's hosts and checked. "
                       "`labctl scenario NAME` runs one (the same as `labctl scenario run NAME`).")


def _selection() -> Selection:
    from .. import cli  # the main CLI has parsed --lab / --lab-file / --wait by now

    return cli.CTX.selection


def _pick(names: list[str]) -> list[Scenario]:
    if names == ["all"]:
        return list(SCENARIOS.values())
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown or "all" in names:
        raise UsageError(f"no scenario named {', '.join(unknown) or 'all (with others)'}",
                         hint=f"scenarios: {', '.join(SCENARIOS)}, or `all` alone; commands: list, run, clean "
                              "(`labctl scenario --help`)")
    return [SCENARIOS[n] for n in dict.fromkeys(names)]


@app.command("list")
def list_cmd(json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """Each scenario's name and purpose."""
    if json_out:
        print(json.dumps([{"name": s.name, "purpose": s.purpose} for s in SCENARIOS.values()], indent=2))
        return
    print(tabulate([[s.name, s.purpose] for s in SCENARIOS.values()], headers=["scenario", "purpose"],
                   tablefmt="plain"))


ImagesOpt = Annotated[Optional[str], typer.Option(
    "--images", help="auto (registry if the hosts can pull, else the offline set), registry or offline "
                     "(env LABCTL_SCENARIO_IMAGES).")]
AlpineOpt = Annotated[Optional[str], typer.Option("--alpine-image", help="Image standing in for alpine "
                                                                         "(env LABCTL_ALPINE_IMAGE).")]
NginxOpt = Annotated[Optional[str], typer.Option("--nginx-image", help="Image standing in for nginx "
                                                                       "(env LABCTL_NGINX_IMAGE).")]


def _context(lab: Lab, image_mode: str | None, alpine: str | None, nginx: str | None, quiet: bool) -> Ctx:
    hosts = lab.hosts()
    say = (lambda _: None) if quiet else info
    found = limits.detect(hosts)
    limits.require_swarm(found)
    chosen = images.choose(hosts, lab.spec.manager.name, image_mode, alpine, nginx, say)
    if not quiet:
        info(f"lab '{lab.spec.name}': images {chosen.alpine}, {chosen.nginx} ({chosen.reason})")
        for line in found.summary():
            info(f"lab '{lab.spec.name}': {line}")
        if found.missing("ipvs"):
            info("  -> routing-mesh and service-VIP checks are skipped; each scenario shows the point with "
                 "publish mode=host or --endpoint-mode dnsrr instead, and says so")
    return Ctx(lab.spec, hosts, chosen, found)


@app.command("run")
def run_cmd(
    names: Annotated[list[str], typer.Argument(help="Scenario names, or `all`.", show_default=False)],
    keep: Annotated[bool, typer.Option("--keep", help="Leave what the scenario made, to explore it.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the results as JSON (for scripts).")] = False,
    report: Annotated[Optional[Path], typer.Option("--report", help="Write a markdown report to this file.")] = None,
    image_mode: ImagesOpt = None,
    alpine: AlpineOpt = None,
    nginx: NginxOpt = None,
    strict: Annotated[bool, typer.Option("--strict", help="A check skipped because this lab cannot run it "
                                                          "(no IPVS, no way out...) fails the run.")] = False,
) -> None:
    """Run scenarios: each step's host, command, check and time.

    Exit 0 if every check that can run on this lab passed (skips are listed), 1 if a check failed,
    something was left behind, or - with --strict - a check was skipped."""
    chosen = _pick(names)
    images.request(image_mode, alpine, nginx)  # bad input is refused before anything runs
    check_output(report, "--report")
    selection = _selection()
    lab = Lab.open(selection)
    results: list[ScenarioResult] = []
    with lab.locked(selection.wait, info):
        ctx = _context(lab, image_mode, alpine, nginx, json_out)
        printer = QuietPrinter() if json_out else TerminalPrinter()
        for scenario in chosen:
            result = run_scenario(scenario, ctx, printer, keep)
            results.append(result)
            if result.interrupted:
                break
    if report is not None:
        write_output(report, markdown(lab.spec, ctx.images, ctx.limits, results) + "\n", "--report")
    if json_out:
        print(to_json(lab.spec, ctx.images, ctx.limits, results, strict))
    else:
        if len(results) > 1:
            console.print()
            print(tabulate(summary_rows(results), headers=SUMMARY_HEADERS, tablefmt="plain"))
        info(summary_line(results, strict))
    if report is not None and not json_out:
        info(f"report written to {report}")
    if results and results[-1].interrupted:
        raise LabError(f"interrupted during {results[-1].name}; its clean-up ran"
                       if not keep else f"interrupted during {results[-1].name}", exit_code=130)
    if not run_ok(results, strict):
        raise typer.Exit(EXIT_FAILED)


@app.command("clean")
def clean_cmd(
    names: Annotated[list[str], typer.Argument(help="Scenario names, or `all`.", show_default=False)],
) -> None:
    """Remove what scenarios made (after `run --keep`, or an interrupted run)."""
    chosen = _pick(names)
    selection = _selection()
    lab = Lab.open(selection)
    with lab.locked(selection.wait, info):
        hosts = lab.hosts()
        ctx = Ctx(lab.spec, hosts, images.ImageSet("", "", False, ""), limits.detect(hosts))
        for scenario in chosen:
            with phase(f"clean up {scenario.name}") as step:
                before = snapshot(ctx)
                # Whatever the scenario's clean-up removes; then wait for the swarm's async removals.
                empty = {h: {k: v for k, v in items.items() if not _made_by(scenario, ctx, v)}
                         for h, items in before.items()}
                done = clean_up(scenario, ctx, empty, wait=60)
                if not done.ok:
                    raise LabError(f"could not remove: {', '.join(done.leftovers)}",
                                   hint="remove them by hand with `labctl exec HOST -- sudo docker ...`")
                removed = len([v for items in before.values() for v in items.values() if _made_by(scenario, ctx, v)])
                step.done(f"removed {removed} item(s)" if removed else "nothing to remove")


def _made_by(scenario: Scenario, ctx: Ctx, label: str) -> bool:
    """Is `label` ('kind name') one of the names the scenario's clean-up removes?"""
    kind, _, name = label.partition(" ")
    words = {w for _, command in scenario.cleanup(ctx) for w in command.split()}
    if kind == "container" and "." in name:  # a service task: container-nginx.1.abc
        return name.split(".")[0] in words
    return name in words
