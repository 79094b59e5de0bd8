"""SSH against real local servers: an sshd that is not up yet is waited for within the connect
deadline, a refused login is final, and Ctrl-C during a fan-out returns at once."""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from labctl.errors import HostUnreachable, LabError
from labctl.ssh import Endpoint, Host, fan_out
from labctl.wait import wait_until

HOST_KEY = paramiko.RSAKey.generate(2048)


class _Server(paramiko.ServerInterface):
    def __init__(self, accept: bool, slow_reader: float | None = None, max_sessions: int | None = None,
                 hold: float = 0.0):
        self.accept = accept
        self.slow_reader = slow_reader
        self.max_sessions, self.hold = max_sessions, hold
        self.open = 0
        self.refused = 0
        self.lock = threading.Lock()

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        return paramiko.AUTH_SUCCESSFUL if self.accept else paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        with self.lock:
            if self.max_sessions is not None and self.open >= self.max_sessions:
                self.refused += 1
                return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED  # as sshd's MaxSessions does
            self.open += 1
        return paramiko.OPEN_SUCCEEDED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        if self.slow_reader is not None:
            threading.Thread(target=_read_late, args=(channel, self.slow_reader), daemon=True).start()
        elif self.max_sessions is not None:
            threading.Thread(target=self._busy, args=(channel,), daemon=True).start()
        return True  # else never answers: a command that runs forever

    def _busy(self, channel: paramiko.Channel) -> None:
        """A command that runs `hold` s, then ends and gives its session back."""
        time.sleep(self.hold)  # the command's own run time, not a wait for anything
        channel.sendall(b"done\n")
        channel.send_exit_status(0)
        with self.lock:
            self.open -= 1
        channel.close()


def _read_late(channel: paramiko.Channel, after: float) -> None:
    """A command busy for `after` s before it reads its input (`docker load` on a slow VM)."""
    time.sleep(after)
    got = 0
    while chunk := channel.recv(65536):
        got += len(chunk)
    channel.sendall(f"read {got}\n".encode())
    channel.send_exit_status(0)


class FakeSshd:
    """A port on 127.0.0.1 that refuses for `refuse_for` s, then accepts and hangs up without a
    banner on the first `hang_up` connections, then speaks SSH (logging anyone in, unless `accept`
    is False)."""

    def __init__(self, refuse_for: float = 0.0, hang_up: int = 0, accept: bool = True,
                 slow_reader: float | None = None, max_sessions: int | None = None, hold: float = 0.0):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.refuse_for, self.hang_up, self.accept = refuse_for, hang_up, accept
        self.slow_reader = slow_reader
        self.server = _Server(accept, slow_reader, max_sessions, hold)
        self.connections = 0
        self._stop = threading.Event()
        self._transports: list[paramiko.Transport] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        if self._stop.wait(self.refuse_for):
            return
        with socket.socket() as listener:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", self.port))
            listener.listen(8)
            listener.settimeout(0.1)
            while not self._stop.is_set():
                try:
                    conn, _ = listener.accept()
                except TimeoutError:
                    continue
                self.connections += 1
                if self.connections <= self.hang_up:
                    conn.close()  # what docker's port proxy does while the container's sshd is not up
                    continue
                transport = paramiko.Transport(conn)
                transport.add_server_key(HOST_KEY)
                transport.start_server(event=threading.Event(), server=self.server)
                self._transports.append(transport)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for transport in self._transports:
            transport.close()


@pytest.fixture
def key_file(tmp_path: Path) -> str:
    path = tmp_path / "id_rsa"
    paramiko.RSAKey.generate(2048).write_private_key_file(str(path))
    return str(path)


@pytest.fixture
def servers() -> Iterator[list[FakeSshd]]:
    made: list[FakeSshd] = []
    yield made
    for server in made:
        server.stop()


def host(port: int, key_file: str, timeout: float, name: str = "manager") -> Host:
    return Host(name, Endpoint("127.0.0.1", port, "vagrant", key_file), connect_timeout=timeout)


def test_an_sshd_that_starts_listening_late_is_connected_to(servers: list[FakeSshd], key_file: str) -> None:
    servers.append(server := FakeSshd(refuse_for=1.5))
    target = host(server.port, key_file, timeout=8)
    started = time.monotonic()
    assert target._transport().is_active()
    assert 1.4 < time.monotonic() - started < 4
    target.close()


def test_a_port_proxy_that_hangs_up_before_sshd_is_up_is_retried(servers: list[FakeSshd], key_file: str) -> None:
    servers.append(server := FakeSshd(hang_up=3))  # "Error reading SSH protocol banner"
    target = host(server.port, key_file, timeout=8)
    assert target._transport().is_active()
    assert server.connections == 4
    target.close()


def test_a_host_that_never_answers_fails_by_the_deadline(key_file: str) -> None:
    with socket.socket() as silent:  # accepts the TCP connection (backlog), never sends a banner
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        target = host(int(silent.getsockname()[1]), key_file, timeout=1.5)
        started = time.monotonic()
        with pytest.raises(HostUnreachable) as err:
            target._transport()
        assert 1.4 < time.monotonic() - started < 4
        assert "does not answer SSH" in err.value.message


def test_a_refusing_port_fails_by_the_deadline_not_later(servers: list[FakeSshd], key_file: str) -> None:
    servers.append(server := FakeSshd(refuse_for=60))
    target = host(server.port, key_file, timeout=1.5)
    started = time.monotonic()
    with pytest.raises(HostUnreachable) as err:
        target._transport()
    assert 1.4 < time.monotonic() - started < 3.5
    assert "does not answer SSH" in err.value.message


def test_a_refused_login_is_not_retried(servers: list[FakeSshd], key_file: str) -> None:
    servers.append(server := FakeSshd(accept=False))
    target = host(server.port, key_file, timeout=8)
    started = time.monotonic()
    with pytest.raises(LabError) as err:
        target._transport()
    assert not isinstance(err.value, HostUnreachable)
    assert "was refused" in err.value.message
    assert time.monotonic() - started < 3 and server.connections == 1


def interrupt_after(seconds: float) -> threading.Timer:
    """Ctrl-C, as the terminal sends it: SIGINT to this process's main thread."""
    main = threading.main_thread().ident
    assert main is not None
    timer = threading.Timer(seconds, signal.pthread_kill, (main, signal.SIGINT))
    timer.start()
    return timer


def test_ctrl_c_during_a_fan_out_returns_at_once() -> None:
    release = threading.Event()
    hosts = [Host(name, Endpoint("127.0.0.1", 1, "vagrant", "")) for name in ("manager", "worker-1")]
    started = time.monotonic()
    interrupt_after(0.3)
    try:
        with pytest.raises(KeyboardInterrupt):
            fan_out(hosts, lambda h: release.wait(5))
        assert time.monotonic() - started < 1.5
    finally:
        release.set()


def test_ctrl_c_during_a_fan_out_ends_the_hosts_commands(servers: list[FakeSshd], key_file: str) -> None:
    servers += [FakeSshd(), FakeSshd()]
    hosts = [host(server.port, key_file, timeout=8, name=f"host{i}") for i, server in enumerate(servers)]
    for target in hosts:
        target._transport()
    ended: list[str] = []

    def work(target: Host) -> None:
        target.run("sleep 30", timeout=30)
        ended.append(target.name)

    started = time.monotonic()
    interrupt_after(0.5)
    with pytest.raises(KeyboardInterrupt):
        fan_out(hosts, work)
    assert time.monotonic() - started < 1.5
    # their connections were closed: the commands returned
    wait_until(lambda: len(ended) == 2, 1, "both hosts' commands ended")


def test_an_unusable_key_file_is_named_once_the_host_answers(servers: list[FakeSshd], tmp_path: Path) -> None:
    servers.append(server := FakeSshd())
    bad = tmp_path / "id_rsa"
    bad.write_text("not a key\n")
    with pytest.raises(LabError) as err:
        host(server.port, str(bad), timeout=8)._transport()
    assert f"cannot use the SSH key {bad}" in err.value.message and server.connections == 1


def test_input_waits_for_a_command_that_reads_it_late(servers: list[FakeSshd], key_file: str) -> None:
    """More input than the channel's window, to a command that reads nothing for 3 s: the send
    waits (it used to end as "SSH connection lost")."""
    servers.append(FakeSshd(slow_reader=3.0))
    data = bytes(8 * 2**20)
    result = host(servers[-1].port, key_file, timeout=10).run("docker load", stdin=data, timeout=60)
    assert (result.rc, result.out) == (0, f"read {len(data)}\n")


def test_a_session_refused_while_others_run_is_asked_for_again_without_cutting_them(
        servers: list[FakeSshd], key_file: str) -> None:
    """sshd refuses sessions past MaxSessions on one connection: the command that asked waits for
    one, and the commands already running on the connection are not cut off."""
    servers.append(server := FakeSshd(max_sessions=2, hold=1.0))
    target = host(server.port, key_file, timeout=8)
    results: dict[str, object] = {}

    def run(name: str) -> None:
        try:
            results[name] = target.run("work", timeout=20).out
        except LabError as exc:
            results[name] = exc.message

    running = [threading.Thread(target=run, args=(n,)) for n in ("a", "b")]
    for t in running:
        t.start()
    wait_until(lambda: server.server.open == 2, 5, "two sessions open")
    run("c")
    for t in running:
        t.join(10)
    assert results == {"a": "done\n", "b": "done\n", "c": "done\n"}
    assert server.server.refused >= 1
    assert server.connections == 1
    target.close()
