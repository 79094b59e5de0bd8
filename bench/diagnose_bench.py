"""Whole-lab `labctl diagnose` with two ports dropped, against the checks a person runs by hand.

Baseline: per ordered pair of hosts and per port the swarm needs, `nc -z -w 3` (TCP) or
`nc -u -z -w 3` (UDP) on the sending host, one after another (over one SSH connection per
host, so SSH set-up is not counted against the baseline). Both run in the same process, on
the same lab, with the same two faults.

Usage:  LABCTL_HOME=... python3 bench/diagnose_bench.py --lab NAME [--runs 3]
Prints the medians, the ratio, and whether the targets (<= 10 s, >= 5x) are met.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from labctl.lab import Lab, Selection

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


def baseline(lab: Lab) -> float:
    hosts = lab.hosts()
    spec = lab.spec
    start = time.monotonic()
    for src in spec.hosts:
        for dst in spec.hosts:
            if src is dst:
                continue
            checks = [("", 7946), ("-u ", 7946), ("-u ", 4789)]
            if dst.role == "manager":
                checks.insert(0, ("", 2377))
            for flag, port in checks:
                hosts[src.name].run(f"nc {flag}-z -w 3 {dst.ip} {port}", timeout=30)
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lab", required=True)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--faults", choices=sorted(SCENARIOS), default="tcp")
    args = parser.parse_args()
    FAULTS[:] = SCENARIOS[args.faults]
    lab = Lab.open(Selection.make(args.lab, None, 0))
    for fault in FAULTS:
        labctl(args.lab, "fault", "add", *fault)
    diag, base, found = [], [], []
    try:
        for _ in range(args.runs):
            t = time.monotonic()
            proc = labctl(args.lab, "diagnose", "--json")
            diag.append(time.monotonic() - t)
            data = json.loads(proc.stdout)
            found.append(sorted({(f["code"], f["host"], f.get("port")) for f in data["findings"]
                                 if f["severity"] == "error"}))
            base.append(baseline(lab))
    finally:
        labctl(args.lab, "fault", "clear")
        lab.close()
    d, b = statistics.median(diag), statistics.median(base)
    print(f"runs: {args.runs}; faults: {'; '.join(' '.join(f) for f in FAULTS)}")
    print(f"diagnose (whole lab, wall clock incl. CLI start): median {d:.2f} s  {[round(x, 2) for x in diag]}")
    print(f"baseline (nc -z -w 3 / nc -u, sequential):      median {b:.2f} s  {[round(x, 2) for x in base]}")
    print(f"ratio baseline/diagnose: {b / d:.1f}x")
    print(f"diagnose found: {found[0]}")
    print(f"targets: <= 10 s: {'met' if d <= 10 else 'MISSED'}; >= 5x: {'met' if b / d >= 5 else 'MISSED'}")


if __name__ == "__main__":
    main()
