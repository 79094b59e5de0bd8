"""The scenario engine against fake hosts: checks that fail, skips with reasons,
stop at the first failure, clean-up after a failure and after Ctrl-C."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from labctl.runner import Result
from labctl.scenarios import catalog, checks
from labctl.scenarios.engine import Ctx, Fail, Made, Printer, Scenario, Step, run_scenario, run_step
from labctl.scenarios.images import ImageSet
from labctl.scenarios.limits import Limits
from labctl.spec import build_spec


class FakeHost:
    """A host whose docker holds a set of items; commands are answered by handlers."""

    def __init__(self, name: str):
        self.name = name
        self.items: dict[str, str] = {}  # 'kind id' -> 'kind name'
        self.handlers: list[tuple[str, Callable[[str], Result]]] = []
        self.commands: list[str] = []
        self.daemon_down = False

    def on(self, needle: str, handler: Callable[[str], Result]) -> None:
        self.handlers.insert(0, (needle, handler))

    def run(self, command: str, *, sudo: bool = False, timeout: float = 60, **_: object) -> Result:
        self.commands.append(command)
        if command.startswith("docker info --format '{{json .}}'"):  # is dockerd there?
            if self.daemon_down:
                return Result(1, "", "Cannot connect to the Docker daemon at unix:///var/run/docker.sock.")
            return Result(0, '{"ServerVersion": "27.0.1", "Swarm": {"LocalNodeState": "active"}}\n', "")
        if command.startswith("docker ps -a --no-trunc"):  # the engine's snapshot
            return Result(0, "".join(f"{k.split()[0]} {k.split()[1]} {v.split()[1]}\n"
                                     for k, v in self.items.items()), "")
        for needle, handler in self.handlers:
            if needle in command:
                return handler(command)
        return Result(0, "", "")


def ok(out: str = "") -> Callable[[str], Result]:
    return lambda _: Result(0, out, "")


@pytest.fixture
def ctx() -> Ctx:
    spec = build_spec({})
    hosts = {h: FakeHost(h) for h in spec.host_names}
    lim = Limits({h: {"ipvs": "no IPVS here", "internet": None, "esp": None} for h in hosts},
                 {h: h for h in hosts})
    return Ctx(spec, hosts, ImageSet("alpine", "nginx", False, "test"), lim)  # type: ignore[arg-type]


def test_a_failing_check_fails_with_a_hint_naming_the_host(ctx: Ctx) -> None:
    ctx.hosts["manager"].on("ping", ok("2 packets transmitted, 0 packets received"))  # type: ignore[attr-defined]
    step = Step("pings", "manager", "docker exec c1 ping -c 2 c2", expect_rc=None, check=checks.ping_ok,
                hint="VXLAN blocked", diagnose="worker-1")
    result = run_step(step, ctx)
    assert result is not None and result.status == "fail"
    assert result.reason == "no reply"
    assert "VXLAN blocked" in result.hint and "labctl diagnose worker-1" in result.hint
    assert "0 packets received" in result.output


def test_exit_code_is_checked(ctx: Ctx) -> None:
    ctx.hosts["manager"].on("network create", lambda _: Result(1, "", "Error: already exists"))  # type: ignore[attr-defined]
    result = run_step(Step("made", "manager", "docker network create x"), ctx)
    assert result is not None and result.status == "fail" and "exit code 1" in result.reason
    assert "already exists" in result.output


def test_requires_skips_with_the_reason_and_alternatives_show_only_then(ctx: Ctx) -> None:
    mesh = run_step(Step("mesh", "manager", "curl x", check=checks.nginx_page, requires=("ipvs",)), ctx)
    assert mesh is not None and mesh.status == "skip" and mesh.reason == "no IPVS here"
    ctx.hosts["manager"].on("curl", ok("Welcome to nginx!"))  # type: ignore[attr-defined]
    alt = run_step(Step("alt", "manager", "curl y", check=checks.nginx_page, only_without="ipvs"), ctx)
    assert alt is not None and alt.status == "pass"
    ctx.limits.missing_by_host = {h: {"ipvs": None} for h in ctx.hosts}
    assert run_step(Step("alt", "manager", "curl y", only_without="ipvs"), ctx) is None


def test_until_retries_until_the_check_passes(ctx: Ctx) -> None:
    answers = iter(["ID NAME MODE REPLICAS IMAGE\nx svc replicated 1/2 img\n"] * 2
                   + ["ID NAME MODE REPLICAS IMAGE\nx svc replicated 2/2 img\n"])
    ctx.hosts["manager"].on("service ls", lambda _: Result(0, next(answers), ""))  # type: ignore[attr-defined]
    step = Step("converges", "manager", "docker service ls", check=checks.replicas("svc", 2), until=5, interval=0.01)
    result = run_step(step, ctx)
    assert result is not None and result.status == "pass" and result.attempts == 3


def test_until_gives_up(ctx: Ctx) -> None:
    ctx.hosts["manager"].on("service ls", ok("ID NAME MODE REPLICAS IMAGE\nx svc replicated 1/2 img\n"))  # type: ignore[attr-defined]
    step = Step("converges", "manager", "docker service ls", check=checks.replicas("svc", 2), until=0.1,
                interval=0.02)
    result = run_step(step, ctx)
    assert result is not None and result.status == "fail" and "1/2" in result.reason


def _scenario(steps: list[Step], cleanup: list[Made] | None = None) -> Scenario:
    return Scenario("t", "test", lambda c: steps, lambda s: cleanup or [Made("manager", "container", ("made",))],
                    min_workers=0)


def _make(ctx: Ctx, host: str = "manager") -> Callable[[str], Result]:
    def run(_: str) -> Result:
        ctx.hosts[host].items["container abc"] = "container made"  # type: ignore[attr-defined]
        return Result(0, "", "")
    return run


def _remove(ctx: Ctx, host: str = "manager") -> Callable[[str], Result]:
    def run(_: str) -> Result:
        ctx.hosts[host].items.pop("container abc", None)  # type: ignore[attr-defined]
        return Result(0, "", "")
    return run


def test_scenario_stops_at_the_first_failure_and_cleans_up(ctx: Ctx) -> None:
    host = ctx.hosts["manager"]
    host.on("docker run", _make(ctx))  # type: ignore[attr-defined]
    host.on("docker rm -f made", _remove(ctx))  # type: ignore[attr-defined]
    host.on("false", lambda _: Result(1, "", "boom"))  # type: ignore[attr-defined]
    steps = [Step("made", "manager", "docker run --name made x"), Step("fails", "manager", "false"),
             Step("later", "manager", "echo later")]
    result = run_scenario(_scenario(steps), ctx, Printer())
    assert [s.status for s in result.steps] == ["pass", "fail", "not run"]
    assert result.status == "fail"
    assert result.cleanup is not None and result.cleanup.ok
    assert "echo later" not in host.commands  # type: ignore[attr-defined]
    assert host.items == {}  # type: ignore[attr-defined]


def test_a_dockerd_gone_mid_run_is_named_and_the_others_are_cleaned(ctx: Ctx) -> None:
    manager, worker = ctx.hosts["manager"], ctx.hosts["worker-1"]
    worker.on("docker run", _make(ctx, "worker-1"))  # type: ignore[attr-defined]
    worker.on("docker rm -f made", _remove(ctx, "worker-1"))  # type: ignore[attr-defined]

    def daemon_dies(_: str) -> Result:
        manager.daemon_down = True  # type: ignore[attr-defined]
        return Result(125, "", "docker: Error response from daemon: Could not attach to network test-net")
    worker.on("false", daemon_dies)  # type: ignore[attr-defined]
    steps = [Step("made", "worker-1", "docker run --name made x"), Step("attach", "worker-1", "false",
                                                                          hint="VXLAN blocked")]
    result = run_scenario(_scenario(steps, cleanup=[Made("worker-1", "container", ("made",))]), ctx, Printer())
    failed = result.steps[1]
    assert failed.status == "fail"
    assert "dockerd on manager does not answer" in failed.hint and "VXLAN" not in failed.hint
    assert result.cleanup is not None and not result.cleanup.ok
    assert result.cleanup.unreachable == ["manager: dockerd does not answer"]
    assert worker.items == {}  # type: ignore[attr-defined]  # the reachable host is cleaned


def test_ctrl_c_still_cleans_up(ctx: Ctx) -> None:
    host = ctx.hosts["manager"]
    host.on("docker run", _make(ctx))  # type: ignore[attr-defined]
    host.on("docker rm -f made", _remove(ctx))  # type: ignore[attr-defined]

    def interrupt(_: str) -> Result:
        raise KeyboardInterrupt
    host.on("sleep", interrupt)  # type: ignore[attr-defined]
    steps = [Step("made", "manager", "docker run --name made x"), Step("waits", "manager", "sleep 100")]
    result = run_scenario(_scenario(steps), ctx, Printer())
    assert result.interrupted and result.status == "fail"
    assert result.steps[-1].reason == "interrupted (Ctrl-C)" and result.steps[-1].command == "sleep 100"
    assert host.items == {}  # type: ignore[attr-defined]


def test_leftovers_fail_the_scenario(ctx: Ctx) -> None:
    host = ctx.hosts["manager"]
    host.on("docker run", _make(ctx))  # type: ignore[attr-defined]
    steps = [Step("made", "manager", "docker run --name made x")]
    from labctl.scenarios import engine
    original = engine.clean_up
    result = None
    try:
        engine.clean_up = lambda s, sp, h, b, wait=0.2: original(s, sp, h, b, wait=0.2)  # type: ignore[assignment]
        result = run_scenario(_scenario(steps), ctx, Printer())
    finally:
        engine.clean_up = original  # type: ignore[assignment]
    assert result.cleanup is not None and not result.cleanup.ok
    assert result.cleanup.leftovers == ["manager: container made"]
    assert result.status == "fail"


def test_keep_leaves_things(ctx: Ctx) -> None:
    host = ctx.hosts["manager"]
    host.on("docker run", _make(ctx))  # type: ignore[attr-defined]
    result = run_scenario(_scenario([Step("made", "manager", "docker run --name made x")]), ctx, Printer(),
                          keep=True)
    assert result.status == "pass" and result.cleanup is not None and result.cleanup.kept
    assert host.items  # type: ignore[attr-defined]


def test_the_catalog_has_the_fixed_names_and_real_checks(ctx: Ctx) -> None:
    assert list(catalog.SCENARIOS) == ["default-overlay", "user-defined-overlay", "standalone-overlay",
                                       "container-to-service", "default-bridge"]
    for scenario in catalog.SCENARIOS.values():
        steps = scenario.steps(ctx)
        assert steps and scenario.made(ctx.spec)
        for step in steps:
            # Every step can fail: an exit code is checked, or a check judges the output.
            assert step.expect_rc is not None or step.check is not None, (scenario.name, step.title)
        commands = " ".join(s.command for s in steps if isinstance(s.command, str))
        assert "orverlay" not in commands and "publiush" not in commands  # the tutorial's typos


def test_the_name_failure_on_the_default_bridge_is_asserted(ctx: Ctx) -> None:
    step = next(s for s in catalog.SCENARIOS["default-bridge"].steps(ctx) if "by name fails" in s.title)
    host = ctx.hosts["manager"]
    host.on("ping -c 2 container02-alpine", lambda _: Result(1, "", "ping: bad address 'container02-alpine'"))  # type: ignore[attr-defined]
    assert run_step(step, ctx).status == "pass"  # type: ignore[union-attr]
    host.on("ping -c 2 container02-alpine", ok("2 packets transmitted, 2 packets received"))  # type: ignore[attr-defined]
    assert run_step(step, ctx).status == "fail"  # type: ignore[union-attr]
    host.on("ping -c 2 container02-alpine", lambda _: Result(1, "2 packets transmitted, 0 packets received", ""))  # type: ignore[attr-defined]
    failed = run_step(step, ctx)
    assert failed is not None and failed.status == "fail" and "not because" in failed.reason


def test_fail_carries_output() -> None:
    exc = Fail("x", output="y", hint="z")
    assert (exc.message, exc.output, exc.hint) == ("x", "y", "z")


def test_a_skip_is_listed_and_fails_only_a_strict_run() -> None:
    from labctl.scenarios.engine import ScenarioResult, StepResult
    from labctl.scenarios.report import run_ok, summary_line

    def step(status: str) -> StepResult:
        return StepResult(title="t", host="manager", command="c", status=status)  # type: ignore[arg-type]

    clean = ScenarioResult("a", "p", [step("pass"), step("skip")])
    assert run_ok([clean]) and not run_ok([clean], strict=True)
    assert summary_line([clean]).startswith("1 of 1 scenario(s) passed; checks: 1 passed, 0 failed, 1 skipped")
    assert "--strict makes a skip fail the run" in summary_line([clean])
    assert run_ok([ScenarioResult("b", "p", [step("pass")])], strict=True)
    failed = ScenarioResult("c", "p", [step("fail"), step("skip")])
    assert not run_ok([failed]) and summary_line([clean, failed]).startswith("1 of 2 scenario(s) passed")


def test_a_scenario_owns_exactly_what_it_makes(ctx: Ctx) -> None:
    scenario = catalog.SCENARIOS["container-to-service"]
    spec = ctx.spec
    owned = [("worker-1", "container client-alpine"), ("manager", "service web-nginx"),
             ("worker-2", "container web-nginx.1.x0dzbmbs8n9fgp3rkw2ymclza"), ("worker-1", "network web-net")]
    for host, label in owned:
        assert scenario.owns(spec, host, label), (host, label)
    # Words of its clean-up commands are no names of its own; nor is a name on another host.
    foreign = [("manager", "container docker"), ("manager", "container rm"), ("manager", "container -f"),
               ("manager", "service web-net"), ("manager", "container client-alpine"),
               ("manager", "container web-nginx-2"), ("manager", "network web-nginx")]
    for host, label in foreign:
        assert not scenario.owns(spec, host, label), (host, label)


# `ip -s xfrm state` on worker-1 after an encrypted ping from the manager (iproute2's format).
XFRM = """\
src 192.168.56.11 dst 192.168.56.10
\tproto esp spi 0x1d2c3b4a reqid 0 mode transport
\treplay-window 0 seq 0x00000000 flag  (0x00000000)
\taead rfc4106(gcm(aes)) 0x0102030405060708090a0b0c0d0e0f1011121314 128
\tlifetime config:
\t  limit: soft (INF)(bytes), hard (INF)(bytes)
\t  limit: soft (INF)(packets), hard (INF)(packets)
\tlifetime current:
\t  {out_bytes}(bytes), {out_packets}(packets)
src 192.168.56.10 dst 192.168.56.11
\tproto esp spi 0x5a6b7c8d reqid 0 mode transport
\taead rfc4106(gcm(aes)) 0x1112131415161718191a1b1c1d1e1f2021222324 128
\tlifetime config:
\t  limit: soft (INF)(packets), hard (INF)(packets)
\tlifetime current:
\t  {in_bytes}(bytes), {in_packets}(packets)
"""


def test_the_encrypted_ping_is_seen_on_the_receivers_inbound_state(ctx: Ctx) -> None:
    check = catalog._esp_counted("192.168.56.10", "192.168.56.11")
    out = XFRM.format(out_bytes=0, out_packets=0, in_bytes=336, in_packets=2)
    assert check(ctx, Result(0, out, "")) == "ESP 192.168.56.10 -> 192.168.56.11 carried 2 packets"


def test_an_idle_inbound_state_means_the_ping_was_not_encrypted(ctx: Ctx) -> None:
    check = catalog._esp_counted("192.168.56.10", "192.168.56.11")
    out = XFRM.format(out_bytes=336, out_packets=2, in_bytes=0, in_packets=0)  # only the other way
    with pytest.raises(Fail, match=re.escape("no ESP state from 192.168.56.10 to 192.168.56.11 has carried a packet")):
        check(ctx, Result(0, out, ""))


def test_checks_wait_longer_on_slow_hosts(ctx: Ctx) -> None:
    ctx.hosts["manager"].on("service ls", ok("ID NAME MODE REPLICAS IMAGE\nx svc replicated 1/2 img\n"))  # type: ignore[attr-defined]
    step = Step("converges", "manager", "docker service ls", check=checks.replicas("svc", 2), until=0.2,
                interval=0.02)
    ctx.pace = 4.0
    result = run_step(step, ctx)
    # 0.8 s in all; the last try comes up to one interval before the deadline
    assert result is not None and result.status == "fail" and result.duration >= 0.7
