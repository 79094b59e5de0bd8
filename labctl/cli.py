"""The `labctl` command line (typer)."""

from __future__ import annotations

import json
import math
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.core import TyperGroup

try:  # typer >= 0.20 vendors its own Click
    from typer import _click as click  # type: ignore[attr-defined]
    from typer._click import exceptions as click_exc
except ImportError:  # pragma: no cover - older typer uses Click itself
    import click  # type: ignore[no-redef]
    from click import exceptions as click_exc  # type: ignore[no-redef]

from diagnostics import faults

from . import images, node_image, providers, status, validate
from .backends import docker_host
from .backends.vagrant import require_vagrant
from .errors import EXIT_FAILED, LabError, UsageError
from .lab import Lab, Selection
from .spec import LabSpec
from .ssh import client_argv
from .state import LabState, all_labs
from .ui import FormatOpt, check_format, click_settings, emit_table, error, info, note, phase
from .up import UpPipeline


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
images_app = typer.Typer(help="Images inside the lab's hosts, and the docker provider's node image.",
                         no_args_is_help=True)
app.add_typer(images_app, name="images")


class Context:
    selection: Selection


CTX = Context()


@app.callback()
def main_options(
    lab: Annotated[Optional[str], typer.Option("--lab", "-n", help="Lab name (env LABCTL_LAB).")] = None,
    lab_file: Annotated[Optional[Path], typer.Option("--lab-file", "-f",
                                                      help="Lab file (default: ./labctl.toml if present).")] = None,
    wait: Annotated[float, typer.Option("--wait", help="Seconds to wait for another labctl command "
                                                       "on the same lab (default: refuse at once).")] = 0.0,
) -> None:
    if not math.isfinite(wait) or wait < 0:
        raise UsageError(f"--wait {wait} is not a number of seconds", hint="e.g. --wait 60")
    CTX.selection = Selection.make(lab, lab_file, wait)


def _notify(message: str) -> None:
    info(message)




@app.command()
def up(
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
    lab = Lab.for_up(CTX.selection, {"subnet": subnet})
    lab.accept_new_host_keys = accept_new_host_keys
    if lab.spec.existing:
        if provider not in (None, "existing"):
            raise UsageError(f"the lab file describes existing hosts: --provider {provider} does not apply")
        choice = providers.Choice("existing", "the lab file describes existing hosts (no Vagrant)")
    else:
        require_vagrant()
        current = lab.spec.provider if lab.state.exists() else None
        choice = providers.choose(provider, None if current else lab.spec.provider, current)
        if current and choice.provider != current:
            raise UsageError(f"lab '{lab.spec.name}' runs on {current}, not {choice.provider}",
                             hint=f"`labctl --lab {lab.spec.name} down` first to change provider")
    quiet = json_out
    if not quiet:
        info(f"lab '{lab.spec.name}' ({lab.spec.subnet}) on provider {choice.provider}: {choice.reason}")
    with lab.locked(CTX.selection.wait, _notify):
        try:
            result = UpPipeline(lab, choice, quiet=quiet).run()
        except KeyboardInterrupt:
            raise LabError("interrupted", hint="run `labctl up` again: it resumes where it stopped",
                           exit_code=130) from None
    # The hosts were just seen running: spare the provider's slow status call.
    seen = "reachable" if lab.spec.existing else "running"
    rows = status.collect(lab, provider_states={h: seen for h in lab.spec.host_names})
    if json_out:
        print(status.to_json(lab, rows))
        return
    _print_status(lab, rows, "rich")
    if not result.changed:
        info("the lab was already up: nothing changed")


def _print_status(lab: Lab, rows: list[status.HostStatus], fmt: str) -> None:
    headers = ["host", "provider", "address", "ssh", "docker", "swarm role", "state", "avail.", "problem"]
    table = [[f"{r.host} ({r.aliases})", r.provider_state, r.private_ip, r.ssh, r.docker, r.swarm_role,
              r.swarm_state, r.availability, r.problem or "-"] for r in rows]
    emit_table(headers, table, fmt, title=f"lab {lab.spec.name} ({lab.spec.provider}, {lab.spec.subnet})")


@app.command("status")
def status_cmd(
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    all_labs_flag: Annotated[bool, typer.Option("--all", help="List every lab on this machine.")] = False,
    fmt: FormatOpt = "rich",
) -> None:
    """Each host: provider state, addresses, Docker version, swarm role and state. Exit 1 if unhealthy."""
    check_format(fmt)
    if all_labs_flag:
        labs: list[dict[str, str | None]] = []
        for name in all_labs():
            try:
                spec = LabState(name).load_spec()
            except LabError as exc:  # one damaged lab does not hide the others
                labs.append({"lab": name, "provider": "damaged", "subnet": "-", "hosts": exc.message})
                continue
            labs.append({"lab": name, "provider": spec.provider, "subnet": spec.subnet,
                         "hosts": ", ".join(spec.host_names)})
        if json_out:
            print(json.dumps(labs, indent=2))
        else:
            emit_table(["lab", "provider", "subnet", "hosts"],
                        [list(map(str, lab.values())) for lab in labs], fmt)
        return
    lab = Lab.open(CTX.selection)
    with lab.locked(CTX.selection.wait, note, shared=True):
        rows = status.collect(lab)
    if json_out:
        print(status.to_json(lab, rows))
    else:
        _print_status(lab, rows, fmt)
    if not status.healthy(rows):
        raise typer.Exit(EXIT_FAILED)


@app.command()
def ssh(host: Annotated[str, typer.Argument(help="manager, worker-1, worker-2 (or host1..host3).")]) -> None:
    """Open an interactive shell on a host."""
    lab = Lab.open(CTX.selection)
    name = lab.spec.host(host).name
    endpoint = lab.endpoints().get(name)
    if endpoint is None:
        raise LabError(f"{name} has no SSH endpoint", hint="`labctl up`")
    client = shutil.which("ssh")
    if client is None:
        raise LabError("the ssh client is not installed", hint="apt-get install openssh-client")
    os.execv(client, client_argv(endpoint))


@app.command("exec", context_settings={"allow_interspersed_args": False})
def exec_cmd(
    host: Annotated[str, typer.Argument(help="manager, worker-1, worker-2 (or host1..host3).")],
    command: Annotated[list[str], typer.Argument(help="The command (after --).")],
    timeout: Annotated[float, typer.Option(help="Seconds before the command is ended.")] = 600,
) -> None:
    """Run a command on a host; its output and exit code are passed through."""
    if not math.isfinite(timeout) or timeout <= 0:
        raise UsageError(f"--timeout {timeout} is not a number of seconds", hint="e.g. --timeout 60")
    lab = Lab.open(CTX.selection)
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

    with lab.locked(CTX.selection.wait, note, shared=True):
        result = target.run(line, timeout=timeout, on_line=echo)
    lines = result.out.split("\n")
    if lines and lines[-1]:
        sys.stdout.write(lines[-1])  # an unterminated last line
    sys.stderr.write(result.err)
    raise typer.Exit(result.rc)


@images_app.command("load")
def images_load(
    names: Annotated[list[str], typer.Argument(help="Local images, or one `docker save` tarball.")],
) -> None:
    """Copy images from this machine's Docker (or a tarball) into every host."""
    lab = Lab.open(CTX.selection)
    with lab.locked(CTX.selection.wait, _notify), phase(f"load {', '.join(names)} into every host") as step:
        loaded = images.load(list(lab.hosts().values()), names)
        step.done("; ".join(f"{h}: {what}" for h, what in loaded.items()))


@images_app.command("build-node")
def images_build_node(
    image: Annotated[Optional[str], typer.Option(help="Image name (default: the lab's node image).")] = None,
    method: Annotated[str, typer.Option(help="auto, dockerfile or debootstrap.")] = "auto",
) -> None:
    """(Re)build the docker provider's node image from provision/node-image."""
    if image is None:
        image = LabState(CTX.selection.lab_name()).load_spec().node_image \
            if LabState(CTX.selection.lab_name()).exists() else LabSpec().node_image
    validate.image(image)
    if docker_host.daemon_version() is None:
        raise LabError("no Docker daemon answers here", hint="start dockerd first")
    with phase(f"build node image {image}") as step:
        used = node_image.build(image, method, step.note)
        step.done(f"built with {used}")


@app.command()
def down() -> None:
    """Destroy the lab's hosts and everything the lab made. Nothing is left behind."""
    name = CTX.selection.lab_name()
    state = LabState(name)
    if not state.exists():
        state.remove()  # a folder an interrupted `up` left, if labctl made it
        info(f"lab '{name}' does not exist: nothing to remove")
        return
    lab = Lab(state.load_spec(), state)
    with lab.locked(CTX.selection.wait, _notify):
        problems: list[str] = []
        with phase("undo injected faults") as step:
            # Path drops live on this machine; on existing hosts every fault must go.
            cleared = faults.clear(lab) if lab.spec.existing else faults.clear_machine_rules(lab)
            problems += cleared.failed
            step.done(f"{len(cleared.done)} undone" if cleared.done else "none to undo")
        backend = lab.backend()
        with phase(f"destroy lab {name}") as step:
            backend.destroy(step.note)
            left = backend.leftovers()
            problems += [f"{what} is still there" for what in left]
            if left:
                raise LabError(f"lab '{name}' was not fully removed: {'; '.join(problems)}",
                               hint="its state is kept: run `labctl down` again, or remove what is named by hand")
            step.done("swarm dismantled, hosts kept" if lab.spec.existing
                      else f"hosts, networks and volumes of {lab.spec.provider} removed (checked)")
        if problems:
            raise LabError(f"lab '{name}' was destroyed, but: {'; '.join(problems)}",
                           hint="its state is kept so `labctl down` can try again; `labctl fault list` "
                                "shows what is recorded")
        lab.close()
        state.remove()  # under the lock: no `up` can start in a half-removed folder
    info(f"lab '{name}' removed")


# Command groups defined in their own modules are registered here.
from .scenarios.cli import app as scenario_app  # noqa: E402

app.add_typer(scenario_app, name="scenario")
from .diagnose_cli import register as _register_diagnostics  # noqa: E402

_register_diagnostics(app)


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
    except click_exc.ClickException as exc:
        ctx = getattr(exc, "ctx", None)
        error(exc.format_message(), f"`{ctx.command_path if ctx is not None else 'labctl'} --help` shows the usage")
        sys.exit(exc.exit_code)
    except typer.Abort:
        error("interrupted")
        sys.exit(130)
    except KeyboardInterrupt:
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

