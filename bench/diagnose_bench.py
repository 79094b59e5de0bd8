"""Whole-lab `labctl diagnose` with two ports dropped, against the checks a script can run.

Baselines, per ordered pair of hosts and per port the swarm needs, on the sending host (over one
SSH connection per host, so SSH set-up is not counted against them):
- sequential: `nc -z -w 3` (TCP) or `nc -u -z -w 3` (UDP), one after another, as a person types them;
- parallel: the same checks with `-w 1`, all fired at once from every host (the fastest thing a
  script could do).
All run in the same process, on the same lab, with the same two faults.

Usage:  LABCTL_HOME=... python3 bench/diagnose_bench.py --lab NAME [--runs 5]
Prints the medians, both ratios, and whether the target (median <= 3 s) is met.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from labctl.lab import Lab, Selection
from labctl.ssh import fan_out

# Two ports dropped: the swarm's control port on the manager and gossip on a worker (TCP, which `nc -z`
# can see). `--faults udp` drops VXLAN instead of 2377: `nc -u` cannot see a UDP drop at all, so that
# baseline is quicker and misses the fault.
SCENARIOS = {
    "tcp": [["manager", "block", "--port", "2377/tcp"], ["worker-1", "block", "--port", "7946/tcp"]],
    "udp": [["worker-2", "block", "--port", "4789/udp"], ["worker-1", "block", "--port", "7946/tcp"]],
}


FAULTS: list[list[str]] = []


def labctl(lab: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "labctl", "--lab", lab, *args], capture_output=True, text=True,
                          timeout=600)
    if check and proc.returncode not in (0, 1):
        raise SystemExit(f"labctl {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc


def checks(lab: Lab, src: str, wait: int) -> list[str]:
    """The `nc` commands that check, from `src`, every port the swarm needs on every peer."""
    found = []
    for dst in lab.spec.hosts:
        if dst.name == src:
            continue
        ports = [("", 7946), ("-u ", 7946), ("-u ", 4789)] + ([("", 2377)] if dst.role == "manager" else [])
        found += [f"nc {flag}-z -w {wait} {dst.ip} {port}" for flag, port in ports]
    return found


def baseline(lab: Lab) -> float:
    hosts = lab.hosts()
    start = time.monotonic()
    for src in lab.spec.hosts:
        for command in checks(lab, src.name, 3):
            hosts[src.name].run(command, timeout=30)
    return time.monotonic() - start


def parallel_baseline(lab: Lab) -> float:
    hosts = lab.hosts()
    start = time.monotonic()
    fan_out(list(hosts.values()),
            lambda h: h.run(" & ".join(checks(lab, h.name, 1)) + " & wait", timeout=30))
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lab", required=True)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--faults", choices=sorted(SCENARIOS), default="tcp")
    args = parser.parse_args()
    FAULTS[:] = SCENARIOS[args.faults]
    lab = Lab.open(Selection.make(args.lab, None, 0))
    for fault in FAULTS:
        labctl(args.lab, "fault", "add", *fault)
    diag, base, fast, found = [], [], [], []
    try:
        for _ in range(args.runs):
            t = time.monotonic()
            proc = labctl(args.lab, "diagnose", "--json")
            diag.append(time.monotonic() - t)
            data = json.loads(proc.stdout)
            found.append(sorted({(f["code"], f["host"], f.get("port")) for f in data["findings"]
                                 if f["severity"] == "error"}))
            base.append(baseline(lab))
            fast.append(parallel_baseline(lab))
    finally:
        labctl(args.lab, "fault", "clear")
        lab.close()
    d, b, p = statistics.median(diag), statistics.median(base), statistics.median(fast)
    print(f"runs: {args.runs}; faults: {'; '.join(' '.join(f) for f in FAULTS)}")
    print(f"diagnose (whole lab, wall clock incl. CLI start): median {d:.2f} s  {[round(x, 2) for x in diag]}")
    print(f"baseline (nc -z -w 3 / nc -u, sequential):      median {b:.2f} s  {[round(x, 2) for x in base]}")
    print(f"baseline (nc -z -w 1, all at once, all hosts):  median {p:.2f} s  {[round(x, 2) for x in fast]}")
    print(f"ratio sequential/diagnose: {b / d:.1f}x; parallel/diagnose: {p / d:.2f}x")
    print(f"diagnose found: {found[0]}")
    print(f"target: median <= 3 s: {'met' if d <= 3 else 'MISSED'}")


if __name__ == "__main__":
    main()
