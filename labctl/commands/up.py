"""`labctl up`: three hosts with Docker, joined in one swarm."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from .. import backends, preflight, status
from ..errors import LabError
from ..lab import Lab
from ..lifecycle import up as lifecycle
from ..ui import info
from .context import selection
from .status import print_status


def up(
    ctx: typer.Context,
    provider: Annotated[Optional[str], typer.Option(help="virtualbox, libvirt, docker or auto "
                                                         "(env LABCTL_PROVIDER).")] = None,
    subnet: Annotated[Optional[str], typer.Option(help="Private /24 of the lab (default: a free one "
                                                       "in 192.168.56.0/21).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the final status as JSON.")] = False,
    accept_new_host_keys: Annotated[bool, typer.Option(
        "--accept-new-host-keys", help="Existing hosts: record unknown host keys in known_hosts "
        "(like ssh's accept-new); a changed key is still refused.")] = False,
) -> None:
    """Bring up three hosts with Docker, joined in one swarm (idempotent: a re-run heals)."""
    chosen = selection(ctx)
    lab = Lab.for_up(chosen, {"subnet": subnet})
    lab.accept_new_host_keys = accept_new_host_keys
    choice = backends.choose(lab.spec, provider, lab.spec.provider if lab.state.exists() else None)
    if not json_out:
        info(f"lab '{lab.spec.name}' ({lab.spec.subnet}) on provider {choice.provider}: {choice.reason}")
    with lab.locked(chosen.wait, info):
        preflight.require(lab.spec, choice.provider, fresh=not lab.state.exists())
        try:
            result = lifecycle.up(lab, choice, quiet=json_out)
        except KeyboardInterrupt:
            raise LabError("interrupted", hint="run `labctl up` again: it resumes where it stopped",
                           exit_code=130) from None
    # The hosts were just seen answering: spare the provider's slow status call.
    seen = lab.backend().up_state
    rows = status.collect(lab, provider_states={h: seen for h in lab.spec.host_names})
    if json_out:
        print(status.to_json(lab, rows))
        return
    print_status(lab, rows, "rich")
    if not result.changed:
        info("the lab was already up: nothing changed")


def register(app: typer.Typer) -> None:
    app.command()(up)
