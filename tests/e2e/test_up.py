"""`labctl up` against a real lab (docker provider): three Ready nodes, idempotent,
healing, and `down` leaving nothing behind."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from labctl.wait import wait_until
from tests.conftest import LabRun, _remove_leftovers, wait_for_line

pytestmark = pytest.mark.e2e


def node_table(lab: LabRun) -> list[dict[str, str]]:
    proc = lab.sh("manager", "docker node inspect $(docker node ls -q)")
    assert proc.returncode == 0, proc.stderr
    return [{"hostname": n["Description"]["Hostname"], "state": n["Status"]["State"],
             "addr": n["Status"]["Addr"], "role": n["Spec"]["Role"]} for n in json.loads(proc.stdout)]


def expected_addr(lab: LabRun, host: int) -> str:
    return lab.subnet.rsplit(".", 1)[0] + f".{10 + host}"


def assert_three_ready(lab: LabRun) -> None:
    nodes = sorted(node_table(lab), key=lambda n: n["hostname"])
    assert [(n["hostname"], n["role"], n["state"], n["addr"]) for n in nodes] == [
        ("manager", "manager", "ready", expected_addr(lab, 0)),
        ("worker-1", "worker", "ready", expected_addr(lab, 1)),
        ("worker-2", "worker", "ready", expected_addr(lab, 2)),
    ]


def test_up_gives_three_ready_nodes_advertising_their_private_addresses(lab: LabRun) -> None:
    assert_three_ready(lab)
    status = json.loads(lab("status", "--json", check=True).stdout)
    assert status["healthy"] is True
    assert [(h["host"], h["swarm_state"], h["advertise_addr"]) for h in status["hosts"]] == [
        ("manager", "ready", expected_addr(lab, 0)),
        ("worker-1", "ready", expected_addr(lab, 1)),
        ("worker-2", "ready", expected_addr(lab, 2)),
    ]
    # the swarm runs on the private network (eth1), never on the NAT-like eth0
    eth0 = lab.sh("manager", "ip -4 -o addr show eth0").stdout
    assert expected_addr(lab, 0) not in eth0


def test_second_up_changes_nothing(lab: LabRun) -> None:
    before = {n["hostname"]: n for n in node_table(lab)}
    proc = lab("up", check=True)
    assert "all hosts already running" in proc.stdout
    assert "nothing to change" in proc.stdout
    assert "already the manager" in proc.stdout
    assert "worker-1: already joined; worker-2: already joined" in proc.stdout
    assert "nothing changed" in proc.stdout
    assert {n["hostname"]: n for n in node_table(lab)} == before


def test_up_restarts_a_stopped_dockerd(healthy_lab: LabRun) -> None:
    lab = healthy_lab
    lab.sh("worker-1", "pkill -x dockerd; while pgrep -x dockerd >/dev/null; do sleep 0.2; done")
    # as after a host restart: a stale pid file whose pid now belongs to a live process
    lab.sh("worker-1", "echo 1 > /var/run/docker.pid")
    status = json.loads(lab("status", "--json").stdout)
    assert status["healthy"] is False
    assert status["hosts"][1]["problem"] == "dockerd is not running"
    proc = lab("up", check=True)
    assert "worker-1: started dockerd" in proc.stdout
    assert_three_ready(lab)


def test_up_rejoins_a_worker_that_left(healthy_lab: LabRun) -> None:
    lab = healthy_lab
    assert lab.sh("worker-2", "docker swarm leave --force").returncode == 0
    proc = lab("up", check=True)
    assert "worker-2: joined" in proc.stdout
    assert_three_ready(lab)  # and no stale `worker-2` entry is left in the node list


def test_up_recreates_a_worker_destroyed_behind_its_back(healthy_lab: LabRun) -> None:
    lab = healthy_lab
    subprocess.run(["docker", "rm", "-f", "-v", f"labctl-{lab.name}-worker-1"], check=True, capture_output=True)
    status = lab("status", "--json")
    assert status.returncode == 1
    row = json.loads(status.stdout)["hosts"][1]
    assert row["provider_state"] == "not_created" and "labctl up" in row["problem"]
    diagnosis = lab("diagnose", "--json")
    assert diagnosis.returncode == 1
    codes = {(f["code"], f["host"]) for f in json.loads(diagnosis.stdout)["findings"] if f["severity"] == "error"}
    assert ("host-unreachable", "worker-1") in codes
    proc = lab("up", check=True)
    assert "3 hosts up" in proc.stdout
    assert_three_ready(lab)


def test_damaged_state_files_are_named_or_rebuilt(healthy_lab: LabRun) -> None:
    lab = healthy_lab
    state_dir = f"{lab.env['LABCTL_HOME']}/labs/{lab.name}"
    with open(f"{state_dir}/state.json", "w") as fh:
        fh.write('{"endpoints": {"manager": {"hostname"')  # half-written
    proc = lab("status")
    assert proc.returncode == 1 and f"{state_dir}/state.json is damaged" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = lab("up", check=True)  # the endpoints are a cache: rebuilt from Vagrant
    assert "3 hosts up" in proc.stdout
    assert_three_ready(lab)

    spec_text = open(f"{state_dir}/lab.json").read()
    with open(f"{state_dir}/lab.json", "w") as fh:
        fh.write(spec_text[: len(spec_text) // 2])
    proc = lab("up")
    assert proc.returncode == 1
    assert f"{state_dir}/lab.json is damaged" in proc.stderr and "delete it" in proc.stderr
    with open(f"{state_dir}/lab.json", "w") as fh:
        fh.write(spec_text)


def test_join_token_never_leaves_the_hosts(lab: LabRun) -> None:
    token = lab.sh("manager", "docker swarm join-token -q worker").stdout.strip()
    assert token.startswith("SWMTKN-")
    lab.sh("worker-2", "docker swarm leave --force")
    proc = lab("up", check=True)
    assert token not in proc.stdout + proc.stderr
    home = lab.env["LABCTL_HOME"]
    leaked = subprocess.run(["grep", "-rl", "--exclude-dir=.vagrant", token, home], capture_output=True, text=True)
    assert leaked.stdout == ""
    keys = subprocess.run(["grep", "-rl", "--exclude-dir=.vagrant", "PRIVATE KEY", home], capture_output=True,
                          text=True)
    assert keys.stdout == ""  # private keys stay in Vagrant's own .vagrant/
    assert "PRIVATE KEY" not in lab("status", "--json").stdout
    mode = subprocess.run(["stat", "-c", "%a", f"{home}/labs/{lab.name}/state.json"],
                          capture_output=True, text=True).stdout.strip()
    assert mode == "600"


@contextmanager
def images_load(lab: LabRun) -> Iterator[subprocess.Popen[str]]:
    """`labctl images load` of the 470 MB node image: it holds the lab while it copies,
    given once it holds it, and killed at the end. Killed, it cannot remove its temporary
    folder (a copy of the image): that is removed here."""
    temp = Path(tempfile.gettempdir())
    before = set(temp.glob("labctl-images-*"))
    proc = subprocess.Popen([sys.executable, "-m", "labctl", "--lab", lab.name, "images", "load",
                             "labctl-node:bookworm"], env=lab.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: lab.lock_blocks(fcntl.LOCK_SH) or proc.poll() is not None, 30,
                   "`images load` holding the lab")
        assert proc.poll() is None, proc.communicate()
        yield proc
    finally:
        proc.kill()
        proc.communicate()
        for left in set(temp.glob("labctl-images-*")) - before:
            shutil.rmtree(left, ignore_errors=True)


def test_second_command_on_the_same_lab_is_refused(lab: LabRun) -> None:
    with images_load(lab):
        second = lab("up")
        assert second.returncode == 4
        assert "is busy" in second.stderr and "images load" in second.stderr


def test_a_reader_says_the_lab_is_changing_or_waits_with_wait(lab: LabRun) -> None:
    with images_load(lab) as first:
        for args in (["status"], ["exec", "manager", "--", "true"], ["diagnose"], ["fault", "list"]):
            proc = lab(*args)
            assert proc.returncode == 4, (args, proc.stdout, proc.stderr)
            assert f"lab '{lab.name}' is changing: `labctl --lab {lab.name} images load" in proc.stderr
            assert f"(pid {first.pid}, running for " in proc.stderr and "--wait" in proc.stderr
            assert "healthy" not in proc.stdout and "Ready" not in proc.stdout  # no verdict on a half-made lab
        waiting = subprocess.Popen([sys.executable, "-m", "labctl", "--lab", lab.name, "--wait", "120",
                                    "status", "--json"], env=lab.env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        assert waiting.stderr is not None
        wait_for_line(waiting.stderr, "waiting for `labctl", 30)
        assert waiting.poll() is None
    out, _ = waiting.communicate(timeout=120)
    assert waiting.returncode == 0 and json.loads(out)["healthy"] is True


CTRL_C_LAB = "e2e-ctrlc"
CTRL_C_SUBNET = "192.168.63.0/24"


def machine_rules() -> str:
    return subprocess.run(["iptables", "-S", "DOCKER-USER"], capture_output=True, text=True).stdout


def lab_containers(name: str) -> list[str]:
    return subprocess.run(["docker", "ps", "-aq", "--filter", f"label=labctl.lab={name}"],
                          capture_output=True, text=True).stdout.split()


def test_ctrl_c_during_up_resumes_and_down_leaves_nothing(lab: LabRun, tmp_path: Path) -> None:
    labrun, lab = lab, LabRun(CTRL_C_LAB, CTRL_C_SUBNET, lab.env)
    _remove_leftovers(CTRL_C_LAB)
    try:
        proc = subprocess.Popen([sys.executable, "-m", "labctl", "--lab", lab.name, "up", "--provider", "docker",
                                 "--subnet", lab.subnet], env=lab.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        wait_until(lambda: lab_containers(CTRL_C_LAB), 60, "up creating a container", interval=0.2)
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: labctl and Vagrant both get it
        proc.wait(timeout=300)
        assert "Traceback" not in proc.stderr.read()  # type: ignore[union-attr]

        lab("up", check=True, timeout=600)
        assert_three_ready(lab)
        assert len(lab_containers(CTRL_C_LAB)) == 3
        # two labs side by side: listed apart, the first one untouched
        listed = {entry["lab"]: entry for entry in json.loads(lab("status", "--all", "--json", check=True).stdout)}
        assert listed[CTRL_C_LAB]["subnet"] == CTRL_C_SUBNET and listed[labrun.name]["subnet"] == labrun.subnet
        assert json.loads(labrun("status", "--json").stdout)["healthy"] is True
        swarms = {lab.sh(h, "docker info --format '{{.Swarm.Cluster.ID}}'").stdout.strip() for h in ["manager"]}
        assert len(swarms) == 1

        # a fault on this machine's path between two nodes: `down` must take it away too
        lab("fault", "add", "worker-1", "path-drop", "--peer", "manager", "--port", "7946/tcp", check=True)
        assert "labctl-fault-" in machine_rules()

        volumes = subprocess.run(["docker", "inspect", "-f", "{{range .Mounts}}{{.Name}} {{end}}",
                                  *lab_containers(CTRL_C_LAB)], capture_output=True, text=True).stdout.split()
        assert len(volumes) == 3
        # `down` checks what it undid: an iptables that ignores -D leaves the rule, and down says so
        shim = tmp_path / "bin"
        shim.mkdir()
        real = shutil.which("iptables")
        (shim / "iptables").write_text(f'#!/bin/sh\n[ "$1" = -D ] && exit 0\nexec {real} "$@"\n')
        (shim / "iptables").chmod(0o755)
        failed = lab.with_env(PATH=f"{shim}:{lab.env['PATH']}")("down")
        assert failed.returncode == 1, failed.stdout + failed.stderr
        assert "was not undone: its rule is still in this machine's DOCKER-USER chain" in failed.stderr
        assert "labctl-fault-" in machine_rules()
        assert CTRL_C_LAB in lab("status", "--all").stdout  # state kept, so down can try again
        down = lab("down", check=True)
        assert "removed" in down.stdout
        assert lab_containers(CTRL_C_LAB) == []
        nets = subprocess.run(["docker", "network", "ls", "-q", "--filter", f"name=labctl-{CTRL_C_LAB}"],
                              capture_output=True, text=True).stdout.split()
        assert nets == []
        left = subprocess.run(["docker", "volume", "ls", "-q"], capture_output=True, text=True).stdout.split()
        assert not set(volumes) & set(left)
        assert "labctl-fault-" not in machine_rules()
        assert lab("status").returncode == 1
    finally:
        lab("down")
        _remove_leftovers(CTRL_C_LAB)
