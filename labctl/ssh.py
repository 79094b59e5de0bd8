"""Everything reaches the hosts one way: SSH through paramiko.

Commands run with a real deadline (paramiko's own timeout is per read), their
output is drained while they run (recv_exit_status() can hang otherwise), and
fan-out runs one thread per host.
"""

from __future__ import annotations

import functools
import logging
import os
import shlex
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import paramiko

from . import validate
from .errors import HostUnreachable, LabError, SessionLost
from .runner import CommandTimeout, Result, RunError, shorten

logging.getLogger("paramiko").setLevel(logging.CRITICAL)

T = TypeVar("T")


@dataclass(frozen=True)
class Endpoint:
    """Where a host's sshd answers, and how to log in."""

    hostname: str
    port: int
    user: str
    key_file: str  # "" : the SSH agent and ~/.ssh keys
    # "vagrant": any host key (Vagrant hosts get new keys with every rebuild);
    # "strict": known_hosts must have it; "accept-new": record a new one, refuse a changed one.
    host_keys: str = "vagrant"

    def to_json(self) -> dict[str, object]:
        return {"hostname": self.hostname, "port": self.port, "user": self.user, "key_file": self.key_file}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Endpoint:
        hostname, user = str(data["hostname"]), str(data["user"])
        if not hostname or not user or hostname.startswith("-") or user.startswith("-"):
            raise ValueError("no SSH host or user")  # they reach ssh's command line
        return cls(hostname, validate.port(data["port"]), user, str(data["key_file"]))

    @property
    def address(self) -> str:
        return f"{self.hostname}:{self.port}"


class _AcceptVagrantKeys(paramiko.MissingHostKeyPolicy):
    """Vagrant hosts get new host keys with every rebuild; Vagrant itself does not check them."""

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        return None


_known_hosts_lock = threading.Lock()


def known_hosts_path() -> Path:
    return Path(os.environ.get("LABCTL_KNOWN_HOSTS") or Path.home() / ".ssh" / "known_hosts")


class _AcceptNewKeys(paramiko.MissingHostKeyPolicy):
    """Like ssh's StrictHostKeyChecking=accept-new: record an unknown key (a changed
    one never reaches a policy: paramiko refuses it with BadHostKeyException)."""

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        path = known_hosts_path()
        with _known_hosts_lock:  # hosts connect in parallel; appends must not interleave
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a") as fh:
                fh.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        client.get_host_keys().add(hostname, key.get_name(), key)


def _ssh_path(path: str) -> str:
    """A path as an ssh -o value: ssh splits values at blanks and expands %-tokens in paths."""
    return '"' + path.replace("%", "%%").replace("\\", "\\\\").replace('"', '\\"') + '"'


def client_argv(endpoint: Endpoint) -> list[str]:
    """The OpenSSH client's arguments for an endpoint, with the same host-key policy as `Host`:
    Vagrant hosts unchecked (as `vagrant ssh` does), existing hosts against known_hosts."""
    if endpoint.host_keys == "vagrant":
        keys = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
    else:
        check = "accept-new" if endpoint.host_keys == "accept-new" else "yes"
        keys = ["-o", f"StrictHostKeyChecking={check}",
                "-o", f"UserKnownHostsFile={_ssh_path(str(known_hosts_path()))}"]
    identity = (["-o", f"IdentityFile={_ssh_path(endpoint.key_file)}", "-o", "IdentitiesOnly=yes"]
                if endpoint.key_file else [])
    return ["ssh", "-p", str(endpoint.port), *identity, *keys, "-o", "LogLevel=ERROR",
            "-l", endpoint.user, "--", endpoint.hostname]


# How long a command waits for the server to grant it a session (stretched by the host's pace).
SESSION_TIMEOUT = 10.0


class Host:
    """One SSH connection to a lab host, opened on first use, shared by threads."""

    def __init__(self, name: str, endpoint: Endpoint, connect_timeout: float = 8.0, pace: float = 1.0):
        self.name = name
        self.endpoint = endpoint
        self.connect_timeout = connect_timeout
        # How many times slower than a docker-provider node this host runs (a VM under qemu's
        # software emulation): every command's deadline stretches by it.
        self.pace = pace
        self._client: paramiko.SSHClient | None = None
        self._lock = threading.Lock()

    def _transport(self) -> paramiko.Transport:
        with self._lock:
            if self._client is not None:
                transport = self._client.get_transport()
                if transport is not None and transport.is_active():
                    return transport
                self._client.close()
                self._client = None
            client = self._connect()
            transport = client.get_transport()
            assert transport is not None
            transport.set_keepalive(15)
            self._client = client
            return transport

    def _client_for(self) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        if self.endpoint.host_keys == "vagrant":
            client.set_missing_host_key_policy(_AcceptVagrantKeys())
        else:
            if known_hosts_path().is_file():
                client.get_host_keys().load(str(known_hosts_path()))
            client.set_missing_host_key_policy(
                _AcceptNewKeys() if self.endpoint.host_keys == "accept-new" else paramiko.RejectPolicy())
        return client

    def _load_key(self) -> tuple[paramiko.PKey | None, LabError | None]:
        """The key file's key, or why it cannot be used (told once the host answers)."""
        if not self.endpoint.key_file:
            return None, None
        try:
            return paramiko.PKey.from_path(self.endpoint.key_file), None
        except (OSError, ValueError, paramiko.SSHException) as exc:
            return None, LabError(f"{self.name}: cannot use the SSH key {self.endpoint.key_file} ({exc})",
                                  hint="check ssh_key in the lab file (an unencrypted private key)")

    def _connect(self) -> paramiko.SSHClient:
        """Connect and log in. A host whose sshd is not up yet (connection refused, no banner,
        the connection closed during key exchange) is tried again with a short backoff until
        `connect_timeout`, the budget of the whole connection set-up; a refused login or host
        key is final."""
        ep = self.endpoint
        deadline = time.monotonic() + self.connect_timeout
        pause = 0.1
        # Loaded here, not by paramiko: with key_filename a refused login surfaces as the
        # last key format paramiko tried, indistinguishable from an unreachable host.
        pkey, key_error = self._load_key()
        while True:
            client = self._client_for()
            budget = max(0.2, deadline - time.monotonic())
            try:
                client.connect(
                    ep.hostname, port=ep.port, username=ep.user, pkey=pkey,
                    timeout=budget, banner_timeout=budget, auth_timeout=budget, allow_agent=not ep.key_file,
                    look_for_keys=not ep.key_file,
                )
                return client
            except paramiko.BadHostKeyException:
                client.close()
                raise LabError(
                    f"{self.name}: the host key of {ep.address} has CHANGED since {known_hosts_path()} "
                    "recorded it: refusing to connect",
                    hint=f"if the host was really rebuilt: ssh-keygen -R '[{ep.hostname}]:{ep.port}' "
                    f"-f {known_hosts_path()}",
                ) from None
            except paramiko.AuthenticationException:
                client.close()
                if key_error is not None:
                    raise key_error from None
                raise LabError(f"{self.name}: SSH login as {ep.user} at {ep.address} was refused",
                               hint="check ssh_user and ssh_key in the lab file") from None
            except paramiko.SSHException as exc:
                client.close()
                if "not found in known_hosts" in str(exc):
                    raise LabError(
                        f"{self.name}: the host key of {ep.address} is not in {known_hosts_path()}",
                        hint='to record it, set host_keys = "accept-new" in the lab file or pass '
                        "--accept-new-host-keys to `labctl up`",
                    ) from None
                if key_error is not None and "authentication" in str(exc):
                    raise key_error from None  # the host answered; labctl had no key to offer
                failure: BaseException = exc
                hint = "is the host up? `labctl status`"
            except (OSError, EOFError) as exc:
                client.close()
                failure = exc
                hint = "is the lab up? `labctl status` shows each host; `labctl up` brings it back"
            left = deadline - time.monotonic()
            if left <= 0:
                raise HostUnreachable(
                    f"{self.name} does not answer SSH at {ep.address} ({failure or type(failure).__name__})",
                    hint=hint) from None
            time.sleep(min(pause, left))
            pause = min(pause * 2, 1.0)

    def _open_session(self, within: float) -> paramiko.Channel:
        """A new session on the shared connection. A session the server refuses (sshd's
        MaxSessions, while other commands hold theirs) is asked for again until `within` s;
        the connection is closed only when it is dead, never under commands still running on it,
        and a dead one is opened anew once."""
        deadline = time.monotonic() + within
        pause, reconnected = 0.05, False
        while True:
            transport = self._transport()
            try:
                return transport.open_session(timeout=max(0.5, deadline - time.monotonic()))
            except paramiko.ChannelException as exc:
                failure: BaseException = exc
            except (paramiko.SSHException, EOFError, OSError) as exc:
                failure = exc
                if transport.is_active() or reconnected:
                    break
                self._drop(transport)  # the next try opens a new connection
                reconnected = True
                continue
            if time.monotonic() + pause > deadline:
                break
            time.sleep(pause)
            pause = min(pause * 2, 1.0)
        raise SessionLost(f"{self.name}: cannot open an SSH session ({failure or type(failure).__name__})",
                          hint="`labctl status`")

    def _drop(self, transport: paramiko.Transport) -> None:
        """Close the connection if it is still the one `transport` belongs to."""
        with self._lock:
            if self._client is not None and self._client.get_transport() is transport:
                self._client.close()
                self._client = None

    def run(
        self,
        command: str,
        *,
        sudo: bool = False,
        stdin: bytes | None = None,
        timeout: float = 120.0,
        check: bool = False,
        on_line: Callable[[str], None] | None = None,
        shown: str | None = None,
    ) -> Result:
        """Run a shell command; a deadline ends it, output is drained as it comes.
        With check=True a failed command is a RunError; `shown` is how errors name the
        command (give one without secrets when the command holds any)."""
        shown = shown or command
        timeout *= self.pace
        if sudo:
            command = "sudo -n sh -c " + shlex.quote(command)
        channel = self._open_session(min(timeout, SESSION_TIMEOUT * self.pace))
        deadline = time.monotonic() + timeout
        out, err = bytearray(), bytearray()
        pending = b""
        try:
            channel.settimeout(1.0)
            channel.exec_command(command)
            if stdin is not None:
                view = memoryview(stdin)
                while view:
                    try:
                        sent = channel.send(bytes(view[:65536]))
                    except TimeoutError:  # the remote side reads slower than this sends (a busy VM)
                        if time.monotonic() > deadline:
                            break
                        continue
                    except OSError:
                        if channel.closed or channel.exit_status_ready():
                            break  # the command ended before it read all its input: its status tells
                        raise
                    view = view[sent:]
                    if time.monotonic() > deadline:
                        break
            if not channel.closed:
                channel.shutdown_write()
            while True:
                got = False
                while channel.recv_ready():
                    chunk = channel.recv(65536)
                    out += chunk
                    got = True
                    if on_line is not None:
                        pending += chunk
                        *lines, pending = pending.split(b"\n")
                        for line in lines:
                            on_line(line.decode(errors="replace"))
                while channel.recv_stderr_ready():
                    err += channel.recv_stderr(65536)
                    got = True
                if channel.exit_status_ready() and not channel.recv_ready() and not channel.recv_stderr_ready():
                    break
                if time.monotonic() > deadline:
                    raise CommandTimeout(
                        f"{self.name}: `{shorten(shown)}` did not finish within {timeout:.0f} s",
                        hint="the host may be overloaded or a service it needs is down",
                    )
                if not got:
                    time.sleep(0.01)
            rc = channel.recv_exit_status()
        except (TimeoutError, paramiko.SSHException, EOFError, OSError) as exc:
            raise SessionLost(f"{self.name}: SSH connection lost ({exc})", hint="`labctl status`") from None
        finally:
            channel.close()
        result = Result(rc, out.decode(errors="replace"), err.decode(errors="replace"))
        if check and not result.ok:
            raise RunError(self.name, shown, rc, result.tail(3))
        return result

    def abort(self) -> None:
        """Close the connection now, from any thread, without waiting for one being opened:
        commands running on it end."""
        client = self._client
        if client is not None:
            client.close()

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


def background(work: Callable[[], T]) -> Future[T]:
    """Run `work` in a daemon thread: an interrupted command exits without waiting for it."""
    future: Future[T] = Future()

    def target() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(work())
        except BaseException as exc:  # handed to whoever reads the future
            future.set_exception(exc)

    threading.Thread(target=target, daemon=True).start()
    return future


def run_rerunnable(host: Host, command: str, **kw: Any) -> Result:
    """`host.run` for a command that may run twice (it only reads, or touching twice is touching
    once): a session lost under it is run once more; a host that never answered is not asked again."""
    try:
        return host.run(command, **kw)
    except SessionLost:
        return host.run(command, **kw)


def fan_out(hosts: Iterable[Host], work: Callable[[Host], T]) -> dict[str, T | BaseException]:
    """Run `work` on every host at once; each host's result or exception, by name.
    Ctrl-C returns at once: the hosts' connections are closed, which ends their commands,
    and the threads are not waited for."""
    hosts = list(hosts)
    results: dict[str, T | BaseException] = {}
    futures = {h.name: background(functools.partial(work, h)) for h in hosts}
    try:
        for name, future in futures.items():
            try:
                results[name] = future.result()
            except Exception as exc:
                results[name] = exc
    except BaseException:
        for future in futures.values():
            future.cancel()
        for host in hosts:
            host.abort()
        raise
    return results


def split_results(results: dict[str, T | BaseException]) -> tuple[dict[str, T], dict[str, BaseException]]:
    """A fan-out's results sorted into the hosts' values and the hosts' errors, each by name
    (for callers that go on without the hosts that failed)."""
    values: dict[str, T] = {}
    errors: dict[str, BaseException] = {}
    for name, result in results.items():
        if isinstance(result, BaseException):
            errors[name] = result
        else:
            values[name] = result
    return values, errors


def raise_first(results: dict[str, T | BaseException], what: str | None = None) -> dict[str, T]:
    """The hosts' values of a fan-out, or the first host's error (all failed hosts named).
    With `what` ("the kernel-limit probe"), an error that is not a LabError becomes one
    saying that `what` failed on that host."""
    values, errors = split_results(results)
    if not errors:
        return values
    name, first = next(iter(errors.items()))
    if what is not None and not isinstance(first, LabError):
        raise LabError(f"{name}: {what} failed ({type(first).__name__}: {first})") from first
    if len(errors) > 1 and isinstance(first, LabError):
        raise LabError(f"{first.message} (failed on: {', '.join(errors)})", hint=first.hint,
                       exit_code=first.exit_code) from first
    raise first


def all_answer(hosts: dict[str, Host], timeout: float = 5) -> bool:
    """Do all hosts answer SSH now?"""
    values, errors = split_results(fan_out(list(hosts.values()), lambda h: h.run("true", timeout=timeout).ok))
    return not errors and all(values.values())
