"""How scenario results reach people: the terminal, JSON, a markdown report."""

from __future__ import annotations

import json
import time
from typing import Any

from rich.markup import escape
from tabulate import tabulate

from ..spec import LabSpec
from ..ui import console
from .engine import CleanupResult, Ctx, Printer, Scenario, ScenarioResult, StepResult
from .images import ImageSet
from .limits import Limits

MARKS = {"pass": "[green]✓[/green]", "fail": "[red]✗[/red]", "skip": "[yellow]-[/yellow]", "not run": "[dim]·[/dim]"}
WORDS = {"pass": "pass", "fail": "FAIL", "skip": "skipped", "not run": "not run"}


class TerminalPrinter(Printer):
    def __init__(self) -> None:
        self.width = 9
        self.name = "NAME"

    def scenario_start(self, scenario: Scenario, ctx: Ctx) -> None:
        self.width = max(len(h) for h in ctx.all_hosts)
        self.name = scenario.name
        console.print(f"\n[bold]{escape(scenario.name)}[/bold] - {escape(scenario.purpose)}")

    def step(self, result: StepResult) -> None:
        console.print(f"  {MARKS[result.status]} {escape(result.host.ljust(self.width))} $ {escape(result.command)}"
                      f"  [dim]({result.duration:.1f} s)[/dim]")
        pad = " " * (self.width + 5)
        if result.status == "skip":
            console.print(f"{pad}[dim]{escape(result.title)}:[/dim] [yellow]skipped[/yellow] - {escape(result.reason)}")
            return
        detail = f" - {result.note}" if result.note else ""
        console.print(f"{pad}[dim]{escape(result.title + detail)}[/dim]")
        if result.status == "fail":
            console.print(f"{pad}[red]{escape(result.reason)}[/red]")
            for line in result.output.splitlines()[-10:]:
                console.print(f"{pad}[dim]│[/dim] {escape(line)}")
            console.print(f"{pad}[yellow]hint:[/yellow] {escape(result.hint)}")

    def cleanup(self, result: CleanupResult) -> None:
        if result.kept:
            console.print("  [yellow]kept[/yellow] what the scenario made (--keep); "
                          f"`labctl scenario clean {escape(self.name)}` removes it")
        elif result.ok:
            console.print(f"  {MARKS['pass']} clean-up [dim]({result.duration:.1f} s)[/dim] - "
                          "every host as it was found")
        else:
            parts = []
            if result.unreachable:
                parts.append(f"[red]not cleaned:[/red] {escape(', '.join(result.unreachable))}")
            if result.leftovers:
                parts.append(f"[red]left behind:[/red] {escape(', '.join(result.leftovers))}")
            console.print(f"  {MARKS['fail']} clean-up [dim]({result.duration:.1f} s)[/dim] - " + "; ".join(parts))
            console.print("    [yellow]hint:[/yellow] `labctl up` heals the lab; the next run of this scenario "
                          "removes what is left")

    def scenario_end(self, result: ScenarioResult) -> None:
        color = "green" if result.status == "pass" else "red"
        verdict = "INTERRUPTED" if result.interrupted else result.status.upper()
        console.print(f"  [{color}]{verdict}[/{color}] {escape(result.name)}: {_counts(result)} "
                      f"[dim]({result.duration:.1f} s)[/dim]")

    def notice(self, text: str) -> None:
        console.print(f"  [dim]{escape(text)}[/dim]")


class QuietPrinter(Printer):
    """--json: nothing on the terminal until the end."""


def _counts(result: ScenarioResult) -> str:
    parts = [f"{result.count('pass')} passed"]
    for status, word in (("fail", "failed"), ("skip", "skipped"), ("not run", "not run")):
        if result.count(status):  # type: ignore[arg-type]
            parts.append(f"{result.count(status)} {word}")  # type: ignore[arg-type]
    return ", ".join(parts)


def summary_rows(results: list[ScenarioResult]) -> list[list[str]]:
    return [[r.name, "interrupted" if r.interrupted else r.status, str(r.count("pass")), str(r.count("fail")),
             str(r.count("skip")), "ok" if r.cleanup and r.cleanup.ok else ("kept" if r.cleanup and r.cleanup.kept
                                                                             else "LEFTOVERS"),
             f"{r.duration:.1f} s"] for r in results]


SUMMARY_HEADERS = ["scenario", "result", "passed", "failed", "skipped", "clean-up", "time"]


def run_ok(results: list[ScenarioResult], strict: bool = False) -> bool:
    """Every check that can run here passed (and, when strict, none was skipped)."""
    skipped = sum(r.count("skip") for r in results)
    return all(r.status == "pass" for r in results) and not (strict and skipped)


def summary_line(results: list[ScenarioResult], strict: bool = False) -> str:
    """The run's verdict in one line, skips included: a skip is never a pass."""
    passed = sum(r.status == "pass" for r in results)
    checks = {s: sum(r.count(s) for r in results) for s in ("pass", "fail", "skip")}  # type: ignore[arg-type]
    line = (f"{passed} of {len(results)} scenario(s) passed; checks: {checks['pass']} passed, "
            f"{checks['fail']} failed, {checks['skip']} skipped")
    if checks["skip"]:
        line += (" - a skipped check fails the run (--strict)" if strict else
                 " (each with its reason above; --strict makes a skip fail the run)")
    return line


def to_json(spec: LabSpec, images: ImageSet, limits: Limits, results: list[ScenarioResult],
            strict: bool = False) -> str:
    data: dict[str, Any] = {
        "lab": spec.name, "provider": spec.provider, "subnet": spec.subnet,
        "ok": run_ok(results, strict), "strict": strict,
        "skipped": sum(r.count("skip") for r in results),
        "images": images.to_json(), "limits": limits.to_json(),
        "scenarios": [r.to_json() for r in results],
    }
    return json.dumps(data, indent=2)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _result_cell(step: StepResult) -> str:
    if step.status == "skip":
        return f"skipped: {step.reason}"
    if step.status == "fail":
        return f"**FAIL**: {step.reason}. Hint: {step.hint}"
    return WORDS[step.status]


def markdown(spec: LabSpec, images: ImageSet, limits: Limits, results: list[ScenarioResult]) -> str:
    lines = [
        "# labctl scenario report", "",
        f"- lab: `{spec.name}` ({spec.provider}, {spec.subnet}), {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        f"- images: `{images.alpine}`, `{images.nginx}` ({images.reason})",
        f"- limits: {'; '.join(limits.summary()) or 'none found'}", "",
        tabulate(summary_rows(results), headers=SUMMARY_HEADERS, tablefmt="github"), "",
    ]
    for r in results:
        lines += [f"## {r.name}: {r.status.upper()}", "", r.purpose, ""]
        rows = [[str(i), s.host, f"`{_cell(s.command)}`", _cell(s.title + (f" ({s.note})" if s.note else "")),
                 _cell(_result_cell(s)), f"{s.duration:.1f} s"] for i, s in enumerate(r.steps, 1)]
        lines += [tabulate(rows, headers=["#", "host", "command", "what must be true", "result", "time"],
                           tablefmt="github"), ""]
        if r.cleanup is not None:
            if r.cleanup.kept:
                lines.append("Clean-up: skipped (--keep).")
            elif r.cleanup.ok:
                lines.append(f"Clean-up: every host left as it was found ({r.cleanup.duration:.1f} s).")
            else:
                lines.append(f"Clean-up: **left behind** {', '.join(r.cleanup.leftovers)}.")
            lines.append("")
    return "\n".join(lines)
