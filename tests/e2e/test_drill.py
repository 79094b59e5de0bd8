"""`labctl drill` on a real lab, for every drill of the catalog: the symptom is real (the workload
fails as described), `labctl diagnose` finds the fault (exactly it), the right fix made by hand
with the real tool passes `check`, and afterwards every host's firewall is as before and the lab
diagnoses clean. A fix that opens too much is called out; give-up restores the lab."""

from __future__ import annotations

import json
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from tests.conftest import LabRun
from tests.e2e.test_diagnose import _subnet_ip, diagnose
from tests.e2e.test_diagnose_firewalls import clean  # noqa: F401  (the fixture)

pytestmark = pytest.mark.e2e


def _ok(lab: LabRun, host: str, cmd: str) -> str:
    proc = lab.sh(host, cmd)
    assert proc.returncode == 0, f"{host}: {cmd}: {proc.stdout}{proc.stderr}"
    return proc.stdout


def _secret(lab: LabRun) -> dict[str, Any]:
    """The running drill's record, as labctl keeps it (sealed): what the test needs to fix it."""
    home = Path(lab.env["LABCTL_HOME"])
    token = (home / "labs" / lab.name / "drill.sealed").read_bytes()
    return json.loads(Fernet((home / "drill.key").read_bytes().strip()).decrypt(token.strip()))


def _start(lab: LabRun, name: str, seed: int = 1) -> tuple[dict[str, Any], dict[str, Any]]:
    proc = lab("drill", "start", name, "--seed", str(seed), "--json", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout), _secret(lab)


def _failing(shown: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(p["src"], p["dst"]): p for p in shown["workload"]["pairs"] if not p["ok"]}


HOSTS = ("manager", "worker-1", "worker-2")


def _pairs_with(host: str, hosts: tuple[str, ...] = HOSTS) -> set[tuple[str, str]]:
    return {(a, b) for a in hosts for b in hosts if a != b and host in (a, b)}


def _diagnosed(lab: LabRun) -> tuple[set[tuple[str, str]], list[str]]:
    """The findings' (code, host) set, and each finding as a line with its evidence (for a failure's message)."""
    data = diagnose(lab)
    found = [f for f in data["findings"] if f["severity"] in ("error", "warning")]
    return {(f["code"], f["host"]) for f in found}, [f"{f['code']} {f['host']}: {f['evidence']}" for f in found]


def _check(lab: LabRun) -> tuple[int, dict[str, Any]]:
    proc = lab("drill", "check", "--json", timeout=300)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def _join_command(lab: LabRun) -> str:
    token = _ok(lab, "manager", "docker swarm join-token -q worker").strip()
    return f"docker swarm join --token {token} {_subnet_ip(lab, 10)}:2377"


def _fix(lab: LabRun, name: str, facts: dict[str, Any], record: dict[str, Any]) -> None:
    """The right fix, by hand, with the tool a person would use."""
    host = facts.get("host", "")
    if name == "island":
        _ok(lab, host, "iptables -D INPUT -p udp --dport 4789 -j DROP")
    elif name == "one-way":
        _ok(lab, host, "iptables -D OUTPUT -p udp --dport 4789 -j REJECT")
    elif name == "closed-door":
        _ok(lab, host, "ufw allow 4789/udp")
    elif name == "bad-neighbours":
        _ok(lab, host, f"nft insert rule {facts['table']} input udp dport 4789 accept")
    elif name == "gatekeeper":
        _ok(lab, host, "firewall-cmd --add-port=4789/udp")
    elif name == "stranger":
        token = _ok(lab, "manager", "docker swarm join-token -q worker").strip()
        # A node its peers cannot reach may have its first leave time out ("context deadline exceeded"):
        # a person leaves again. dockerd goes on with a join past the command's own 20 s: wait for it.
        _ok(lab, host, "for i in 1 2 3; do docker swarm leave && break; done; "
                       f"docker swarm join --advertise-addr {facts['ip']} --token {token} "
                       f"{_subnet_ip(lab, 10)}:2377; for i in $(seq 120); do "
                       "[ \"$(docker info -f {{.Swarm.LocalNodeState}})\" = active ] && exit 0; sleep 0.5; done; "
                       "exit 1")
    elif name == "crossed-wires":
        for h in HOSTS:
            _ok(lab, h, f"docker rm -f drill-{h}")
        # the manager refuses the removal while the workers still detach their endpoints: retried
        _ok(lab, "manager", "for i in $(seq 60); do docker network rm drillnet && break; sleep 1; done; "
                            "docker network create -d overlay --attachable --subnet 10.213.9.0/24 drillnet")
    elif name in ("middleman", "roadblock"):
        rule = next(p["fault"]["undo"]["rule"] for p in record["parts"] if p["kind"] == "fault")
        subprocess.run(["iptables", "-D", "DOCKER-USER", *rule], check=True)
    elif name == "big-packets":
        _ok(lab, host, f"ip link set dev {facts['dev']} mtu 1500")
    elif name == "narrow-path":
        subprocess.run(["ip", "link", "set", "dev", facts["dev"], "mtu", "1500"], check=True)
    elif name == "flaky":
        _ok(lab, host, "iptables -D INPUT -p udp --dport 4789 -m statistic --mode random --probability 0.5 -j DROP")
    elif name == "missing-node":
        _ok(lab, host, _join_command(lab))
    elif name == "dead-daemon":
        _ok(lab, host, "setsid nohup dockerd >>/var/log/dockerd.log 2>&1 </dev/null & "
                       "for i in $(seq 150); do docker info >/dev/null 2>&1 && exit 0; sleep 0.2; done; exit 1")
    else:
        raise AssertionError(f"no fix known for {name}")


def _symptom_is_real(name: str, facts: dict[str, Any], shown: dict[str, Any]) -> None:
    host = facts.get("host")
    failing = _failing(shown)
    setup, outside = shown["workload"]["setup"], shown["workload"]["outside"]
    assert (set(outside) == set(HOSTS)) if name == "crossed-wires" else not outside, shown
    if name in ("island", "one-way", "closed-door", "gatekeeper"):
        assert set(failing) == _pairs_with(host) and not setup, shown
        assert all(p["received"] == 0 for p in failing.values()), shown
    elif name == "stranger":  # its container cannot attach (the attachment times out), or cannot be reached
        assert (set(setup) == {host} and not failing) or (set(failing) == _pairs_with(host) and not setup), shown
    elif name == "crossed-wires":
        assert not failing and not setup, shown
    elif name in ("bad-neighbours", "middleman", "roadblock"):
        assert set(failing) == {(host, facts["peer"]), (facts["peer"], host)} and not setup, shown
    elif name in ("big-packets", "narrow-path"):
        assert set(failing) == _pairs_with(host) and not setup, shown
        assert all(p["received"] == p["sent"] and not p["big_ok"] for p in failing.values()), shown
    elif name == "flaky":
        assert failing and set(failing) <= _pairs_with(host) and not setup, shown
        assert all(0 < p["received"] < p["sent"] or not p["big_ok"] for p in failing.values()), shown
    elif name in ("missing-node", "dead-daemon"):
        assert set(setup) == {host} and not failing, shown


def _expected(record: dict[str, Any]) -> set[tuple[str, str]]:
    return {(code, host) for code, host, _ in record["expect"]}


@pytest.fixture
def drill_lab(clean: LabRun) -> Iterator[LabRun]:  # noqa: F811
    """The lab with no drill running after the test (given up if the test left one)."""
    yield clean
    if (Path(clean.env["LABCTL_HOME"]) / "labs" / clean.name / "drill.sealed").exists():
        clean("drill", "give-up", timeout=300)
    clean.sh("manager", "docker rm -f drill-manager >/dev/null 2>&1; true")
    for host in ("worker-1", "worker-2"):
        clean.sh(host, f"docker rm -f drill-{host} >/dev/null 2>&1; true")
    clean.sh("manager", "docker network rm drillnet >/dev/null 2>&1; true")


@pytest.mark.parametrize("name", ["island", "one-way", "closed-door", "gatekeeper", "bad-neighbours", "middleman",
                                  "roadblock", "big-packets", "narrow-path", "flaky", "stranger", "crossed-wires",
                                  "missing-node", "dead-daemon"])
def test_each_drill_shows_its_symptom_is_found_and_is_fixed_by_hand(drill_lab: LabRun, name: str) -> None:
    lab = drill_lab
    shown, record = _start(lab, name)
    facts = record["facts"]
    assert shown["symptoms"], shown
    _symptom_is_real(name, facts, shown)
    found, told = _diagnosed(lab)
    assert found == _expected(record), (record["answer"], told)
    code, _ = _check(lab)
    assert code == 1  # not fixed yet
    _fix(lab, name, facts, record)
    code, told = _check(lab)
    assert code == 0 and told["fixed"], told
    assert told["grade"] == "C" and told["diagnose_used"] == 1  # diagnose named the fault: 3 hints' worth
    assert not (Path(lab.env["LABCTL_HOME"]) / "labs" / lab.name / "drill.sealed").exists()


def test_two_faults_at_level_three(drill_lab: LabRun) -> None:
    lab = drill_lab
    _, record = _start(lab, "double-trouble", seed=7)
    assert len(record["made_of"]) == 2 and len(record["answer"]) == 2
    found, told = _diagnosed(lab)
    assert found == _expected(record), (record["answer"], told)
    first = record["facts"]["each"][0]
    _fix(lab, first["drill"], first, record)
    code, told = _check(lab)
    assert code == 1, told  # one fault is left
    second = record["facts"]["each"][1]
    _fix(lab, second["drill"], second, record)
    code, told = _check(lab)
    assert code == 0, told


def test_a_too_broad_fix_is_called_out_and_give_up_restores(drill_lab: LabRun) -> None:
    lab = drill_lab
    _, record = _start(lab, "island")
    host = record["facts"]["host"]
    _ok(lab, host, "iptables -F INPUT")  # works, but the host's own rules are gone too
    code, told = _check(lab)
    assert code == 1 and told["too_broad"] == [
        f"{host}: removed `-A INPUT -p tcp -m tcp --dport 3306 -j DROP`, which was not the fault"], told
    proc = lab("drill", "give-up", "--json", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(proc.stdout)
    assert data["restored"] and data["answer"] == record["answer"]
    assert data["firewall_changes"] == [], data
    # the flush had removed the fault too: diagnose rightly finds nothing, and is not said to miss it
    assert [f for f in data["diagnosis"] if f["severity"] == "error"] == [] and data["fault_already_removed"]
    told_text = lab("drill", "report").stdout
    assert "island" in told_text and "gave up" in told_text


def test_give_up_shows_what_diagnose_finds_and_restores(drill_lab: LabRun) -> None:
    lab = drill_lab
    _, record = _start(lab, "island")
    host = record["facts"]["host"]
    proc = lab("drill", "give-up", "--json", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(proc.stdout)
    assert data["restored"] and data["firewall_changes"] == [] and not data["fault_already_removed"], data
    assert {(f["code"], f["host"]) for f in data["diagnosis"] if f["severity"] == "error"} == {("port-dropped", host)}


def test_disabling_ufw_is_too_broad(drill_lab: LabRun) -> None:
    lab = drill_lab
    _, record = _start(lab, "closed-door")
    host = record["facts"]["host"]
    _ok(lab, host, "ufw disable")
    code, told = _check(lab)
    assert code == 1 and any("Status: active" in x for x in told["too_broad"]), told
    assert lab("drill", "give-up", timeout=300).returncode == 0


def test_hints_one_drill_at_a_time_and_the_report(drill_lab: LabRun, tmp_path: Path) -> None:
    lab = drill_lab
    _, record = _start(lab, "missing-node")
    host = record["facts"]["host"]
    again = lab("drill", "start", "island")
    assert again.returncode == 2 and "already running" in again.stderr
    sealed = (Path(lab.env["LABCTL_HOME"]) / "labs" / lab.name / "drill.sealed").read_text()
    assert host not in sealed and "leave" not in sealed  # not readable by accident
    hints = [json.loads(lab("drill", "hint", "--json").stdout) for _ in range(5)]
    assert [h["used"] for h in hints] == [1, 2, 3, 4, 4] and hints[-1]["hint"] is None
    assert host in hints[1]["hint"] and host not in hints[0]["hint"]  # vague first, then specific
    _fix(lab, "missing-node", record["facts"], record)
    code, told = _check(lab)
    assert code == 0 and told["grade"] == "C" and told["hints"] == 4, told
    junit = tmp_path / "drills.xml"
    entries = json.loads(lab("drill", "report", "--json", "--junit", str(junit)).stdout)
    assert entries[-1]["drill"] == "missing-node" and entries[-1]["outcome"] == "fixed"
    suite = ET.parse(junit).getroot()
    assert suite.get("tests") == str(len(entries))
    assert lab("drill", "check").returncode == 2  # none runs now
