"""`labctl scenario` against a real lab: every scenario passes (skips only with a
detected reason) and leaves the hosts as found; a VXLAN drop on worker-1 fails
standalone-overlay exactly at the cross-host ping; Ctrl-C still cleans up."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from labctl.wait import WaitTimeout, wait_until
from tests.conftest import LabRun

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
OFFLINE = ("labctl/alpine-lite:latest", "labctl/nginx-lite:latest")
HOSTS = ("manager", "worker-1", "worker-2")
STATE = "docker ps -aq --no-trunc | sort; echo --; docker network ls -q --no-trunc | sort; echo --; " \
        "docker service ls -q 2>/dev/null | sort"


@pytest.fixture(scope="module")
def scen_lab(lab: LabRun) -> LabRun:
    """The session's lab, with the offline image set built here when it is missing
    (the scenarios load it into the hosts themselves when no registry is reachable)."""
    have = subprocess.run(["docker", "image", "inspect", *OFFLINE], capture_output=True).returncode == 0
    if not have and shutil.which("debootstrap"):
        subprocess.run(["sh", str(ROOT / "provision/lab-images/build.sh")], check=True, capture_output=True,
                       timeout=900)
    return lab


STATE_BY_NAME = "docker ps -a --format '{{.Names}}' | sort; echo --; docker network ls --format '{{.Name}}' | sort; " \
    "echo --; docker service ls --format '{{.Name}}' 2>/dev/null | sort"


def host_state(lab: LabRun, by_name: bool = False) -> dict[str, str]:
    state = {}
    for host in HOSTS:
        proc = lab.sh(host, STATE_BY_NAME if by_name else STATE)
        assert proc.returncode == 0, proc.stderr
        state[host] = proc.stdout
    return state


def settled_state(lab: LabRun, want: dict[str, str], wait: float = 30, by_name: bool = False) -> dict[str, str]:
    """The hosts' state once it is `want` (the swarm removes things asynchronously), or the last seen."""
    seen: dict[str, dict[str, str]] = {}

    def settled() -> bool:
        seen["now"] = host_state(lab, by_name)
        return seen["now"] == want

    try:
        wait_until(settled, wait, "the hosts' state settled", interval=1)
    except WaitTimeout:
        pass
    return seen["now"]


def run_json(lab: LabRun, *args: str, timeout: float = 900) -> tuple[int, dict]:  # type: ignore[type-arg]
    proc = lab("scenario", "run", *args, "--json", timeout=timeout)
    assert proc.stdout.strip(), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def test_list(scen_lab: LabRun) -> None:
    proc = scen_lab("scenario", "list")
    assert proc.returncode == 0
    for name in ("default-overlay", "user-defined-overlay", "standalone-overlay", "container-to-service",
                 "default-bridge"):
        assert name in proc.stdout


def test_usage_errors_exit_2(scen_lab: LabRun) -> None:
    proc = scen_lab("scenario", "run", "no-such-scenario")
    assert proc.returncode == 2 and "no scenario named" in proc.stderr and "Traceback" not in proc.stderr
    assert scen_lab("scenario", "run").returncode == 2
    assert scen_lab("scenario", "run", "all", "--images", "bogus").returncode == 2


def test_every_scenario_passes_and_leaves_the_hosts_as_found(scen_lab: LabRun, tmp_path: Path) -> None:
    before = host_state(scen_lab)
    report = tmp_path / "report.md"
    rc, data = run_json(scen_lab, "all", "--report", str(report))
    failures = [(s["name"], st["title"], st["reason"], st["output"]) for s in data["scenarios"]
                for st in s["steps"] if st["status"] != "pass" and st["status"] != "skip"]
    assert rc == 0 and data["ok"], failures
    assert [s["name"] for s in data["scenarios"]] == ["default-overlay", "user-defined-overlay",
                                                      "standalone-overlay", "container-to-service", "default-bridge"]
    detected = {reason for caps in data["limits"]["missing"].values() for reason in caps.values() if reason}
    for scenario in data["scenarios"]:
        assert scenario["status"] == "pass" and scenario["cleanup"]["ok"], scenario["name"]
        assert scenario["passed"] > 0
        for step in scenario["steps"]:
            if step["status"] == "skip":  # only with a reason labctl detected on the hosts
                assert any(step["reason"].startswith(r) for r in detected), (step["title"], step["reason"])
    text = report.read_text()
    assert "| host " in text and "## standalone-overlay: PASS" in text
    assert settled_state(scen_lab, before) == before


def test_scenario_name_runs_it_and_a_skip_is_never_a_pass(scen_lab: LabRun) -> None:
    """`labctl scenario NAME` as the owner types it; skips are counted, and --strict fails on them."""
    proc = scen_lab("scenario", "default-bridge", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    line = proc.stdout.strip().splitlines()[-1]
    assert line.startswith("1 of 1 scenario(s) passed; checks: ") and " 0 failed, " in line
    skipped = int(line.split(" failed, ")[1].split(" skipped")[0])
    rc, data = run_json(scen_lab, "default-bridge", "--strict")
    assert data["strict"] is True and data["skipped"] == skipped
    assert data["scenarios"][0]["status"] == "pass"
    # without a way out of the lab the internet ping is skipped: then --strict fails the run
    assert (rc, data["ok"]) == ((1, False) if skipped else (0, True))


def test_vxlan_drop_fails_standalone_overlay_at_the_cross_host_ping(scen_lab: LabRun) -> None:
    rule = "INPUT -p udp --dport 4789 -j DROP"
    before = host_state(scen_lab)
    assert scen_lab.sh("worker-1", f"iptables -I {rule}").returncode == 0
    try:
        rc, data = run_json(scen_lab, "standalone-overlay")
    finally:
        scen_lab.sh("worker-1", f"iptables -D {rule}")
    assert rc == 1 and not data["ok"]
    steps = data["scenarios"][0]["steps"]
    statuses = [s["status"] for s in steps]
    failed_at = statuses.index("fail")
    title = steps[failed_at]["title"]
    assert "pings container02-alpine" in title and title.endswith("by name"), steps[failed_at]
    assert steps[failed_at]["host"] == "manager"
    assert set(statuses[:failed_at]) == {"pass"}  # not earlier
    assert set(statuses[failed_at + 1:]) == {"not run"}  # and nothing after it ran
    hint = steps[failed_at]["hint"]
    assert "UDP 4789" in hint and "worker-1" in hint and "labctl diagnose worker-1" in hint
    assert "--dport 4789 -j DROP" in hint  # the evidence: worker-1's rule
    assert data["scenarios"][0]["cleanup"]["ok"]
    assert settled_state(scen_lab, before) == before


def test_keep_leaves_things_to_explore_and_clean_removes_them(scen_lab: LabRun) -> None:
    before = host_state(scen_lab)
    rc, data = run_json(scen_lab, "standalone-overlay", "--keep")
    assert rc == 0 and data["scenarios"][0]["cleanup"]["kept"]
    skips = [s for s in data["scenarios"][0]["steps"] if s["status"] == "skip"]
    kept = [s for s in skips if s["reason"].startswith("--keep")]
    # the other skips: the encrypted overlay's steps, on a kernel without ESP
    assert kept and all(s in kept or s["reason"].startswith("no ESP") for s in skips)
    assert "container01-alpine" in scen_lab.sh("manager", "docker ps --format '{{.Names}}'").stdout
    assert "container02-alpine" in scen_lab.sh("worker-1", "docker ps --format '{{.Names}}'").stdout
    proc = scen_lab("scenario", "clean", "standalone-overlay")
    assert proc.returncode == 0, proc.stderr
    assert settled_state(scen_lab, before) == before


def test_ctrl_c_cleans_up(scen_lab: LabRun) -> None:
    before = host_state(scen_lab)
    env = {**scen_lab.env, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "labctl", "--lab", scen_lab.name, "scenario", "run",
                             "standalone-overlay"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:  # interrupt once container02 runs on worker-1
        seen.append(line)
        if "now lists test-net" in line:
            break
    os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, "".join(seen) + out + err
    assert "clean-up" in out and "interrupted" in err
    assert settled_state(scen_lab, before) == before


def test_manager_dockerd_restart_during_a_run(scen_lab: LabRun) -> None:
    """The manager's dockerd goes away mid-run: a clear failure, no hang, clean-up of what can
    be reached; once it is back (`up` starts it), a re-run passes and the hosts are as found
    (by name: a restarted dockerd gives its default networks new IDs)."""
    before = host_state(scen_lab, by_name=True)
    node = f"labctl-{scen_lab.name}-manager"
    env = {**scen_lab.env, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "labctl", "--lab", scen_lab.name, "scenario", "run",
                             "standalone-overlay"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "now lists test-net" in line:
            break
    subprocess.run(["docker", "exec", node, "sh", "-c",
                    "pkill -x dockerd; while pgrep -x dockerd >/dev/null; do sleep 0.2; done"], check=True,
                   timeout=60)
    out, err = proc.communicate(timeout=600)
    text = "".join(seen) + out + err
    assert proc.returncode == 1, text
    assert "dockerd on manager does not answer" in text, text
    assert "`labctl up` starts it again" in text
    assert "not cleaned: manager: dockerd does not answer" in out
    assert "Traceback" not in err

    scen_lab("up", check=True)  # dockerd back on the manager
    rerun = scen_lab("scenario", "run", "standalone-overlay", timeout=600)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "removed what an earlier run left" in rerun.stdout
    assert settled_state(scen_lab, before, by_name=True) == before
