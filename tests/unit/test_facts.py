"""Every fact's parser against recorded outputs: tests/facts/<fact>/<case>.json holds the
command, its output (stdout, stderr, exit code) and the expected value, or the error."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path
from typing import Any, ClassVar

import pytest

from labctl import facts
from labctl.errors import HostUnreachable, LabError, SessionLost
from labctl.facts.base import batch_command, parse_or_raise, split_batch
from labctl.ssh import Result

FIXTURES = Path(__file__).resolve().parents[1] / "facts"

KINDS: dict[str, type[facts.Fact[Any]]] = {
    "docker_info": facts.DockerInfo, "data_path_port": facts.DataPathPort, "dockerd_process": facts.DockerdProcess,
    "node_list": facts.NodeList, "overlay_networks": facts.OverlayNetworks, "services": facts.Services,
    "vxlan_support": facts.VxlanSupport, "ipvs_support": facts.IpvsSupport, "esp_support": facts.EspSupport,
    "kernel_release": facts.KernelRelease, "hostname": facts.Hostname, "interfaces": facts.Interfaces,
    "routes": facts.Routes, "route_to": facts.RouteTo, "internet": facts.Internet,
    "vxlan_devices": facts.VxlanDevices, "firewall_rules": facts.FirewallRules, "container_ping": facts.ContainerPing,
}
FACTS = [kind() for name, kind in KINDS.items() if name not in ("route_to", "container_ping")] + [
    facts.RouteTo("192.168.56.11"), facts.ContainerPing("c1", "10.0.1.5")]
CASES = sorted(FIXTURES.glob("*/*.json"))


def plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def test_every_fact_has_fixtures() -> None:
    assert {p.parent.name for p in CASES} == set(KINDS)


@pytest.mark.parametrize("path", CASES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_fact_parses_recorded_output(path: Path) -> None:
    case = json.loads(path.read_text())
    fact = KINDS[path.parent.name](*case.get("args", []))
    assert fact.command == case["command"]
    result = Result(case.get("rc", 0), case["output"], case.get("stderr", ""))
    if "error" in case:
        with pytest.raises(LabError, match=case["error"][:40].replace("(", r"\(").replace(")", r"\)")):
            parse_or_raise(fact, result, "worker-1")
    else:
        assert plain(parse_or_raise(fact, result, "worker-1")) == case["expected"]


def test_ping_summary() -> None:
    ok = "2 packets transmitted, 2 packets received, 0% packet loss"
    lost = "2 packets transmitted, 0 packets received, 100% packet loss"
    assert facts.parse_ping(ok).received == 2
    assert facts.parse_ping(lost).received == 0
    assert facts.parse_ping("ping: bad address 'container02-alpine'").received is None
    assert facts.parse_ping("ping: bad address 'container02-alpine'").unresolved
    assert facts.parse_ping("ping: container02-alpine: Name or service not known").unresolved
    assert not facts.parse_ping(lost).unresolved


def test_facts_validate_what_goes_into_their_commands() -> None:
    with pytest.raises(LabError):
        facts.RouteTo("10.0.0.1; reboot")
    with pytest.raises(LabError):
        facts.ContainerPing("c1;reboot", "10.0.0.1")
    bad_route = Result(0, '[{"dev": "eth1;touch /tmp/p", "prefsrc": "10.0.0.2"}]', "")
    with pytest.raises(LabError, match="as an interface name"):
        parse_or_raise(facts.RouteTo("10.0.0.1"), bad_route, "worker-1")
    bad_port = Result(0, '{"ServerVersion": "1", "Swarm": {"Cluster": {"DataPathPort": 99999}}}', "")
    with pytest.raises(LabError, match="as a port number"):
        parse_or_raise(facts.DataPathPort(), bad_port, "manager")


def test_a_round_trip_keeps_each_commands_output_error_and_exit_code_apart() -> None:
    commands = ["echo a; echo b >&2; printf 'x\\ny'; exit 3", "printf ''", "echo 'labctl-fact-x 0 rc'; echo ok"]
    script = batch_command(commands, "labctl-fact-0123", 10)
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30).stdout
    results = split_batch(out, "labctl-fact-0123", 3)
    assert results[0] == Result(3, "a\nx\ny", "b\n")
    assert results[1] == Result(0, "", "")
    assert results[2] == Result(0, "labctl-fact-x 0 rc\nok\n", "")


def test_a_round_trip_reads_each_fact_once_per_command(tmp_path: Path) -> None:
    info = json.loads((FIXTURES / "docker_info" / "manager.json").read_text())["output"]
    (tmp_path / "info.json").write_text(info)
    docker = tmp_path / "docker"
    docker.write_text(f"#!/bin/sh\necho run >> {tmp_path}/calls\ncat {tmp_path}/info.json\n")
    docker.chmod(0o755)

    class Host:
        name = "manager"
        commands: ClassVar[list[str]] = []

        def run(self, command: str, **_: Any) -> Result:
            self.commands.append(command)
            proc = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=30,
                                  env={"PATH": f"{tmp_path}:/usr/bin:/bin"})
            return Result(proc.returncode, proc.stdout, proc.stderr)

    host = Host()
    readings = facts.read_many(host, [facts.DockerInfo(), facts.DataPathPort(), facts.Hostname()])  # type: ignore[arg-type]
    assert len(host.commands) == 1 and (tmp_path / "calls").read_text() == "run\n"
    assert readings[facts.DockerInfo()].swarm.is_manager and readings[facts.DataPathPort()] == 4789
    assert readings.get(facts.NodeList(), []) == []


class _Flaky:
    """A host whose first `failures` runs raise `error`; later runs really run the batch here."""

    name = "worker-1"

    def __init__(self, error: Exception, failures: int):
        self.error, self.failures, self.runs = error, failures, 0

    def run(self, command: str, **_: Any) -> Result:
        self.runs += 1
        if self.runs <= self.failures:
            raise self.error
        proc = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=30)
        return Result(proc.returncode, proc.stdout, proc.stderr)


def test_a_session_lost_once_is_read_again_and_twice_is_the_error() -> None:
    once = _Flaky(SessionLost("worker-1: SSH connection lost (reset)"), failures=1)
    assert facts.read_many(once, [facts.Hostname()])[facts.Hostname()]  # type: ignore[arg-type]
    assert once.runs == 2
    twice = _Flaky(SessionLost("worker-1: SSH connection lost (reset)"), failures=2)
    with pytest.raises(SessionLost, match="connection lost"):
        facts.read_many(twice, [facts.Hostname()])  # type: ignore[arg-type]
    assert twice.runs == 2


def test_a_host_that_does_not_answer_ssh_is_not_asked_twice() -> None:
    down = _Flaky(HostUnreachable("worker-1 does not answer SSH at 10.0.0.1:22"), failures=1)
    with pytest.raises(HostUnreachable, match="does not answer SSH"):
        facts.read_many(down, [facts.Hostname()])  # type: ignore[arg-type]
    assert down.runs == 1  # it already had its connect deadline; asking again only doubles the wait


def test_garbage_instead_of_a_round_trip_is_an_error() -> None:
    class Host:
        name = "worker-2"

        def run(self, command: str, **_: Any) -> Result:
            return Result(0, "hello", "")

    with pytest.raises(LabError, match="worker-2: printed malformed facts"):
        facts.read_many(Host(), [facts.Hostname()])  # type: ignore[arg-type]
