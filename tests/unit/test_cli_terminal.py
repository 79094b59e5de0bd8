"""labctl as a shell and a terminal see it: completion scripts, and no colour with NO_COLOR."""

from __future__ import annotations

import os
import pty
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

# SGR sequences that set a colour: 30-39/40-49 (incl. 38;5;N and 38;2;R;G;B), 90-97, 100-107
COLOUR = re.compile(r"\x1b\[(?:[0-9]*;)*(?:3[0-9]|4[0-9]|9[0-7]|10[0-7])(?:;[0-9]*)*m")


@pytest.fixture
def shell_env(tmp_path: Path) -> dict[str, str]:
    """`labctl` on the PATH (this interpreter's labctl) and a HOME of its own."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    wrapper = bindir / "labctl"
    wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m labctl "$@"\n')
    wrapper.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "LABCTL_LAB")}
    env.update(PATH=f"{bindir}:{env.get('PATH', '/usr/bin:/bin')}", HOME=str(tmp_path / "home"),
               LABCTL_HOME=str(tmp_path / "labctl"), TERM="xterm-256color")
    (tmp_path / "home").mkdir()
    return env


def bash(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # `; :` keeps bash from exec'ing the last command: labctl then runs under bash, which
    # is how it detects the shell to complete for
    return subprocess.run(["bash", "-c", script + "\n:"], env=env, capture_output=True, text=True, timeout=60)


def complete(words: str, env: dict[str, str]) -> list[str]:
    """What bash offers for the last word, with the script `labctl --show-completion` prints."""
    proc = bash(f'eval "$(labctl --show-completion)"; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); '
                '_labctl_completion labctl; printf "%s\\n" "${COMPREPLY[@]}"', env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_show_completion_gives_a_bash_script_that_completes(shell_env: dict[str, str]) -> None:
    script = bash("labctl --show-completion", shell_env)
    assert script.returncode == 0, script.stderr
    assert "complete -o default -F _labctl_completion labctl" in script.stdout
    assert complete("labctl sc", shell_env) == ["scenario"]
    assert complete("labctl --la", shell_env) == ["--lab", "--lab-file"]
    assert "build-node" in complete("labctl images ''", shell_env)


def test_install_completion_writes_the_script_where_bash_reads_it(shell_env: dict[str, str]) -> None:
    proc = bash("labctl --install-completion", shell_env)
    assert proc.returncode == 0, proc.stderr
    installed = Path(shell_env["HOME"], ".bash_completions", "labctl.sh")
    assert "_labctl_completion" in installed.read_text()
    assert str(installed) in Path(shell_env["HOME"], ".bashrc").read_text()


def on_terminal(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run with stdin, stdout and stderr on a pseudo-terminal; its exit code and output."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: exec at once
        os.execvpe(argv[0], argv, env)
    out = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")


# an error line, typer's help, a table, and the completion installer's message
COMMANDS = [["--lab", "nosuch", "status"], [], ["scenario", "list"],
            ["bash", "-c", "labctl --install-completion; :"]]


@pytest.mark.parametrize("args", COMMANDS, ids=["error", "help", "scenario-list", "install-completion"])
def test_no_colour_with_no_color_set(shell_env: dict[str, str], args: list[str]) -> None:
    argv = args if args[:1] == ["bash"] else ["labctl", *args]
    _, out = on_terminal(argv, {**shell_env, "NO_COLOR": "1"})
    assert out.strip()
    assert not COLOUR.findall(out), out


@pytest.mark.parametrize("args", [COMMANDS[0], COMMANDS[1], COMMANDS[3]], ids=["error", "help", "install-completion"])
def test_colour_on_a_terminal_without_no_color(shell_env: dict[str, str], args: list[str]) -> None:
    argv = args if args[:1] == ["bash"] else ["labctl", *args]
    _, out = on_terminal(argv, {**shell_env, "NO_COLOR": ""})  # empty: not set, as no-color.org says
    assert COLOUR.findall(out), out
