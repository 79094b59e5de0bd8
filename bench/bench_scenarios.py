"""Time each scenario, and `scenario run all`, over N runs on a lab that is up; print medians.

    python bench/bench_scenarios.py --lab scen [--runs 3] [--scenario NAME ...]

Wall time of the whole command (as a person waits for it), and the scenario's own
time from its --json report (steps and clean-up, without connecting and probing).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from labctl.scenarios.catalog import SCENARIOS  # noqa: E402


def run_once(lab: str, names: list[str]) -> tuple[float, dict[str, float], bool]:
    """Wall time, each scenario's own time, and whether all passed."""
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "labctl", "--lab", lab, "scenario", "run", *names, "--json"],
                          capture_output=True, text=True, env=os.environ.copy(), timeout=1800)
    wall = time.monotonic() - start
    try:
        data = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise SystemExit(f"labctl scenario run {' '.join(names)} exited {proc.returncode}:\n{proc.stderr}") from None
    return wall, {s["name"]: s["duration"] for s in data["scenarios"]}, bool(data["ok"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lab", default=os.environ.get("LABCTL_LAB", "lab"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scenario", action="append", help="only these (default: every scenario, then all)")
    args = parser.parse_args()
    targets = [[n] for n in (args.scenario or list(SCENARIOS))]
    if not args.scenario:
        targets.append(["all"])
    rows = []
    for names in targets:
        walls, owns, passes = [], [], 0
        for i in range(args.runs):
            wall, own, ok = run_once(args.lab, names)
            walls.append(wall)
            owns.append(sum(own.values()))
            passes += ok
            print(f"  {' '.join(names):<22} run {i + 1}/{args.runs}: {wall:6.1f} s wall, {sum(own.values()):6.1f} s "
                  f"in scenarios, {'pass' if ok else 'FAIL'}", file=sys.stderr)
        rows.append((" ".join(names), statistics.median(walls), statistics.median(owns), passes))
    print(f"\nmedians over {args.runs} run(s), lab '{args.lab}':")
    print(f"{'scenario':<22} {'wall (s)':>9} {'scenario (s)':>13} {'passed':>7}")
    for name, wall, own, passes in rows:
        print(f"{name:<22} {wall:9.1f} {own:13.1f} {passes:>4}/{args.runs}")


if __name__ == "__main__":
    main()
