"""A fact is one piece of host state: the command that reads it and the parser of its output.

Facts are frozen dataclasses, so a parametrised fact (`RouteTo("192.168.56.11")`) is a
value that can key the readings of a round trip. A parser is pure: it gets the command's
stdout, stderr and exit code and returns a typed value, or raises FactError.
"""

from __future__ import annotations

import re
import secrets
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar, overload

from ..errors import LabError
from ..ssh import Host, Result, run_rerunnable

T = TypeVar("T")
D = TypeVar("D")


class FactError(ValueError):
    """A command's output is not what its parser reads."""


@dataclass(frozen=True)
class Fact(Generic[T]):
    """Subclasses set `command` (an attribute, or a property when the fact has parameters)
    and implement `parse`."""

    timeout: ClassVar[float] = 20.0
    what: ClassVar[str] = "state"  # as error messages name it: "the swarm's nodes"

    @property
    def command(self) -> str:
        raise NotImplementedError

    def parse(self, result: Result) -> T:
        raise NotImplementedError

    def check(self, value: T, host: str) -> T:
        """Refuse host-reported values that labctl later puts into commands (validate.py)."""
        return value


def parse_or_raise(fact: Fact[T], result: Result, host: str) -> T:
    """The fact's value; a parser's complaint becomes a LabError naming the host."""
    try:
        value = fact.parse(result)
    except FactError as exc:
        raise LabError(f"{host}: {exc}") from None
    except (ValueError, LookupError, TypeError, AttributeError):
        raise LabError(f"{host}: `{_short(fact.command)}` printed no {fact.what}: "
                       f"{result.out.strip()[:200]!r}") from None
    return fact.check(value, host)


def read(host: Host, fact: Fact[T], timeout: float | None = None) -> T:
    """One fact, its command run on its own."""
    return parse_or_raise(fact, host.run(fact.command, sudo=True, timeout=timeout or fact.timeout), host.name)


class Readings:
    """What one round trip read from a host: each fact's value, or its own error."""

    def __init__(self, host: str, results: dict[Fact[Any], Result]):
        self.host = host
        self.results = results

    def __getitem__(self, fact: Fact[T]) -> T:
        if fact not in self.results:
            raise KeyError(fact)
        return parse_or_raise(fact, self.results[fact], self.host)

    @overload
    def get(self, fact: Fact[T]) -> T | None: ...
    @overload
    def get(self, fact: Fact[T], default: D) -> T | D: ...
    def get(self, fact: Fact[Any], default: Any = None) -> Any:
        """The value, or `default` when its command failed or printed something else."""
        try:
            return self[fact]
        except (LabError, KeyError):
            return default

    def result(self, fact: Fact[Any]) -> Result:
        return self.results[fact]


_SECTION = re.compile(r"(?:^|\n)(\S+) (\d+) (out|err|rc)\n")


def batch_command(commands: Sequence[str], marker: str, timeout: float) -> str:
    """Every command at once in its own `sh -c` (stdout, stderr, exit code kept apart),
    then each one's output between marker lines."""
    lines = ['t=`mktemp -d /tmp/labctl-facts.XXXXXX` || exit 97', "trap 'rm -rf \"$t\"' EXIT"]
    for i, command in enumerate(commands):
        lines.append(f'{{ timeout {timeout:.0f} sh -c {shlex.quote(command)} </dev/null >"$t/{i}.out" '
                     f'2>"$t/{i}.err"; echo $? >"$t/{i}.rc"; }} &')
    lines.append("wait")
    for i in range(len(commands)):
        lines.append(f"printf '%s {i} out\\n' {marker}; cat \"$t/{i}.out\"; "
                     f"printf '\\n%s {i} err\\n' {marker}; cat \"$t/{i}.err\"; "
                     f"printf '\\n%s {i} rc\\n' {marker}; cat \"$t/{i}.rc\"")
    return "\n".join(lines)


def split_batch(text: str, marker: str, count: int) -> list[Result]:
    """The per-command results of `batch_command`'s output."""
    parts = _SECTION.split(text)
    sections: dict[tuple[int, str], str] = {}
    for j in range(1, len(parts) - 3, 4):
        if parts[j] == marker:
            sections[(int(parts[j + 1]), parts[j + 2])] = parts[j + 3]
    results = []
    for i in range(count):
        rc = sections.get((i, "rc"), "").strip()
        if (i, "out") not in sections or not rc.isdigit():
            raise FactError(f"printed malformed facts (no section {i}): {text.strip()[:120]!r}")
        results.append(Result(int(rc), sections[(i, "out")], sections.get((i, "err"), "")))
    return results


def read_many(host: Host, facts: Sequence[Fact[Any]], timeout: float = 30.0) -> Readings:
    """Several facts in one SSH round trip: the commands run side by side on the host, each
    parser gets its own command's output and exit code. Facts with the same command share
    one run of it. A session the host refuses or drops is tried once more."""
    commands = list(dict.fromkeys(f.command for f in facts))
    marker = "labctl-fact-" + secrets.token_hex(8)
    per_command = max(f.timeout for f in facts) if facts else timeout
    # Each command's own limit runs on the host; the host's pace stretches it as run() does the whole.
    each = min(per_command, timeout) * getattr(host, "pace", 1.0)
    result = run_rerunnable(host, batch_command(commands, marker, each), sudo=True, timeout=timeout + 5)
    try:
        results = split_batch(result.out, marker, len(commands))
    except FactError as exc:
        raise LabError(f"{host.name}: {exc}" if result.ok else
                       f"{host.name}: reading the host's facts failed: {result.tail(3)}") from None
    by_command = dict(zip(commands, results, strict=True))
    return Readings(host.name, {f: by_command[f.command] for f in facts})


def _short(command: str, width: int = 60) -> str:
    command = " ".join(command.split())
    return command if len(command) <= width else command[: width - 3] + "..."
