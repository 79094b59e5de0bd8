"""The `labctl` command line: the main options, the verbs (one module each under
`commands/`), and the one place where errors become a message and an exit code."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.core import TyperGroup

from . import commands
from .errors import EXIT_FAILED, LabError, UsageError
from .lab import Selection
from .ui import click, click_settings, error


class _LabctlGroup(TyperGroup):
    """Typer turns Ctrl-C into a silent exit 130; labctl says it was interrupted."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise LabError("interrupted", hint="run the same command again: labctl picks up from where "
                                               "the lab is", exit_code=130) from None


app = typer.Typer(
    cls=_LabctlGroup,
    help="A real three-host Docker Swarm lab, and why its overlay network fails.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion, --show-completion: for the shell labctl runs in
    pretty_exceptions_enable=False,
    context_settings=click_settings(),
)


@app.callback()
def main_options(
    ctx: typer.Context,
    lab: Annotated[Optional[str], typer.Option("--lab", "-n", help="Lab name (env LABCTL_LAB).")] = None,
    lab_file: Annotated[Optional[Path], typer.Option("--lab-file", "-f",
                                                      help="Lab file (default: ./labctl.toml if present).")] = None,
    wait: Annotated[float, typer.Option("--wait", help="Seconds to wait for another labctl command "
                                                       "on the same lab (default: refuse at once).")] = 0.0,
) -> None:
    if not math.isfinite(wait) or wait < 0:
        raise UsageError(f"--wait {wait} is not a number of seconds", hint="e.g. --wait 60")
    ctx.obj = Selection.make(lab, lab_file, wait)


commands.register(app)


def main() -> None:
    command = typer.main.get_command(app)
    try:
        rc = command.main(prog_name="labctl", standalone_mode=False)
        sys.exit(rc if isinstance(rc, int) else 0)
    except LabError as exc:
        error(exc.message, exc.hint)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.ClickException as exc:
        ctx = getattr(exc, "ctx", None)
        error(exc.format_message(), f"`{ctx.command_path if ctx is not None else 'labctl'} --help` shows the usage")
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        error("interrupted")
        sys.exit(130)
    except Exception as exc:  # a defect: still one line, the traceback on request
        if os.environ.get("LABCTL_DEBUG"):
            raise
        error(f"internal error: {type(exc).__name__}: {_one_line(str(exc))}",
              "this is a bug in labctl; set LABCTL_DEBUG=1 to see the traceback")
        sys.exit(EXIT_FAILED)


def _one_line(text: str, width: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."
