"""Terminal output: phases with progress and durations, errors with hints."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

try:  # typer >= 0.20 vendors its own Click (re-exported here for the command modules)
    from typer import _click as click  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - older typer uses Click itself
    import click  # type: ignore[no-redef]  # noqa: F401
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from tabulate import tabulate

from .errors import LabError, UsageError


def click_settings() -> dict[str, object]:
    """Context settings of the command line. Rich's consoles (ours, typer's help) leave
    colour out when NO_COLOR is set (https://no-color.org); Click's own messages need
    to be told."""
    return {"color": False} if os.environ.get("NO_COLOR") else {}


console = Console(highlight=False)
if not console.is_terminal:  # piped or in CI: wide enough that tables don't truncate
    console = Console(highlight=False, width=200)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

OK = "[green]✓[/green]"
FAIL = "[red]✗[/red]"


class Progress:
    """A running phase: `note()` updates its progress line, `done()` its summary."""

    def __init__(self, title: str, status: object | None):
        self.title = title
        self._status = status
        self.summary = ""

    def note(self, text: str) -> None:
        if self._status is not None:
            self._status.update(f"{escape(self.title)}: [dim]{escape(text[:100])}[/dim]")  # type: ignore[attr-defined]

    def done(self, summary: str) -> None:
        self.summary = summary


@contextmanager
def phase(title: str, quiet: bool = False) -> Iterator[Progress]:
    """Show a phase while it runs, then a tick or a cross with its duration."""
    started = time.monotonic()
    interactive = console.is_terminal and not quiet
    status = console.status(escape(title)) if interactive else None
    step = Progress(title, status)
    try:
        if status is not None:
            with status:
                yield step
        else:
            yield step
    except BaseException:
        if not quiet:
            console.print(f"{FAIL} {escape(title)} [dim]({time.monotonic() - started:.1f} s)[/dim]")
        raise
    if not quiet:
        summary = f" - {escape(step.summary)}" if step.summary else ""
        console.print(f"{OK} {escape(title)} [dim]({time.monotonic() - started:.1f} s)[/dim]{summary}")


def error(message: str, hint: str | None = None) -> None:
    """An error as one line (and a hint line): a value quoted in it cannot break it up."""
    err_console.print(f"[red]error:[/red] {escape(_one_line(message))}")
    if hint:
        err_console.print(f"[yellow]hint:[/yellow] {escape(_one_line(hint))}")


def _one_line(text: str) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines() if line.strip()) or "-"


def check_output(path: Path | None, option: str) -> None:
    """Refuse an output file that cannot be written before any work is done."""
    if path is None:
        return
    if path.is_dir():
        raise UsageError(f"{option} {path} is a folder", hint=f"{option} takes a file path")
    if not path.parent.is_dir():
        raise UsageError(f"folder {path.parent} does not exist", hint=f"{option} takes a writable file path")


def write_output(path: Path, data: str | bytes, option: str) -> None:
    """Write a file the user asked for (`--report`, `--write`, ...); failing to is one line, not a traceback."""
    try:
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            path.write_text(data)
    except OSError as exc:
        raise LabError(f"cannot write {option} file {path}: {exc.strerror or exc}",
                       hint=f"{option} takes the path of a file you can write") from None


def info(message: str) -> None:
    console.print(escape(message))


def note(message: str) -> None:
    """A remark on stderr, where it cannot spoil output meant for scripts."""
    err_console.print(escape(message))


def flush() -> None:
    sys.stdout.flush()


FORMATS = ("rich", "plain", "markdown")
FormatOpt = Annotated[str, typer.Option("--format", help="Table style: rich, plain or markdown (tabulate).")]


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise UsageError(f"unknown format '{fmt}'", hint="use rich, plain or markdown")


def emit_table(headers: list[str], rows: list[list[str]], fmt: str, title: str | None = None,
               show_lines: bool = False) -> None:
    """A table: rich for a terminal, tabulate's plain or GitHub markdown for files and scripts.
    Cells are plain text (no markup)."""
    if fmt == "rich":
        table = Table(title=escape(title) if title else None, title_justify="left", show_lines=show_lines)
        for h in headers:
            table.add_column(h, overflow="fold")
        for row in rows:
            table.add_row(*[escape(str(c)) for c in row])
        console.print(table)
        return
    if title:
        print(title if fmt == "plain" else f"### {title}\n")
    print(tabulate(rows, headers=headers, tablefmt="github" if fmt == "markdown" else "plain"))
