"""The swarm phases' decisions, with the SSH boundary faked by recorded answers."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from labctl import swarm
from labctl.errors import LabError
from labctl.runner import Result
from labctl.spec import build_spec

SPEC = build_spec({})
TOKEN = "SWMTKN-1-0123456789abcdef-secret"


def info_json(state: str = "active", node_id: str = "", addr: str = "", manager: bool = False) -> str:
    return json.dumps({"LocalNodeState": state, "NodeID": node_id, "NodeAddr": addr,
                       "ControlAvailable": manager, "Error": "", "RemoteManagers": None})


@dataclass
class FakeHost:
    """Answers commands from a table of (substring -> Result) and records them."""

    name: str
    answers: dict[str, Result] = field(default_factory=dict)
    calls: list[tuple[str, bytes | None]] = field(default_factory=list)

    def run(self, command: str, *, sudo: bool = False, stdin: bytes | None = None,
            timeout: float = 0, check: bool = False, on_line: object = None) -> Result:
        self.calls.append((command, stdin))
        for key, result in self.answers.items():
            if key in command:
                return result
        return Result(0, "", "")

    def commands(self) -> list[str]:
        return [c for c, _ in self.calls]


def test_swarm_info_parses_docker_info() -> None:
    info = swarm.SwarmInfo.parse(info_json("active", "abc", "192.168.56.11"))
    assert (info.state, info.node_id, info.node_addr, info.is_manager) == ("active", "abc", "192.168.56.11", False)
    assert swarm.SwarmInfo.parse('{"LocalNodeState":"inactive","NodeID":"","RemoteManagers":null}').state == "inactive"


def docker_info(swarm_json: str, server_errors: str = "null") -> Result:
    """`docker info --format '{{json .}}'`: the daemon's answer, or a client's without one."""
    version = "" if server_errors != "null" else '"ServerVersion": "27.0.1", '
    return Result(0, f'{{{version}"ServerErrors": {server_errors}, "Swarm": {swarm_json}}}\n', "")


def test_daemon_down_is_an_error_even_when_the_client_exits_0() -> None:
    down = docker_info(info_json("inactive"), '["Cannot connect to the Docker daemon"]')
    host = FakeHost("worker-1", {"docker info": down})
    with pytest.raises(LabError, match="dockerd does not answer: Cannot connect"):
        swarm.swarm_info(host)  # type: ignore[arg-type]


def test_init_is_a_no_op_on_a_ready_manager() -> None:
    host = FakeHost("manager", {"docker info": docker_info(info_json("active", "m1", "192.168.56.10", True))})
    assert swarm.init_manager(host, SPEC.manager) == "already the manager"  # type: ignore[arg-type]
    assert not any("swarm init" in c for c in host.commands())


def test_init_advertises_the_private_address() -> None:
    host = FakeHost("manager", {"docker info": docker_info(info_json("inactive"))})
    swarm.init_manager(host, SPEC.manager)  # type: ignore[arg-type]
    init = [c for c in host.commands() if "swarm init" in c]
    assert init == ["docker swarm init --advertise-addr 192.168.56.10 --listen-addr 192.168.56.10:2377"]


def test_manager_advertising_the_wrong_address_starts_over() -> None:
    host = FakeHost("manager", {"docker info": docker_info(info_json("active", "m1", "10.0.2.15", True))})
    summary = swarm.init_manager(host, SPEC.manager)  # type: ignore[arg-type]
    cmds = host.commands()
    assert cmds.index("docker swarm leave --force") < next(i for i, c in enumerate(cmds) if "swarm init" in c)
    assert "10.0.2.15" in summary


def joined(worker: FakeHost) -> list[tuple[str, bytes | None]]:
    return [(c, stdin) for c, stdin in worker.calls if "/swarm/join" in c]


def test_join_token_travels_on_stdin_only() -> None:
    worker = FakeHost("worker-1", {"docker info": docker_info(info_json("inactive")),
                                   "/swarm/join": Result(0, "\n200", "")})
    summary = swarm.join_worker(worker, SPEC.host("worker-1"), SPEC.manager.ip, TOKEN)  # type: ignore[arg-type]
    assert summary == "joined, advertising 192.168.56.11"
    assert not any(TOKEN in command for command in worker.commands())
    assert not any("swarm join" in command for command in worker.commands())  # the CLI takes it as an argument
    ((command, stdin),) = joined(worker)
    assert "--unix-socket /var/run/docker.sock" in command and "--data-binary @-" in command
    assert stdin is not None and json.loads(stdin) == {
        "ListenAddr": "192.168.56.11:2377", "AdvertiseAddr": "192.168.56.11", "DataPathAddr": "",
        "RemoteAddrs": ["192.168.56.10:2377"], "JoinToken": TOKEN}
    assert [stdin for _, stdin in worker.calls if stdin is not None] == [stdin]


def test_a_wrong_advertise_address_goes_through_the_same_join() -> None:
    worker = FakeHost("worker-2", {"docker info": docker_info(info_json("active", "w2", "192.168.56.12")),
                                   "/swarm/join": Result(0, "\n200", "")})
    summary = swarm.join_worker(worker, SPEC.host("worker-2"), SPEC.manager.ip, TOKEN,  # type: ignore[arg-type]
                                advertise_addr="192.168.56.254")
    assert summary.startswith("joined, advertising 192.168.56.254 (left its stale swarm membership")
    cmds = worker.commands()
    assert cmds.index("docker swarm leave --force") < next(i for i, c in enumerate(cmds) if "/swarm/join" in c)
    ((_, stdin),) = joined(worker)
    assert stdin is not None and json.loads(stdin)["AdvertiseAddr"] == "192.168.56.254"
    assert json.loads(stdin)["ListenAddr"] == "192.168.56.12:2377"


@pytest.mark.parametrize("answer", [
    Result(0, json.dumps({"message": f"invalid join token {TOKEN}"}) + "\n400", ""),  # dockerd refused
    Result(0, "<html>oops</html>\n500", ""),  # not Docker's JSON
    Result(7, "", f"curl: (7) Failed to connect to {TOKEN}"),  # curl itself failed
])
def test_failed_join_masks_the_token_in_the_error(answer: Result) -> None:
    worker = FakeHost("worker-1", {"docker info": docker_info(info_json("inactive")), "/swarm/join": answer})
    with pytest.raises(LabError) as err:
        swarm.join_worker(worker, SPEC.host("worker-1"), SPEC.manager.ip, TOKEN)  # type: ignore[arg-type]
    assert err.value.message.startswith("worker-1 could not join the swarm at 192.168.56.10:2377: ")
    assert TOKEN not in err.value.message
    assert ("SWMTKN-****" in err.value.message) == (TOKEN in answer.out + answer.err)
    assert "labctl diagnose worker-1" in (err.value.hint or "")


def test_api_error_reads_dockers_message() -> None:
    assert swarm.api_error(Result(0, "\n200", "")) == ""
    refused = Result(0, '{"message":"This node is already part of a swarm."}\n503', "")
    assert swarm.api_error(refused) == "Error response from daemon: This node is already part of a swarm."
    assert swarm.api_error(Result(0, "", "")) == "Error response from daemon: HTTP status missing"


def nodes(*entries: tuple[str, str, str, str]) -> list[swarm.NodeEntry]:
    return [swarm.NodeEntry(node_id=i, hostname=h, role="worker", state=s, availability="active", addr=a,
                            leader=False) for i, h, s, a in entries]


def test_healthy_workers_need_membership_and_their_own_address() -> None:
    infos = {
        "worker-1": swarm.SwarmInfo.parse(info_json("active", "w1", "192.168.56.11")),
        "worker-2": swarm.SwarmInfo.parse(info_json("active", "w2", "10.0.2.15")),
    }
    listed = nodes(("w1", "worker-1", "ready", "192.168.56.11"), ("w2", "worker-2", "ready", "10.0.2.15"))
    assert swarm.healthy_workers(SPEC, listed, infos) == {"worker-1"}
    # a worker still "active" in a swarm the (rebuilt) manager does not know
    assert swarm.healthy_workers(SPEC, nodes(("w2", "worker-2", "ready", "x")), infos) == set()


def test_stale_entries_are_old_ids_of_lab_hosts_only() -> None:
    infos = {"manager": swarm.SwarmInfo.parse(info_json("active", "m", "", True)),
             "worker-1": swarm.SwarmInfo.parse(info_json("active", "w1new", ""))}
    listed = nodes(("m", "manager", "ready", ""), ("w1old", "worker-1", "down", ""),
                   ("w1new", "worker-1", "ready", ""), ("x", "someone-else", "down", ""))
    assert swarm.stale_entries(SPEC, listed, infos) == ["w1old"]


def test_node_inspect_parsing() -> None:
    text = json.dumps([{"ID": "a", "Description": {"Hostname": "manager"},
                        "Spec": {"Role": "manager", "Availability": "active"},
                        "Status": {"State": "ready", "Addr": "192.168.56.10"},
                        "ManagerStatus": {"Leader": True}}])
    (entry,) = swarm.NodeEntry.parse_inspect(text)
    assert entry.leader and entry.role == "manager" and entry.addr == "192.168.56.10"


class SlowJoin(FakeHost):
    """dockerd answers the join after its 20 s with "continues in the background", then its
    `docker info` says pending for a while, then `then`."""

    def __init__(self, then: str, pending_reads: int = 2) -> None:
        super().__init__("worker-1")
        self.then, self.pending = then, pending_reads
        self.joined = False

    def run(self, command: str, **kw: object) -> Result:  # type: ignore[override]
        self.calls.append((command, kw.get("stdin")))  # type: ignore[arg-type]
        if "/swarm/join" in command:
            self.joined = True
            message = ("Timeout was reached before node joined. The attempt to join the swarm will continue "
                       "in the background. Use the \"docker info\" command to see the current swarm status.")
            return Result(0, json.dumps({"message": message}) + "\n503", "")
        if not self.joined:
            return docker_info(info_json("inactive"))
        self.pending -= 1
        return docker_info(info_json("pending" if self.pending >= 0 else self.then, "w1", "192.168.56.11"))


def test_a_join_that_goes_on_in_the_background_is_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    worker = SlowJoin("active")
    summary = swarm.join_worker(worker, SPEC.host("worker-1"), SPEC.manager.ip, TOKEN)  # type: ignore[arg-type]
    assert summary == "joined, advertising 192.168.56.11"
    assert sum("docker info" in c for c in worker.commands()) == 1 + 3  # before, pending twice, active


def test_a_background_join_that_ends_in_error_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    worker = SlowJoin("error")
    with pytest.raises(LabError) as err:
        swarm.join_worker(worker, SPEC.host("worker-1"), SPEC.manager.ip, TOKEN)  # type: ignore[arg-type]
    assert err.value.message == ("worker-1 could not join the swarm at 192.168.56.10:2377: "
                                 "the join ended error: no reason given")


def test_a_background_join_that_never_settles_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(swarm, "BACKGROUND_JOIN_TIMEOUT", 0.3)
    worker = SlowJoin("active", pending_reads=10**6)
    with pytest.raises(LabError, match=r"worker-1 joining the swarm: not so after 0\.3 s"):
        swarm.join_worker(worker, SPEC.host("worker-1"), SPEC.manager.ip, TOKEN)  # type: ignore[arg-type]


class FlakyManager(FakeHost):
    """The first join goes on in the background and ends in a gRPC deadline; the second works."""

    def __init__(self) -> None:
        super().__init__("worker-1")
        self.joins = 0

    def run(self, command: str, **kw: object) -> Result:  # type: ignore[override]
        self.calls.append((command, kw.get("stdin")))  # type: ignore[arg-type]
        if "/swarm/join" in command:
            self.joins += 1
            if self.joins == 1:
                message = "Timeout was reached before node joined. The attempt to join the swarm will continue"
                return Result(0, json.dumps({"message": message + " in the background."}) + "\n503", "")
            return Result(0, "\n200", "")
        if "docker info" in command and self.joins == 1:
            return docker_info(json.dumps({
                "LocalNodeState": "error", "NodeID": "", "NodeAddr": "", "ControlAvailable": False,
                "Error": "rpc error: code = DeadlineExceeded desc = context deadline exceeded",
                "RemoteManagers": None}))
        if "docker info" in command:
            return docker_info(info_json("inactive"))
        return Result(0, "", "")


def test_a_join_that_times_out_on_a_busy_manager_is_tried_again() -> None:
    worker = FlakyManager()
    summary = swarm.join_worker(worker, SPEC.host("worker-1"), SPEC.manager.ip, TOKEN)  # type: ignore[arg-type]
    assert summary == "joined, advertising 192.168.56.11 (attempt 2)"
    cmds = worker.commands()
    assert sum("/swarm/join" in c for c in cmds) == 2
    assert cmds.index("docker swarm leave --force") > next(i for i, c in enumerate(cmds) if "/swarm/join" in c)


def test_a_join_refused_for_good_is_not_tried_again() -> None:
    refused = Result(0, json.dumps({"message": "invalid join token"}) + "\n400", "")
    worker = FakeHost("worker-1", {"docker info": docker_info(info_json("inactive")), "/swarm/join": refused})
    with pytest.raises(LabError, match="invalid join token"):
        swarm.join_worker(worker, SPEC.host("worker-1"), SPEC.manager.ip, TOKEN)  # type: ignore[arg-type]
    assert sum("/swarm/join" in c for c in worker.commands()) == 1


class JoinedDespiteDeadline(FakeHost):
    """The join request fails with the gRPC deadline, yet the node did join meanwhile (seen when a
    worker re-joins after advertising a wrong address): another try would be refused."""

    def __init__(self) -> None:
        super().__init__("worker-1")
        self.joins = 0

    def run(self, command: str, **kw: object) -> Result:  # type: ignore[override]
        self.calls.append((command, kw.get("stdin")))  # type: ignore[arg-type]
        if "/swarm/join" in command:
            self.joins += 1
            return Result(0, json.dumps({"message": "context deadline exceeded"}) + "\n500", "")
        if "docker info" in command:
            return docker_info(info_json("active", "w1", "192.168.56.11") if self.joins else info_json("inactive"))
        return Result(0, "", "")


def test_a_join_whose_request_timed_out_but_which_landed_is_not_tried_again() -> None:
    worker = JoinedDespiteDeadline()
    summary = swarm.join_worker(worker, SPEC.host("worker-1"), SPEC.manager.ip, TOKEN)  # type: ignore[arg-type]
    assert summary == "joined, advertising 192.168.56.11"
    assert worker.joins == 1 and "docker swarm leave --force" not in worker.commands()


class SlowLeave(FakeHost):
    """The first leave times out (a node its peers cannot reach), the second goes through."""

    def __init__(self) -> None:
        super().__init__("worker-1")
        self.leaves = 0

    def run(self, command: str, **kw: object) -> Result:  # type: ignore[override]
        self.calls.append((command, kw.get("stdin")))  # type: ignore[arg-type]
        if "swarm leave" in command:
            self.leaves += 1
            return Result(0, "Node left the swarm.", "") if self.leaves > 1 else \
                Result(1, "", "Error response from daemon: context deadline exceeded")
        return Result(0, "", "")


def test_a_leave_that_times_out_is_tried_again() -> None:
    host = SlowLeave()
    assert swarm.leave(host, force=True, check=True).ok  # type: ignore[arg-type]
    assert host.leaves == 2


def test_a_leave_refused_for_good_is_not_tried_again() -> None:
    host = FakeHost("worker-1", {"swarm leave": Result(1, "", "Error response from daemon: This node is not "
                                                             "part of a swarm")})
    with pytest.raises(LabError, match="not part of a swarm"):
        swarm.leave(host, check=True)  # type: ignore[arg-type]
    assert len(host.calls) == 1
