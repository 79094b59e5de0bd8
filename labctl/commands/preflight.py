"""`labctl preflight`: what would stop the lab, found before anything is booted."""

from __future__ import annotations

import json
import os
from typing import Annotated, Optional

import typer

from .. import backends, preflight
from ..errors import EXIT_FAILED, MissingToolError
from ..lab import Lab
from ..ui import FormatOpt, check_format, emit_table, info
from .context import selection

MARKS = {preflight.OK: "ok", preflight.WARN: "warning", preflight.FAIL: "FAIL"}


def resolve_provider(lab: Lab, flag: str | None) -> tuple[str | None, str]:
    """The provider `up` would use, and why; (None, why) when none can run here."""
    current = lab.spec.provider if lab.state.exists() else None
    try:
        choice = backends.choose(lab.spec, flag, current)
        return choice.provider, choice.reason
    except MissingToolError as exc:
        named = flag or os.environ.get("LABCTL_PROVIDER") or lab.spec.provider or current
        return (named if named and named != "auto" else None), exc.message


def preflight_cmd(
    ctx: typer.Context,
    provider: Annotated[Optional[str], typer.Option(help="virtualbox, libvirt, docker or auto "
                                                         "(env LABCTL_PROVIDER).")] = None,
    subnet: Annotated[Optional[str], typer.Option(help="Private /24 of the lab.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    fmt: FormatOpt = "rich",
) -> None:
    """Check this machine for the lab before booting it: provider, kernel, memory, disk, subnet.
    Exit 1 when something would stop the lab."""
    check_format(fmt)
    lab = Lab.for_up(selection(ctx), {"subnet": subnet})
    name, reason = resolve_provider(lab, provider)
    checks = preflight.run(lab.spec, name, fresh=not lab.state.exists()) if name else []
    if name is None:
        checks.insert(0, preflight.Check("provider", "provider", preflight.FAIL, reason,
                                         "install VirtualBox or libvirt, or start a Docker daemon"))
    failed = preflight.failures(checks)
    if json_out:
        print(json.dumps({"lab": lab.spec.name, "provider": name, "provider_reason": reason,
                          "subnet": lab.spec.subnet, "ok": not failed,
                          "checks": [c.to_json() for c in checks]}, indent=2))
    else:
        info(f"lab '{lab.spec.name}' ({lab.spec.subnet}) on provider {name or '-'}: {reason}")
        emit_table(["area", "check", "result", "detail", "fix"],
                   [[c.area, c.item, MARKS[c.status], c.detail, c.fix or "-"] for c in checks], fmt)
    if failed:
        raise typer.Exit(EXIT_FAILED)


def register(app: typer.Typer) -> None:
    app.command("preflight")(preflight_cmd)
