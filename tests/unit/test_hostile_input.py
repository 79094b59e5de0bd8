"""Hostile and malformed input - from the user, from the lab's files, from the hosts - is refused
with one line and a documented exit code; nothing built from it runs anywhere."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import paramiko
import pytest

from diagnostics import collect, runner
from labctl import faults, local_docker, swarm, validate
from labctl.errors import HostUnreachable, LabError, MissingToolError, SessionLost, UsageError
from labctl.runner import Result, run_local
from labctl.spec import build_spec
from labctl.ssh import Endpoint, Host
from tests.unit.test_cli_errors import labctl
from tests.unit.test_facts import FACTS

HOSTILE = ["x;touch /tmp/p", "$(touch /tmp/p)", "`touch /tmp/p`", "a b", "x|y", "x&&y", "-rf", "../x", "x\ny",
           "é", "", "a" * 300, "x'y", 'x"y', "x>y"]


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines and lines[0].startswith("error: "), stderr
    assert len(lines) == 1 or (len(lines) == 2 and lines[1].startswith("hint: ")), stderr
    return lines[0]


# --- the validators -----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["alpine", "nginx:1.27", "labctl/alpine-lite:latest", "localhost:5000/a/b:c",
                                  "registry.example.com/team/app@sha256:" + "a" * 64, "a_b.c-d:Tag_1"])
def test_image_references_that_are_accepted(name: str) -> None:
    assert validate.image(name) == name


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_are_refused_by_every_validator(value: str) -> None:
    for check in (validate.image, validate.container, validate.network, validate.interface, validate.hostname,
                  validate.node_id, validate.ipv4, validate.port, validate.mac):
        with pytest.raises(UsageError):
            check(value)


def test_a_value_a_host_reported_is_a_lab_error_naming_the_host() -> None:
    with pytest.raises(LabError) as exc:
        validate.interface("eth1;touch /tmp/p", reported_by="worker-1")
    assert not isinstance(exc.value, UsageError) and exc.value.exit_code == 1
    assert exc.value.message.startswith("worker-1 reported 'eth1;touch /tmp/p' as an interface name")


@pytest.mark.parametrize("value", ["0", "65536", "²", "٣", "1.5", True, -1, "+1"])
def test_ports_out_of_range_or_not_ascii_digits(value: object) -> None:
    with pytest.raises(UsageError):
        validate.port(value)


# --- user input: refused before anything runs (a fake lab whose hosts do not answer) -----------

@pytest.mark.parametrize("args,says", [
    (["scenario", "run", "standalone-overlay", "--alpine-image", "x;touch /tmp/p"], "not an image reference"),
    (["scenario", "run", "standalone-overlay", "--images", "registry", "--alpine-image", "$(touch /tmp/p)"],
     "not an image reference"),
    (["scenario", "run", "default-overlay", "--nginx-image", "nginx;reboot"], "not an image reference"),
    (["diagnose", "ping", "a;touch /tmp/p", "b"], "not a container name"),
    (["diagnose", "ping", "a", "$(touch /tmp/p)"], "not a container name"),
    (["fault", "add", "worker-1", "wrong-advertise", "--addr", "1.2.3.4;touch /tmp/p"], "not an IPv4 address"),
    (["fault", "add", "worker-1", "block", "--port", "²/tcp"], "not a port number"),
    (["images", "load", "alpine;touch /tmp/p"], "not an image reference"),
    (["images", "build-node", "--image", "x;touch /tmp/p"], "not an image reference"),
    (["exec", "--timeout", "nan", "manager", "--", "true"], "--timeout nan"),
    (["--wait", "-1", "status"], "--wait -1"),
])
def test_hostile_user_input_is_a_usage_error(home: Path, fake_lab: Path, args: list[str], says: str) -> None:
    proc = labctl(home, *args)
    assert proc.returncode == 2, proc.stderr
    assert says in one_error_line(proc.stderr)  # refused as such, before any host was contacted


@pytest.mark.parametrize("var", ["LABCTL_ALPINE_IMAGE", "LABCTL_NGINX_IMAGE"])
def test_hostile_image_in_the_environment_is_a_usage_error(home: Path, fake_lab: Path, var: str) -> None:
    proc = labctl(home, "scenario", "run", "standalone-overlay", env={var: "x;touch /tmp/p"})
    assert proc.returncode == 2
    assert var in one_error_line(proc.stderr)


@pytest.mark.parametrize("option,args", [
    ("--report", ["scenario", "run", "standalone-overlay"]),
    ("--save-evidence", ["diagnose"]),
    ("--write", ["capture", "manager"]),
])
def test_an_output_file_that_is_a_folder_is_refused_first(home: Path, fake_lab: Path, tmp_path: Path,
                                                          option: str, args: list[str]) -> None:
    proc = labctl(home, *args, option, str(tmp_path))
    assert proc.returncode == 2
    assert "is a folder" in one_error_line(proc.stderr)


def test_click_usage_errors_are_one_line(home: Path) -> None:
    proc = labctl(home, "status", "--no-such-option")
    assert proc.returncode == 2
    assert "No such option" in one_error_line(proc.stderr)


# --- lab state of the wrong shape ----------------------------------------------------------

@pytest.mark.parametrize("content", [
    "{}", "[1]", '[{"id": "x"}]', '[{"id": "a", "host": "nowhere", "kind": "mtu"}]',
    '[{"id": "a", "host": "manager", "kind": "mtu", "params": {}, "undo": {"dev": "eth0;touch /tmp/p", "mtu": 1}}]',
    '[{"id": "a", "host": "manager", "kind": "block", "params": [], "undo": {}}]',
    '[{"id": "a", "host": "manager", "kind": "block", "params": {}, "undo": {"chain": "INPUT; x", "rule": []}}]',
])
def test_fault_records_of_the_wrong_shape_are_named_damaged(home: Path, fake_lab: Path, content: str) -> None:
    (fake_lab / "faults.json").write_text(content)
    for args in (["fault", "list"], ["fault", "clear"]):
        proc = labctl(home, *args)
        assert proc.returncode == 1, proc.stderr
        assert "are damaged" in one_error_line(proc.stderr)


def test_status_all_shows_a_damaged_lab_and_lists_the_others(home: Path, fake_lab: Path) -> None:
    broken = fake_lab.parent / "broken"
    broken.mkdir()
    (broken / "lab.json").write_text('{"name": "broken", "hosts": 7}')
    proc = labctl(home, "status", "--all", "--format", "plain")
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line for line in proc.stdout.splitlines()[1:] if line.strip()}
    assert "damaged" in rows["broken"]
    assert "192.168.56.0/24" in rows["lab"]
    data = json.loads(labctl(home, "status", "--all", "--json").stdout)
    assert [d["provider"] for d in data] == ["damaged", "docker"]


def test_a_damaged_lab_does_not_stop_another_from_being_planned(home: Path, fake_lab: Path) -> None:
    (fake_lab / "lab.json").write_text("not json")
    from labctl.lab import Lab, Selection

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LABCTL_HOME", str(home))
        lab = Lab.for_up(Selection("other", None), {"subnet": None})
    assert lab.spec.name == "other"


def test_an_unexpected_exception_is_one_line_and_exit_1(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from labctl import cli
    from labctl.commands import status as status_verb

    def boom() -> list[str]:
        raise RuntimeError("something\nunexpected")

    monkeypatch.setattr(status_verb, "all_labs", boom)
    monkeypatch.setenv("LABCTL_HOME", str(tmp_path))
    monkeypatch.delenv("LABCTL_DEBUG", raising=False)
    monkeypatch.setattr(sys, "argv", ["labctl", "status", "--all"])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert one_error_line(err) == "error: internal error: RuntimeError: something unexpected"
    assert "LABCTL_DEBUG=1" in err


# --- values the hosts report --------------------------------------------------------------

class FakeHost:
    """Answers commands from a table of (needle, stdout); records what it was asked to run."""

    def __init__(self, name: str, answers: list[tuple[str, str]]):
        self.name = name
        self.answers = answers
        self.commands: list[str] = []

    def run(self, command: str, **_: Any) -> Result:
        self.commands.append(command)
        for needle, out in self.answers:
            if needle in command:
                return Result(0, out, "")
        return Result(0, "", "")


def fake_lab_object(tmp_path: Path, host: FakeHost, provider: str = "docker") -> Any:
    spec = build_spec({"lab": {"provider": provider}})
    # The docker provider's nodes share a bridge on this machine; other providers' do not (here).
    backend = SimpleNamespace(local_bridge=lambda: "br-0123456789ab" if provider == "docker" else None)
    return SimpleNamespace(spec=spec, state=SimpleNamespace(dir=tmp_path), host=lambda name: host,
                           hosts=lambda: {h: host for h in spec.host_names}, backend=lambda: backend)


def test_an_interface_name_a_host_reports_never_reaches_a_command(tmp_path: Path) -> None:
    host = FakeHost("worker-1", [("ip -j route get", '[{"dev": "eth1;touch /tmp/p"}]'), ("/mtu", "1500")])
    with pytest.raises(LabError) as exc:
        faults.add(fake_lab_object(tmp_path, host), "worker-1", "mtu", mtu=1400)
    assert "worker-1 reported 'eth1;touch /tmp/p' as an interface name" in exc.value.message
    assert not any("touch" in c for c in host.commands), host.commands
    assert not (tmp_path / "faults.json").exists()


def test_a_route_that_is_not_json_is_a_lab_error(tmp_path: Path) -> None:
    host = FakeHost("worker-1", [("ip -j route get", "RTNETLINK answers: oops")])
    with pytest.raises(LabError) as exc:
        faults.add(fake_lab_object(tmp_path, host), "worker-1", "mtu", mtu=1400)
    assert "printed no route" in exc.value.message


def test_no_fact_substitutes_host_output_into_a_command() -> None:
    for fact in FACTS:
        assert "$(" not in fact.command and "`" not in fact.command, fact


def test_malformed_swarm_state_from_a_host_is_a_lab_error() -> None:
    host = FakeHost("manager", [("docker info", "{not json")])
    with pytest.raises(LabError) as exc:
        swarm.swarm_info(host)  # type: ignore[arg-type]
    assert "printed no swarm state" in exc.value.message


def test_node_ids_a_manager_reports_are_checked() -> None:
    host = FakeHost("manager", [("docker node inspect", json.dumps([{"ID": "abc;touch /tmp/p"}]))])
    with pytest.raises(LabError) as exc:
        swarm.node_list(host)  # type: ignore[arg-type]
    assert "as a swarm node ID" in exc.value.message


def test_a_malformed_wire_result_is_the_jobs_error_not_an_exception() -> None:
    class WireHost(FakeHost):
        def run(self, command: str, **kw: Any) -> Result:
            kw["on_line"]("READY")
            kw["on_line"]("RESULT {broken")
            return Result(0, "", "")

    job = runner.WireJob(WireHost("worker-2", []), {"mode": "probe"}, timeout=5)  # type: ignore[arg-type]
    job._work()
    assert job.result is None
    assert "malformed result" in job.error


def test_an_unexpected_error_inside_a_probe_thread_becomes_the_jobs_error() -> None:
    class Crashing(FakeHost):
        def run(self, command: str, **kw: Any) -> Result:
            raise RuntimeError("scapy exploded")

    job = runner.WireJob(Crashing("worker-2", []), {"mode": "probe"}, timeout=5).start()  # type: ignore[arg-type]
    job.join()
    assert job.result is None and "RuntimeError: scapy exploded" in job.error


def test_a_go_file_lost_once_is_made_again_and_one_never_made_is_the_jobs_reason() -> None:
    class Signals(FakeHost):
        """Its first `failures` commands raise `error`."""

        def __init__(self, name: str, failures: int, error: Exception):
            super().__init__(name, [])
            self.failures, self.error = failures, error

        def run(self, command: str, **kw: Any) -> Result:
            if self.failures:
                self.failures -= 1
                raise self.error
            return super().run(command, **kw)

    once = Signals("worker-1", 1, SessionLost("worker-1: SSH connection lost (reset)"))
    down = Signals("worker-2", 9, HostUnreachable("worker-2 does not answer SSH at 10.0.0.12:22"))
    jobs = [runner.WireJob(host, {"mode": "probe", "go_file": f"/tmp/go-{host.name}-{i}"}, timeout=5)  # type: ignore[arg-type]
            for host in (once, down) for i in (1, 2)]
    runner.touch_all(jobs, "go_file")
    assert once.commands == ["touch /tmp/go-worker-1-1 /tmp/go-worker-1-2"]  # one host, one touch, made again
    assert [j.signal_error for j in jobs] == ["", ""] + [
        "its go file could not be made (worker-2 does not answer SSH at 10.0.0.12:22)"] * 2
    assert down.failures == 8  # a host that does not answer is not asked twice


def test_facts_of_the_wrong_shape_make_the_host_a_finding() -> None:
    spec = build_spec({})
    hosts = {h: FakeHost(h, [("docker info", '{"docker": "not an object", "interfaces": [1]}')])
             for h in spec.host_names}
    facts = collect.gather_facts(spec, hosts)  # type: ignore[arg-type]
    assert all(not f.reachable and "malformed" in f.error for f in facts.values())


# --- this machine: tools that are missing or hang ------------------------------------------

def test_a_local_docker_timeout_is_a_lab_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "docker"
    fake.write_text("#!/bin/sh\nexec sleep 30\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    with pytest.raises(LabError) as exc:
        local_docker.docker("network", "inspect", "x", timeout=3)
    assert "did not finish within 3 s" in exc.value.message

    def sooner(argv: list[str], *, timeout: float, **kw: Any) -> Any:
        return run_local(argv, timeout=min(timeout, 0.5), **kw)

    monkeypatch.setattr(local_docker, "run_local", sooner)
    assert local_docker.daemon_version() is None


def test_missing_iptables_on_this_machine_is_exit_3(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(MissingToolError) as exc:
        faults._local(["iptables", "-L"])
    assert exc.value.exit_code == 3 and "iptables is not installed" in exc.value.message


def test_missing_bridge_netfilter_file_is_a_lab_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def no_such_file(path: str, *a: Any, **k: Any) -> Any:
        raise FileNotFoundError(2, "No such file or directory", path)

    monkeypatch.setattr(faults, "open", no_such_file, raising=False)
    host = FakeHost("worker-1", [])
    with pytest.raises(LabError) as exc:
        faults.add(fake_lab_object(tmp_path, host), "worker-1", "path-drop", port="4789/udp", peer="manager")
    assert "bridge-nf-call-iptables" in exc.value.message and "modprobe br_netfilter" in (exc.value.hint or "")


def test_ssh_session_errors_are_host_unreachable() -> None:
    class Transport:
        def open_session(self, timeout: float | None = None) -> Any:
            raise paramiko.ChannelException(2, "Connect failed")

    host = Host("worker-1", Endpoint("127.0.0.1", 1, "vagrant", ""))
    host._transport = lambda: Transport()  # type: ignore[method-assign]
    with pytest.raises(HostUnreachable) as exc:
        host.run("true", timeout=1)  # a refused session is asked for again until the command's deadline
    assert "worker-1: cannot open an SSH session" in exc.value.message

    class Broken:
        def open_session(self, timeout: float | None = None) -> Any:
            raise paramiko.SSHException("SSH session not active")

        def is_active(self) -> bool:
            return False

    host._transport = lambda: Broken()  # type: ignore[method-assign]
    with pytest.raises(HostUnreachable) as exc:
        host.run("true")
    assert "SSH session not active" in exc.value.message


@pytest.mark.parametrize("port", [0, 99999, "22;x", "-1"])
def test_an_ssh_endpoint_with_a_bad_port_is_a_damaged_state_file(home: Path, fake_lab: Path,
                                                                 port: object) -> None:
    state = json.loads((fake_lab / "state.json").read_text())
    state["endpoints"]["manager"]["port"] = port
    (fake_lab / "state.json").write_text(json.dumps(state))
    proc = labctl(home, "exec", "manager", "--", "true")
    assert proc.returncode == 1
    assert "is damaged" in one_error_line(proc.stderr)


def test_a_container_name_a_host_reports_is_checked_and_an_unreachable_host_is_passed_over() -> None:
    from diagnostics import ping

    nets = json.dumps({"test-net": {"NetworkID": "abc123", "IPAddress": "10.0.1.2", "MacAddress": "02:42:0a:00:01:02"}})

    class Down(FakeHost):
        def run(self, command: str, **_: Any) -> Result:
            raise HostUnreachable(f"{self.name} does not answer SSH")

    spec = build_spec({})
    hosts = {"manager": FakeHost("manager", [("docker inspect", f"true /c1 {nets}")]), "worker-1": Down("worker-1", []),
             "worker-2": FakeHost("worker-2", [])}
    hosts["worker-2"].run = lambda command, **_: Result(1, "", "No such container")  # type: ignore[method-assign]
    found = ping._find(spec, hosts, "c1")  # type: ignore[arg-type]
    assert (found.container, found.host, found.networks["abc123"]["ip"]) == ("c1", "manager", "10.0.1.2")

    hosts["manager"] = FakeHost("manager", [("docker inspect", f"true /c1;touch\\ /tmp/p {nets}")])
    with pytest.raises(LabError) as exc:
        ping._find(spec, hosts, "c1")  # type: ignore[arg-type]
    assert "printed" in exc.value.message


def test_a_host_without_ssh_is_unreachable_and_one_printing_garbage_is_unreadable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from diagnostics.evidence import Evidence
    from diagnostics.rules import host_findings

    spec = build_spec({})

    def read_host(host: Any, ip: str, role: str, peers: list[str]) -> collect.HostFacts:
        if host.name == "worker-1":
            raise HostUnreachable("worker-1 does not answer SSH at 10.0.0.11:22 (timed out)")
        if host.name == "worker-2":
            raise LabError("worker-2: printed malformed facts (no section 0): 'Welcome!'")
        return collect.HostFacts(name=host.name, ip=ip, role=role)

    monkeypatch.setattr(collect, "read_host", read_host)
    found = collect.gather_facts(spec, {h: FakeHost(h, []) for h in spec.host_names})  # type: ignore[arg-type]
    ev = Evidence(lab="lab", focus=None, data_port=4789, hosts=found)
    told = {n: [(f.code, f.finding, f.evidence) for f in host_findings(f, ev)] for n, f in found.items()
            if not f.reachable}
    assert told == {
        "worker-1": [("host-unreachable", "labctl cannot reach the host over SSH",
                      "worker-1 does not answer SSH at 10.0.0.11:22 (timed out)")],
        "worker-2": [("host-unreadable", "the host answers SSH, but its state could not be read",
                      "worker-2: printed malformed facts (no section 0): 'Welcome!'")]}
    assert found["manager"].reachable
