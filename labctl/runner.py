"""Commands on this machine, run one way: with a deadline, output captured (and streamed
line by line when asked), and every failure a LabError - a missing tool, a command that
hangs, or (with check=True) one that fails, as a RunError naming the command and its output."""

from __future__ import annotations

import os
import queue
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .errors import LabError, MissingToolError

LOCAL = "this machine"

# How to get a tool this machine lacks, and what to look at when it hangs.
INSTALL_HINTS = {
    "docker": "apt-get install docker.io",
    "iptables": "apt-get install iptables",
    "iptables-save": "apt-get install iptables",
    "debootstrap": "apt-get install debootstrap",
}
HANG_HINTS = {
    "docker": "is this machine's dockerd overloaded or hung? `docker info` checks it",
    "iptables": "another program may hold the xtables lock",
    "iptables-save": "another program may hold the xtables lock",
}


@dataclass
class Result:
    """A finished command: its exit code and what it printed."""

    rc: int
    out: str
    err: str

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def tail(self, lines: int = 6) -> str:
        text = (self.err.strip() or self.out.strip()).splitlines()
        return "\n".join(text[-lines:])


def shorten(command: str, width: int = 80) -> str:
    command = " ".join(command.split())
    return command if len(command) <= width else command[: width - 3] + "..."


class RunError(LabError):
    """A command that ran and failed: where, what, its exit code and the end of its output."""

    def __init__(self, host: str, command: str, rc: int, output: str, hint: str | None = None):
        self.host, self.command, self.rc, self.output = host, command, rc, output
        said = " / ".join(line.strip() for line in output.splitlines() if line.strip())
        where = "on this machine" if host == LOCAL else f"on {host}"
        again = "run it by hand" if host == LOCAL else f"`labctl ssh {host}` and run it there"
        super().__init__(f"`{shorten(command)}` failed {where} (exit {rc})" + (f": {said}" if said else ""),
                         hint=hint or f"{again} to see all it prints")


class CommandTimeout(LabError):
    """A command that did not finish by its deadline (it was ended)."""


def run_local(
    argv: Sequence[str],
    *,
    timeout: float,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | str | None = None,
    on_line: Callable[[str], None] | None = None,
    check: bool = False,
    shown: str | None = None,
    hint: str | None = None,
) -> Result:
    """Run `argv` on this machine; `timeout` seconds end it (and whatever it started).

    `env` is added to this process's environment. `on_line` gets each line of output (stdout
    and stderr) as it comes. `shown` is how errors name the command (give one without secrets
    when argv holds any); `hint` is the RunError's hint when check=True and the command fails.
    Never raises OSError or TimeoutExpired: a missing tool is a MissingToolError, a deadline
    a CommandTimeout."""
    argv = list(argv)
    shown = shown or shlex.join(argv)
    tool = os.path.basename(argv[0])
    full_env = {**os.environ, **env} if env is not None else None
    if shutil.which(argv[0], path=(full_env or os.environ).get("PATH")) is None:
        raise MissingToolError(f"{tool} is not installed on this machine",
                               hint=INSTALL_HINTS.get(tool, f"install {tool}"))
    try:
        # A session of its own: a deadline ends the command's children too (a killed `sh`
        # would leave them holding the output pipes open).
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
                                env=full_env, cwd=cwd, start_new_session=True)
    except OSError as exc:
        raise MissingToolError(f"{tool} cannot run on this machine: {exc.strerror or exc}",
                               hint=INSTALL_HINTS.get(tool, f"install {tool}")) from None
    try:
        if on_line is None:
            out, err = proc.communicate(input, timeout=timeout)
        else:
            out, err = _stream(proc, input, time.monotonic() + timeout, on_line)
    except subprocess.TimeoutExpired:
        _end(proc)
        if on_line is None:
            try:
                proc.communicate(timeout=5)  # what is left in the pipes, and they are closed
            except subprocess.TimeoutExpired:
                pass  # a process that left the session still holds them: not waited for
        raise CommandTimeout(f"`{shorten(shown)}` did not finish within {timeout:g} s on this machine",
                             hint=HANG_HINTS.get(tool, "is this machine overloaded?")) from None
    except BaseException:  # Ctrl-C: the command is in a session of its own, so it is ended here
        _end(proc)
        raise
    result = Result(proc.returncode, out, err)
    if check and not result.ok:
        raise RunError(LOCAL, shown, result.rc, result.tail(3), hint=hint)
    return result


def _end(proc: subprocess.Popen[str]) -> None:
    """Kill the command and all it started; their pipes close, so readers see the end."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass  # gone already
    proc.wait()


def _stream(proc: subprocess.Popen[str], input: str | None, deadline: float,
            on_line: Callable[[str], None]) -> tuple[str, str]:
    """Both outputs, each line handed to `on_line` in this thread as it arrives."""
    lines: queue.Queue[tuple[int, str | None]] = queue.Queue()

    def pump(which: int, stream: IO[str]) -> None:
        with stream:
            for line in stream:
                lines.put((which, line))
        lines.put((which, None))

    assert proc.stdout is not None and proc.stderr is not None
    for which, stream in ((0, proc.stdout), (1, proc.stderr)):
        threading.Thread(target=pump, args=(which, stream), daemon=True).start()
    if input is not None and proc.stdin is not None:
        threading.Thread(target=_feed, args=(proc.stdin, input), daemon=True).start()
    got: tuple[list[str], list[str]] = ([], [])
    open_streams = 2
    while open_streams:
        try:
            which, line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise subprocess.TimeoutExpired(proc.args, 0) from None
        if line is None:
            open_streams -= 1
            continue
        got[which].append(line)
        if line.strip():
            on_line(line.strip())
    try:
        proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        raise subprocess.TimeoutExpired(proc.args, 0) from None
    return "".join(got[0]), "".join(got[1])


def _feed(stdin: IO[str], data: str) -> None:
    try:
        stdin.write(data)
        stdin.close()
    except OSError:
        pass  # the command stopped reading; its exit code says why
