"""The scenario engine: runs steps on hosts, checks them, times them, cleans up.

A scenario is data: a list of steps, each the command a person types on a host
and a check of what must then be true (a check that can fail). The engine runs
them in order, stops at the first failure, and always cleans up afterwards
(also after Ctrl-C), then verifies that every host is left as it was found.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from .. import facts
from ..errors import LabError
from ..runner import Result
from ..spec import LabSpec
from ..ssh import Host, fan_out, split_results
from .images import ImageSet
from .limits import Limits

Status = Literal["pass", "fail", "skip", "not run"]
Text = str | Callable[["Ctx"], str]


class Fail(Exception):
    """A check found something that should be true to be false."""

    def __init__(self, message: str, output: str = "", hint: str | None = None, retry_for: float | None = None):
        super().__init__(message)
        self.message = message
        self.output = output
        self.hint = hint
        # This kind of failure is worth retrying for at most this long (within the step's `until`).
        self.retry_for = retry_for


class Skip(Exception):
    """A check that cannot run here (a kernel limit, a host with nothing to check)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# A check gets the run's context and the command's result; it raises Fail or
# Skip, or returns a short note on what it saw.
Check = Callable[["Ctx", Result], "str | None"]
Hint = str | Callable[["Ctx", "StepResult"], str]


@dataclass
class Step:
    title: str  # what must be true after the command, as a sentence
    host: Text  # a lab host name, or a function of the context
    command: Text  # what runs, as a person types it (docker without sudo)
    check: Check | None = None
    expect_rc: int | None = 0  # None: the check judges the exit code
    until: float = 0.0  # retry for this long until the check passes (convergence)
    interval: float = 0.5
    timeout: float = 60.0
    requires: tuple[str, ...] = ()  # capabilities: "ipvs", "internet"
    only_without: str | None = None  # an alternative, shown only when this capability is missing
    note: Text | None = None  # says how this step differs from the tutorial
    hint: Hint | None = None  # the likely cause, when this step fails
    diagnose: Text | None = None  # the host `labctl diagnose` should look at (default: the step's)
    teardown: bool = False  # the tutorial's own removal steps: not run with --keep


@dataclass
class StepResult:
    title: str
    host: str
    command: str
    status: Status
    duration: float = 0.0
    note: str = ""  # the check's note, or the adaptation note
    reason: str = ""  # why it failed or was skipped
    output: str = ""  # the output that matters, on failure
    hint: str = ""
    attempts: int = 0

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


@dataclass
class CleanupResult:
    ok: bool
    duration: float
    kept: bool = False
    leftovers: list[str] = field(default_factory=list)
    removed_before: list[str] = field(default_factory=list)  # an earlier run's leftovers, removed first
    unreachable: list[str] = field(default_factory=list)  # hosts whose dockerd did not answer

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ScenarioResult:
    name: str
    purpose: str
    steps: list[StepResult] = field(default_factory=list)
    cleanup: CleanupResult | None = None
    duration: float = 0.0
    interrupted: bool = False

    @property
    def status(self) -> Status:
        if any(s.status == "fail" for s in self.steps) or self.interrupted:
            return "fail"
        if self.cleanup is not None and not self.cleanup.ok:
            return "fail"
        return "pass"

    def count(self, status: Status) -> int:
        return sum(1 for s in self.steps if s.status == status)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "purpose": self.purpose, "status": self.status,
            "duration": round(self.duration, 2), "interrupted": self.interrupted,
            "passed": self.count("pass"), "failed": self.count("fail"), "skipped": self.count("skip"),
            "steps": [s.to_json() for s in self.steps],
            "cleanup": self.cleanup.to_json() if self.cleanup else None,
        }


@dataclass
class Ctx:
    """What steps see: the lab's hosts, images, limits, and values earlier steps found."""

    spec: LabSpec
    hosts: dict[str, Host]
    images: ImageSet
    limits: Limits
    vars: dict[str, Any] = field(default_factory=dict)
    # How many times slower than docker-provider nodes the hosts are (VMs under qemu's software
    # emulation): convergence deadlines stretch by it.
    pace: float = 1.0

    @property
    def manager(self) -> str:
        return self.spec.manager.name

    @property
    def workers(self) -> list[str]:
        return [w.name for w in self.spec.workers]

    @property
    def all_hosts(self) -> list[str]:
        return self.spec.host_names

    def ip(self, host: str) -> str:
        return self.spec.host(host).ip

    def node_name(self, host: str) -> str:
        """The host's swarm node name (its hostname), as `docker service ps` shows it."""
        return self.limits.node_names.get(host, host)

    def host_of_node(self, node: str) -> str:
        for host, name in self.limits.node_names.items():
            if name == node:
                return host
        return node

    def sh(self, host: str, command: str, timeout: float = 30.0) -> Result:
        """A helper command a check needs (not shown: it is not part of the tutorial)."""
        return self.hosts[host].run(command, sudo=True, timeout=timeout)

    def resolve(self, value: Text) -> str:
        return value(self) if callable(value) else value

    def run_flags(self) -> str:
        """`--no-resolve-image` for service images that exist only on the hosts."""
        return " --no-resolve-image" if self.images.local_only else ""


REMOVE = {"container": "docker rm -f", "service": "docker service rm", "network": "docker network rm"}


@dataclass(frozen=True)
class Made:
    """What a scenario makes on a host, by kind and name: its clean-up removes exactly these."""

    host: str
    kind: Literal["container", "service", "network"]
    names: tuple[str, ...]

    def command(self) -> str:
        return f"{REMOVE[self.kind]} {' '.join(self.names)}"

    def owns(self, host: str, label: str) -> bool:
        """Is `label` ('kind name', as a snapshot lists it) one of these? A service owns its task
        containers (`NAME.1.abc`), wherever they run."""
        kind, _, name = label.partition(" ")
        if kind == "container" and self.kind == "service":
            return name.split(".")[0] in self.names
        return kind == self.kind and name in self.names and (host == self.host or kind == "network")


@dataclass
class Scenario:
    name: str
    purpose: str
    steps: Callable[[Ctx], list[Step]]
    made: Callable[[LabSpec], list[Made]]  # in removal order; each removal is harmless when nothing is there
    min_workers: int = 2

    def owns(self, spec: LabSpec, host: str, label: str) -> bool:
        return any(m.owns(host, label) for m in self.made(spec))


class Printer:
    """Where the engine reports progress (the CLI prints; --json stays silent)."""

    def scenario_start(self, scenario: Scenario, ctx: Ctx) -> None: ...
    def step(self, result: StepResult) -> None: ...
    def cleanup(self, result: CleanupResult) -> None: ...
    def scenario_end(self, result: ScenarioResult) -> None: ...
    def notice(self, text: str) -> None: ...


# --- running one step ---------------------------------------------------------------

def run_step(step: Step, ctx: Ctx) -> StepResult | None:
    """Run a step (retrying while `until` allows); None for an alternative that does not apply."""
    if step.only_without is not None and ctx.limits.missing(step.only_without) is None:
        return None
    host = ctx.resolve(step.host)
    command = ctx.resolve(step.command)
    note = ctx.resolve(step.note) if step.note is not None else ""
    result = StepResult(step.title, host, command, "pass", note=note)
    for capability in step.requires:
        reason = ctx.limits.missing(capability, host)
        if reason is not None:
            result.status, result.reason = "skip", reason
            return result
    started = time.monotonic()
    deadline = started + step.until * ctx.pace
    while True:
        result.attempts += 1
        failure: Fail | None = None
        out: Result | None = None
        try:
            out = ctx.hosts[host].run(command, sudo=True, timeout=step.timeout * ctx.pace)
            if step.expect_rc is not None and out.rc != step.expect_rc:
                raise Fail(f"exit code {out.rc}, expected {step.expect_rc}", output=_tail(out))
            seen = step.check(ctx, out) if step.check is not None else None
            if seen:
                result.note = f"{note}; {seen}" if note else seen
            break
        except Skip as skip:
            result.status, result.reason = "skip", skip.reason
            break
        except Fail as exc:
            failure = exc
        except LabError as exc:  # a timeout, a lost connection, a host reporting nonsense
            failure = Fail(exc.message, hint=exc.hint)
        except (ValueError, LookupError, TypeError, AttributeError) as exc:  # output of an unexpected shape
            failure = Fail(f"the output could not be read ({type(exc).__name__}: {exc})",
                           output=_tail(out) if out else "")
        elapsed = time.monotonic() - started
        if time.monotonic() + step.interval >= deadline or (
                failure.retry_for is not None and elapsed + step.interval >= failure.retry_for):
            result.status, result.reason, result.output = "fail", failure.message, failure.output
            down = daemons_down(ctx.hosts)
            if down:  # no other cause matters while a dockerd is away
                result.hint = "; ".join(f"dockerd on {h} does not answer ({why})" for h, why in down.items()) + \
                    ": the swarm cannot work without it; `labctl up` starts it again"
            else:
                result.hint = failure.hint or _hint(step, ctx, result)
            break
        time.sleep(step.interval)
    result.duration = time.monotonic() - started
    if result.status == "pass" and result.attempts > 1:
        result.note += f"{'; ' if result.note else ''}after {result.attempts} tries"
    if result.status == "fail" and step.until and result.attempts > 1:
        result.reason += f" (still so after {result.duration:.0f} s)"
    return result


def daemons_down(hosts: dict[str, Host]) -> dict[str, str]:
    """Hosts whose dockerd does not answer, with why."""
    values, errors = split_results(fan_out(list(hosts.values()), lambda h: facts.read(h, facts.DockerInfo())))
    down = {name: (e.message if isinstance(e, LabError) else str(e)).split(": ", 1)[-1] for name, e in errors.items()}
    down.update({name: f"dockerd does not answer: {state.error}"
                 for name, state in values.items() if not state.running})
    return down


def _hint(step: Step, ctx: Ctx, result: StepResult) -> str:
    cause = step.hint(ctx, result) if callable(step.hint) else step.hint
    target = ctx.resolve(step.diagnose) if step.diagnose is not None else result.host
    diagnose = f"`labctl diagnose {target}` looks for the cause"
    return f"{cause}; {diagnose}" if cause else diagnose


def _tail(out: Result, lines: int = 8) -> str:
    text = (out.out.strip() + "\n" + out.err.strip()).strip().splitlines()
    return "\n".join(text[-lines:])


# --- leaving the hosts as they were found --------------------------------------------

SNAPSHOT = (
    "docker ps -a --no-trunc --format 'container {{.ID}} {{.Names}}'; "
    "docker network ls --no-trunc --format 'network {{.ID}} {{.Name}}'; "
    "docker service ls --format 'service {{.ID}} {{.Name}}' 2>/dev/null; true"
)


def snapshot(hosts: dict[str, Host]) -> dict[str, dict[str, str]]:
    """Per host: 'kind id' -> 'kind name' of every container, network and service."""
    def take(host: Host) -> dict[str, str]:
        out = host.run(SNAPSHOT, sudo=True, timeout=30)
        items = {}
        for line in out.out.splitlines():
            parts = line.split()
            if len(parts) >= 3:
                items[f"{parts[0]} {parts[1]}"] = f"{parts[0]} {parts[2]}"
        return items
    taken, _ = split_results(fan_out(list(hosts.values()), take))
    return taken


def new_items(before: dict[str, dict[str, str]], after: dict[str, dict[str, str]]) -> list[str]:
    return sorted(f"{host}: {label}" for host, items in after.items()
                  for key, label in items.items() if key not in before.get(host, {}))


def gone_items(before: dict[str, dict[str, str]], after: dict[str, dict[str, str]]) -> list[str]:
    return sorted(f"{host}: {label}" for host, items in before.items()
                  for key, label in items.items() if host in after and key not in after[host])


def run_cleanup_commands(scenario: Scenario, spec: LabSpec, hosts: dict[str, Host]) -> None:
    by_host: dict[str, list[str]] = {}
    for made in scenario.made(spec):
        by_host.setdefault(made.host, []).append(made.command() + " >/dev/null 2>&1")
    # One SSH round trip per host, hosts in parallel; every command runs whatever the others did.
    fan_out([hosts[h] for h in by_host], lambda h: h.run("; ".join(by_host[h.name]) + "; true",
                                                         sudo=True, timeout=120))


def clean_up(scenario: Scenario, spec: LabSpec, hosts: dict[str, Host], before: dict[str, dict[str, str]],
             wait: float = 60.0) -> CleanupResult:
    """Remove what the scenario made, until every host holds no more than `before`.
    A host whose dockerd does not answer is cleaned by none of this: it is named instead."""
    started = time.monotonic()
    leftovers: list[str] = []
    down = daemons_down(hosts)
    if down:
        wait = 0.0  # what is left on the others will not go away by waiting for the swarm
    while True:
        run_cleanup_commands(scenario, spec, hosts)
        # Swarm removes task containers and workers' network copies asynchronously.
        for _ in range(10):
            leftovers = new_items(before, snapshot(hosts))
            if not leftovers or time.monotonic() - started > wait:
                break
            time.sleep(0.5)
        if not leftovers or time.monotonic() - started > wait:
            break
    return CleanupResult(ok=not leftovers and not down, duration=time.monotonic() - started, leftovers=leftovers,
                         unreachable=[f"{h}: dockerd does not answer" for h in down])


@contextmanager
def shielded(printer: Printer) -> Iterator[None]:
    """Ctrl-C during clean-up is noted, not obeyed: the clean-up finishes first."""
    def note(signum: int, frame: object) -> None:
        printer.notice("cleaning up first; it ends in a few seconds")
    try:
        previous = signal.signal(signal.SIGINT, note)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


# --- running a scenario --------------------------------------------------------------

def run_scenario(scenario: Scenario, ctx: Ctx, printer: Printer, keep: bool = False) -> ScenarioResult:
    if len(ctx.workers) < scenario.min_workers:
        raise LabError(f"scenario {scenario.name} needs a manager and {scenario.min_workers} workers; "
                       f"lab '{ctx.spec.name}' has {len(ctx.workers)}")
    result = ScenarioResult(scenario.name, scenario.purpose)
    ctx.vars.clear()
    started = time.monotonic()
    printer.scenario_start(scenario, ctx)
    # What an earlier run left (a --keep, an interrupted clean-up) would make the first step fail.
    with shielded(printer):
        found = snapshot(ctx.hosts)
        run_cleanup_commands(scenario, ctx.spec, ctx.hosts)
        before = snapshot(ctx.hosts)
    removed = gone_items(found, before)
    if removed:
        printer.notice(f"removed what an earlier run left: {', '.join(removed)}")
    failed = False
    current: Step | None = None
    try:
        for step in scenario.steps(ctx):
            current = step
            if failed:
                skipped = StepResult(step.title, _safe(ctx, step.host), _safe(ctx, step.command), "not run")
                if step.only_without is None or ctx.limits.missing(step.only_without) is not None:
                    result.steps.append(skipped)
                continue
            if keep and step.teardown:
                done: StepResult | None = StepResult(step.title, _safe(ctx, step.host), _safe(ctx, step.command),
                                                     "skip", reason="--keep: left in place to explore")
                if step.only_without is not None and ctx.limits.missing(step.only_without) is None:
                    done = None
            else:
                done = run_step(step, ctx)
            if done is None:
                continue
            result.steps.append(done)
            printer.step(done)
            failed = done.status == "fail"
        current = None
    except KeyboardInterrupt:
        result.interrupted = True
        if current is not None:
            stopped = StepResult(current.title, _safe(ctx, current.host), _safe(ctx, current.command), "fail",
                                 reason="interrupted (Ctrl-C)", hint="the clean-up below removes what was made")
            result.steps.append(stopped)
            printer.step(stopped)
    finally:
        if keep:
            result.cleanup = CleanupResult(ok=True, duration=0.0, kept=True, removed_before=removed)
        else:
            with shielded(printer):
                result.cleanup = clean_up(scenario, ctx.spec, ctx.hosts, before, wait=60.0 * ctx.pace)
            result.cleanup.removed_before = removed
        printer.cleanup(result.cleanup)
        result.duration = time.monotonic() - started
        printer.scenario_end(result)
    return result


def _safe(ctx: Ctx, value: Text) -> str:
    """A step's host or command for the report, when earlier steps' values may be missing."""
    try:
        return ctx.resolve(value)
    except Exception:
        return "?"
