"""Commands on this machine through the one local runner, with real (harmless) processes:
exit codes, missing tools, deadlines, streamed lines, and the RunError that names a failure;
and the one place fan-out results are sorted into values and errors."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from labctl.errors import EXIT_MISSING, LabError, MissingToolError
from labctl.runner import LOCAL, CommandTimeout, Result, RunError, run_local
from labctl.ssh import Endpoint, Host, raise_first, split_results


def test_exit_codes_and_output_are_returned() -> None:
    assert run_local(["true"], timeout=5) == Result(0, "", "")
    failed = run_local(["sh", "-c", "echo out; echo err >&2; exit 3"], timeout=5)
    assert (failed.rc, failed.out, failed.err, failed.ok) == (3, "out\n", "err\n", False)
    assert failed.tail() == "err"


def test_input_env_and_cwd_reach_the_command(tmp_path: Path) -> None:
    assert run_local(["cat"], timeout=5, input="piped\n").out == "piped\n"
    got = run_local(["sh", "-c", 'echo "$LABCTL_T"; pwd'], timeout=5, env={"LABCTL_T": "x y"}, cwd=tmp_path)
    assert got.out.splitlines() == ["x y", str(tmp_path.resolve())]
    assert "PATH" in run_local(["env"], timeout=5, env={"LABCTL_T": "1"}).out  # added to, not replacing


def test_a_missing_tool_is_exit_3_with_an_install_hint() -> None:
    with pytest.raises(MissingToolError) as exc:
        run_local(["labctl-no-such-tool", "-x"], timeout=5)
    assert exc.value.exit_code == EXIT_MISSING
    assert exc.value.message == "labctl-no-such-tool is not installed on this machine"
    assert exc.value.hint == "install labctl-no-such-tool"


def test_a_known_tool_missing_gets_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(MissingToolError) as exc:
        run_local(["iptables", "-L"], timeout=5)
    assert "iptables is not installed" in exc.value.message and exc.value.hint == "apt-get install iptables"


def test_a_file_that_cannot_be_executed_is_a_lab_error(tmp_path: Path) -> None:
    script = tmp_path / "tool"
    script.write_text("#!/nonexistent/interpreter\n")
    script.chmod(0o755)
    with pytest.raises(LabError) as exc:
        run_local([str(script)], timeout=5)
    assert "cannot run on this machine" in exc.value.message


@pytest.mark.parametrize("stream", [False, True])
def test_a_deadline_ends_the_command_and_what_it_started(stream: bool, tmp_path: Path) -> None:
    marker = tmp_path / "late"
    started = time.monotonic()
    with pytest.raises(CommandTimeout) as exc:
        # the child `sleep` holds the output pipes: it must be ended too, or this waits for it
        run_local(["sh", "-c", f"sleep 5; touch {marker}"], timeout=0.5,
                  on_line=(lambda _: None) if stream else None)
    assert time.monotonic() - started < 3
    assert exc.value.message.startswith("`sh -c 'sleep 5; touch ")
    assert exc.value.message.endswith("` did not finish within 0.5 s on this machine")
    time.sleep(0.2)
    assert not marker.exists()


def test_a_process_that_left_the_session_does_not_hold_up_the_deadline() -> None:
    started = time.monotonic()
    with pytest.raises(CommandTimeout):
        run_local(["sh", "-c", "setsid sleep 8 & sleep 8"], timeout=0.5)
    assert time.monotonic() - started < 7


def test_a_deadline_message_names_the_shown_command_and_seconds() -> None:
    with pytest.raises(CommandTimeout) as exc:
        run_local(["sleep", "5"], timeout=1, shown="sleep <redacted>")
    assert exc.value.message == "`sleep <redacted>` did not finish within 1 s on this machine"


def test_lines_are_streamed_as_they_come(tmp_path: Path) -> None:
    """The command goes on only once "one" was handed on: without streaming it would time out."""
    seen: list[str] = []
    flag = tmp_path / "seen-one"

    def on_line(line: str) -> None:
        seen.append(line)
        if line == "one":
            flag.touch()

    script = f"echo one; echo two >&2; until [ -e {flag} ]; do sleep 0.01; done; echo; echo three"
    result = run_local(["sh", "-c", script], timeout=10, on_line=on_line)
    assert sorted(seen[:2]) == ["one", "two"] and seen[2:] == ["three"]  # blank lines are not handed on
    assert (result.rc, result.out, result.err) == (0, "one\n\nthree\n", "two\n")


def test_streaming_with_input() -> None:
    seen: list[str] = []
    assert run_local(["cat"], timeout=5, input="a\nb\n", on_line=seen.append).ok
    assert seen == ["a", "b"]


def test_check_turns_a_failure_into_a_run_error() -> None:
    with pytest.raises(RunError) as exc:
        run_local(["sh", "-c", "echo first >&2; echo second >&2; exit 4"], timeout=5, check=True,
                  shown="sh -c <script>", hint="try again")
    err = exc.value
    assert (err.host, err.command, err.rc, err.output) == (LOCAL, "sh -c <script>", 4, "first\nsecond")
    assert err.message == "`sh -c <script>` failed on this machine (exit 4): first / second"
    assert "\n" not in err.message and err.hint == "try again"
    assert run_local(["false"], timeout=5).rc == 1  # without check: a result


def test_a_run_error_always_has_a_hint_and_names_a_remote_host() -> None:
    err = RunError("worker-1", "docker info", 1, "")
    assert err.message == "`docker info` failed on worker-1 (exit 1)"
    assert err.hint and "worker-1" in err.hint
    assert RunError(LOCAL, "false", 1, "").hint


def test_host_run_with_check_raises_the_same_run_error() -> None:
    class Channel:
        def __init__(self) -> None:
            self.err = [b"line 1\nno such thing\n"]

        def exec_command(self, command: str) -> None:
            self.command = command

        def recv_ready(self) -> bool:
            return False

        def recv_stderr_ready(self) -> bool:
            return bool(self.err)

        def recv_stderr(self, n: int) -> bytes:
            return self.err.pop()

        def exit_status_ready(self) -> bool:
            return True

        def recv_exit_status(self) -> int:
            return 2

        def __getattr__(self, name: str) -> Any:
            return lambda *a: None  # settimeout, shutdown_write, close

    class Transport:
        def open_session(self, timeout: float | None = None) -> Channel:
            return Channel()

    host = Host("worker-2", Endpoint("127.0.0.1", 1, "vagrant", ""))
    host._transport = lambda: Transport()  # type: ignore[method-assign,assignment,return-value]
    assert host.run("ls /x", sudo=True).rc == 2
    with pytest.raises(RunError) as exc:
        host.run("echo s3cret | docker login", sudo=True, check=True, shown="docker login")
    assert (exc.value.host, exc.value.command, exc.value.rc) == ("worker-2", "docker login", 2)
    assert exc.value.message == "`docker login` failed on worker-2 (exit 2): line 1 / no such thing"
    assert "s3cret" not in exc.value.message


# --- fan-out results --------------------------------------------------------------------

def test_split_results_sorts_values_and_errors_by_host() -> None:
    boom = LabError("worker-1: no")
    values, errors = split_results({"manager": 1, "worker-1": boom, "worker-2": None})
    assert values == {"manager": 1, "worker-2": None} and errors == {"worker-1": boom}
    assert split_results({}) == ({}, {})


def test_raise_first_returns_values_or_raises_the_first_error() -> None:
    assert raise_first({"a": 1, "b": 2}) == {"a": 1, "b": 2}
    one = LabError("a: broke", hint="h")
    with pytest.raises(LabError) as exc:
        raise_first({"a": one, "b": 2})
    assert exc.value is one
    with pytest.raises(LabError) as exc:
        raise_first({"a": one, "b": LabError("b: broke"), "c": 3})
    assert exc.value.message == "a: broke (failed on: a, b)" and exc.value.hint == "h"


def test_raise_first_names_what_failed_for_an_unexpected_error() -> None:
    with pytest.raises(RuntimeError):
        raise_first({"a": RuntimeError("x")})
    with pytest.raises(LabError) as exc:
        raise_first({"a": 1, "b": RuntimeError("x")}, what="the kernel-limit probe")
    assert exc.value.message == "b: the kernel-limit probe failed (RuntimeError: x)"
    one = LabError("a: broke")
    with pytest.raises(LabError) as exc:
        raise_first({"a": one}, what="the probe")
    assert exc.value is one

