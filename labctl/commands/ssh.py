"""`labctl ssh HOST`: an interactive shell, with the lab's host-key policy."""

from __future__ import annotations

import os
import shutil
from typing import Annotated

import typer

from ..errors import LabError
from ..lab import Lab
from ..ssh import client_argv
from .context import selection


def ssh(
    ctx: typer.Context,
    host: Annotated[str, typer.Argument(help="manager, worker-1, worker-2 (or host1..host3).")],
) -> None:
    """Open an interactive shell on a host."""
    lab = Lab.open(selection(ctx))
    name = lab.spec.host(host).name
    endpoint = lab.endpoints().get(name)
    if endpoint is None:
        raise LabError(f"{name} has no SSH endpoint", hint="`labctl up`")
    client = shutil.which("ssh")
    if client is None:
        raise LabError("the ssh client is not installed", hint="apt-get install openssh-client")
    os.execv(client, client_argv(endpoint))


def register(app: typer.Typer) -> None:
    app.command()(ssh)
