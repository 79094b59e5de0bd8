"""The swarm join token is on no process's command line, on any host, while workers join
(`labctl up` re-joining a worker that left, `labctl fault` re-joining with a wrong address and
back). Each host gets shims in front of `docker` and `curl` that log their arguments, and a
sampler that records every process's command line; this machine is sampled too."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import LabRun

pytestmark = pytest.mark.e2e

HOSTS = ("manager", "worker-1", "worker-2")
LOG_DIR = "/var/tmp/labctl-argv"
SHIM = """#!/bin/sh
printf '%s\\n' "$0 $*" >> {log_dir}/shim.log
exec /usr/bin/{tool} "$@"
"""
# Every process's command line, 20 times a second (one `ps` each time: a process per
# command line would load all three hosts and this machine's two cores enough to slow
# the swarm down), until the stop file appears or 10 minutes pass. A join holds the
# token for a second or more, the shims log every docker and curl call regardless.
SAMPLER = """#!/bin/sh
end=$(( $(date +%s) + 600 ))
while [ ! -e {log_dir}/stop ] && [ "$(date +%s)" -lt "$end" ]; do
  ps -ww -eo args=; sleep 0.05
done | awk '!seen[$0]++' > {log_dir}/sampled.log
touch {log_dir}/done
"""


def put(lab: LabRun, host: str, path: str, text: str, mode: str = "755") -> None:
    encoded = base64.b64encode(text.encode()).decode()
    proc = lab.sh(host, f"echo {encoded} | base64 -d > {path} && chmod {mode} {path}")
    assert proc.returncode == 0, proc.stderr


class LocalSampler:
    """Every command line on this machine while it runs."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            for path in Path("/proc").glob("[0-9]*/cmdline"):
                try:
                    self.seen.add(path.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
                except OSError:
                    pass  # the process ended

    def __enter__(self) -> LocalSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


@pytest.fixture
def watched(healthy_lab: LabRun) -> Iterator[LabRun]:
    """Shims in front of docker and curl (ahead of /usr/bin, also on sudo's secure_path) on every host."""
    lab = healthy_lab
    for host in HOSTS:
        assert lab.sh(host, f"rm -rf {LOG_DIR} && mkdir -p {LOG_DIR}").returncode == 0
        for tool in ("docker", "curl"):
            put(lab, host, f"/usr/local/bin/{tool}", SHIM.format(log_dir=LOG_DIR, tool=tool))
        assert "/usr/local/bin/docker" in lab.sh(host, "command -v docker").stdout
    yield lab
    for host in HOSTS:
        lab.sh(host, f"touch {LOG_DIR}/stop; rm -f /usr/local/bin/docker /usr/local/bin/curl")
        lab.sh(host, f"for i in $(seq 100); do [ -e {LOG_DIR}/done ] || [ ! -e {LOG_DIR}/sampled.log ] && break; "
                     f"sleep 0.1; done; rm -rf {LOG_DIR} /usr/local/bin/argv-sampler")


def start_samplers(lab: LabRun) -> None:
    for host in HOSTS:
        lab.sh(host, f"rm -f {LOG_DIR}/stop {LOG_DIR}/done {LOG_DIR}/sampled.log {LOG_DIR}/shim.log")
        put(lab, host, "/usr/local/bin/argv-sampler", SAMPLER.format(log_dir=LOG_DIR))
        proc = lab.sh(host, "setsid /usr/local/bin/argv-sampler </dev/null >/dev/null 2>&1 &")
        assert proc.returncode == 0, proc.stderr


def collect(lab: LabRun) -> dict[str, tuple[str, str]]:
    """Stop the samplers; every host's shim log and sampled command lines."""
    logs = {}
    for host in HOSTS:
        lab.sh(host, f"touch {LOG_DIR}/stop")
        waited = lab.sh(host, f"for i in $(seq 300); do [ -e {LOG_DIR}/done ] && exit 0; sleep 0.1; done; exit 1")
        assert waited.returncode == 0, f"{host}: the sampler did not stop"
        logs[host] = (lab.sh(host, f"cat {LOG_DIR}/shim.log").stdout, lab.sh(host, f"cat {LOG_DIR}/sampled.log").stdout)
    return logs


def assert_token_on_no_command_line(lab: LabRun, commands: list[list[str]], rejoined: str) -> None:
    token = lab.sh("manager", "docker swarm join-token -q worker").stdout.strip()
    assert token.startswith("SWMTKN-")
    start_samplers(lab)
    with LocalSampler() as local:
        for args in commands:
            lab(*args, check=True, timeout=300)
    logs = collect(lab)
    shimmed, sampled = logs[rejoined]
    # the shims and the sampler really saw the re-joining worker's commands, the join included
    assert "/usr/local/bin/docker info" in shimmed, shimmed
    assert "swarm join" in shimmed + sampled or "/swarm/join" in shimmed + sampled, shimmed
    assert "sudo -n sh -c" in sampled
    assert any("labctl" in line for line in local.seen)
    for host, (shimmed, sampled) in logs.items():
        assert token not in shimmed, f"{host}: the join token is on a command line: {shimmed}"
        assert token not in sampled, f"{host}: the join token is on a command line"
    assert not [line for line in local.seen if token in line], "the join token is on a command line here"


def test_up_rejoins_a_worker_without_the_token_on_any_command_line(watched: LabRun) -> None:
    lab = watched
    assert lab.sh("worker-2", "/usr/bin/docker swarm leave --force").returncode == 0
    assert_token_on_no_command_line(lab, [["up"]], "worker-2")


def test_fault_rejoins_without_the_token_on_any_command_line(watched: LabRun) -> None:
    lab = watched
    assert_token_on_no_command_line(lab, [["fault", "add", "worker-1", "wrong-advertise"], ["fault", "clear"]],
                                    "worker-1")
