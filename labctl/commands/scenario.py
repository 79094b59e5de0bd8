"""`labctl scenario list | run | clean` (and `labctl scenario NAME`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from tabulate import tabulate
from typer.core import TyperGroup

from ..errors import EXIT_FAILED, LabError
from ..lab import Lab
from ..scenarios import images, service
from ..scenarios.catalog import SCENARIOS
from ..scenarios.report import (
    SUMMARY_HEADERS,
    QuietPrinter,
    TerminalPrinter,
    markdown,
    run_ok,
    summary_line,
    summary_rows,
    to_json,
)
from ..ui import check_output, click, console, info, write_output
from .context import selection


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


@app.command("run")
def run_cmd(
    ctx: typer.Context,
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
    chosen = service.pick(names)
    images.request(image_mode, alpine, nginx)  # bad input is refused before anything runs
    check_output(report, "--report")
    picked = selection(ctx)
    lab = Lab.open(picked)
    with lab.locked(picked.wait, info):
        run_ctx = service.prepare(lab, image_mode, alpine, nginx, (lambda _: None) if json_out else info)
        results = service.run(run_ctx, chosen, QuietPrinter() if json_out else TerminalPrinter(), keep)
    if report is not None:
        write_output(report, markdown(lab.spec, run_ctx.images, run_ctx.limits, results) + "\n", "--report")
    if json_out:
        print(to_json(lab.spec, run_ctx.images, run_ctx.limits, results, strict))
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
    ctx: typer.Context,
    names: Annotated[list[str], typer.Argument(help="Scenario names, or `all`.", show_default=False)],
) -> None:
    """Remove what scenarios made (after `run --keep`, or an interrupted run)."""
    chosen = service.pick(names)
    picked = selection(ctx)
    lab = Lab.open(picked)
    with lab.locked(picked.wait, info):
        service.clean(lab, chosen)


def register(parent: typer.Typer) -> None:
    parent.add_typer(app, name="scenario")
