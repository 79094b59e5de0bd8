"""Runs ON a lab host (as root, `python3 - CONFIG_JSON`): the kernel's own account of each probe.

While labctl's probes run, a temporary nftables table (`inet labctl_trace_<pid>`) marks only
the probe packets (their source ports) with `meta nftrace set 1`, at priority -350 on prerouting
and output, before any other table; `nft monitor trace` then names, per packet, every chain it
crossed (native nftables tables and iptables-nft chains alike) and the rule or policy that gave
each verdict. The table is deleted when the run ends, on a signal, at the deadline, and by the
next run if this one was killed (its pid is in the name).

Protocol on stdout, like wire.py: `READY` once tracing is on, `SENT` and `SETTLED` (at once: the
tracer sends and waits for nothing), then one `RESULT {json}` after the stop file, shortly after the
sent file, or at the deadline.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

CFG = json.loads(sys.argv[1])
TABLE = f"labctl_trace_{os.getpid()}"
MARKER = 47099  # the source port of the packet that proves the monitor is listening
IPT_TABLES = ("filter", "raw", "mangle", "nat", "security")


def say(text):
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except OSError:
        pass  # labctl went away: the table is still removed


def nft(*args, stdin=None):
    try:
        proc = subprocess.run(["nft", *args], input=stdin, capture_output=True, text=True, timeout=5)
        return proc.returncode, proc.stdout + proc.stderr
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 1, str(exc)


def remove_stale():
    """Tables of earlier runs whose process is gone."""
    rc, out = nft("list", "tables", "inet")
    for name in re.findall(r"table inet (labctl_trace_(\d+))", out if rc == 0 else ""):
        if not os.path.exists(f"/proc/{name[1]}"):
            nft("delete", "table", "inet", name[0])


def ruleset(ranges):
    ports = ", ".join([str(MARKER)] + [f"{int(lo)}-{int(hi)}" if lo != hi else str(int(lo)) for lo, hi in ranges])
    mark = f"meta l4proto {{ tcp, udp }} th sport {{ {ports} }} meta nftrace set 1"
    return (f"table inet {TABLE} {{\n"
            f"  chain pre {{ type filter hook prerouting priority -350; policy accept; {mark}; }}\n"
            f"  chain out {{ type filter hook output priority -350; policy accept; {mark}; }}\n}}\n")


def send_marker():
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", MARKER))
            s.sendto(b"labctl-trace", ("127.0.0.1", 9))
    except OSError:
        pass


def chain_listing(family, table, chain):
    """Handles of a chain in order, and the iptables-save text of its table (to name iptables-nft
    rules the way iptables prints them)."""
    rc, out = nft("-a", "list", "chain", family, table, chain)
    handles = [int(h) for h in re.findall(r"# handle (\d+)\s*$", out, re.M)][1:] if rc == 0 else []
    tool = {"ip": "iptables-save", "ip6": "ip6tables-save"}.get(family)
    save = ""
    if tool and table in IPT_TABLES:
        try:
            save = subprocess.run([tool, "-t", table], capture_output=True, text=True, timeout=5).stdout
        except (OSError, subprocess.TimeoutExpired):
            save = ""
    return {"handles": handles, "save": save}


class Markers:
    """The marker packets the monitor has reported: the first proves it listens; one sent once the
    probes are over, and reported, proves that every event before it has been read (the monitor
    prints events in the order the kernel made them)."""

    def __init__(self):
        self.seen = 0
        self.cond = threading.Condition()

    def saw(self):
        with self.cond:
            self.seen += 1
            self.cond.notify_all()

    def wait_past(self, count, timeout):
        """Send markers until the monitor has reported more than `count` of them, or `timeout` s."""
        end = time.monotonic() + timeout
        with self.cond:
            while self.seen <= count and time.monotonic() < end:
                send_marker()
                self.cond.wait(min(0.05, max(0.0, end - time.monotonic())))
            return self.seen > count


def start(lines, markers):
    """Add the trace table and start the monitor; returns the monitor, or an error sentence."""
    if shutil.which("nft") is None:
        return "no nft binary on the host (Debian package nftables)"
    remove_stale()
    rc, out = nft("-f", "-", stdin=ruleset(CFG.get("sports", [])))
    if rc != 0:
        return f"nft could not add the trace table: {out.strip()[:200]}"
    monitor = subprocess.Popen(["nft", "-a", "monitor", "trace"], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    seen, marker_ids = set(), set()

    def read():
        for line in monitor.stdout:
            tid = line.split()[2] if line.startswith("trace id ") and len(line.split()) > 2 else ""
            if f" sport {MARKER} " in line:
                if tid not in marker_ids:
                    marker_ids.add(tid)
                    markers.saw()
            elif not tid or tid in marker_ids:
                continue
            elif " packet: " in line:
                if tid not in seen:  # the headers once per packet (each chain repeats them)
                    seen.add(tid)
                    lines.append(line.rstrip())
            elif f" {TABLE} " not in line:  # the marking rule says nothing about the packet's fate
                lines.append(line.rstrip())

    threading.Thread(target=read, daemon=True).start()
    markers.wait_past(0, float(CFG.get("listen", 2.0)))
    return monitor


def main():
    result = {"ok": False, "error": "", "table": TABLE, "lines": [], "chains": {}, "sent_seen": True, "stopped": False}
    monitor = None
    lines = []
    markers = Markers()

    def stop(*_):
        raise SystemExit(0)

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, stop)
    try:
        started = start(lines, markers)
        if isinstance(started, str):
            result["error"] = started
        else:
            monitor = started
        # every run waits for its stop file, failed or not: labctl signals all its jobs alike
        say("READY")
        say("SENT")  # it sends nothing, and waits for nothing
        say("SETTLED")
        # until the stop file (every host has settled); or `after_sent` seconds after the sent file
        # (labctl says every host has sent: what is still on its way arrives by then); or the
        # deadline. Never counted from this host's own go file: a peer told to go later sends later.
        deadline = time.monotonic() + float(CFG.get("timeout", 20))
        sent_file, stop_file = CFG.get("sent_file", ""), CFG.get("stop_file", "")
        while time.monotonic() < deadline:
            if stop_file and os.path.exists(stop_file):
                result["stopped"] = True  # removed below: labctl need not
                break
            if sent_file and os.path.exists(sent_file):
                sent_file = ""
                deadline = min(deadline, time.monotonic() + float(CFG.get("after_sent", 1.0)))
            time.sleep(0.01)
        if monitor is None:
            return result
        listened = markers.seen > 0
        # the probes' trace events may still be on their way: one more marker, reported, comes after them
        drained = listened and markers.wait_past(markers.seen, float(CFG.get("drain", 1.0)))
        result["ok"] = listened and drained
        if not listened:
            result["error"] = "`nft monitor trace` never reported the test packet"
        elif not drained:
            result["error"] = "`nft monitor trace` did not report the closing test packet: its account may be short"
        result["lines"] = list(lines)
        dropped = {tuple(m.groups()) for m in
                   (re.match(r"trace id \S+ (\S+) (\S+) (\S+) (?:rule .*\(verdict drop\)|policy drop)", x)
                    for x in lines) if m}
        result["chains"] = {" ".join(c): chain_listing(*c) for c in sorted(dropped)}
        return result
    except SystemExit:
        result["error"] = "stopped by a signal"
        return result
    except Exception as exc:  # the table must go whatever went wrong
        result["error"] = f"{type(exc).__name__}: {exc}"
        return result
    finally:
        if monitor is not None:
            monitor.terminate()
            try:
                monitor.wait(timeout=2)
            except subprocess.TimeoutExpired:
                monitor.kill()
        if shutil.which("nft") is not None:
            nft("delete", "table", "inet", TABLE)
        for key in ("go_file", "sent_file", "stop_file"):
            try:
                os.unlink(CFG.get(key, ""))
            except OSError:
                pass


say("RESULT " + json.dumps(main()))
