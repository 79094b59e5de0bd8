"""`labctl exec HOST -- COMMAND`: output and exit code passed through."""

from __future__ import annotations

import math
import shlex
import sys
from typing import Annotated

import typer

from ..errors import UsageError
from ..lab import Lab
from ..ui import note
from .context import selection


def exec_cmd(
    ctx: typer.Context,
    host: Annotated[str, typer.Argument(help="manager, worker-1, worker-2 (or host1..host3).")],
    command: Annotated[list[str], typer.Argument(help="The command (after --).")],
    timeout: Annotated[float, typer.Option(help="Seconds before the command is ended.")] = 600,
) -> None:
    """Run a command on a host; its output and exit code are passed through."""
    if not math.isfinite(timeout) or timeout <= 0:
        raise UsageError(f"--timeout {timeout} is not a number of seconds", hint="e.g. --timeout 60")
    chosen = selection(ctx)
    lab = Lab.open(chosen)
    target = lab.host(host)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise UsageError("no command given", hint=f"labctl exec {host} -- docker ps")
    # One argument is a shell line (`-- 'docker ps | wc -l'`); several are quoted word by word.
    line = command[0] if len(command) == 1 else shlex.join(command)

    def echo(text: str) -> None:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    with lab.locked(chosen.wait, note, shared=True):
        result = target.run(line, timeout=timeout, on_line=echo)
    lines = result.out.split("\n")
    if lines and lines[-1]:
        sys.stdout.write(lines[-1])  # an unterminated last line
    sys.stderr.write(result.err)
    raise typer.Exit(result.rc)


def register(app: typer.Typer) -> None:
    app.command("exec", context_settings={"allow_interspersed_args": False})(exec_cmd)
