"""Start, hint, check, give up: a drill's life on a real lab. The caller holds the lab's lock."""

from __future__ import annotations

import base64
import random
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import faults, swarm
from ..errors import LabError, UsageError
from ..lab import Lab
from ..wait import WaitTimeout, wait_until
from . import catalog, firewall_state, sealed, workload
from .catalog import FIREWALLD_STOP, UFW_RESTORE, Made

SYMPTOM_DEADLINE = 30.0  # a fault's symptom shows within this (a worker that left: at once)
RESTORE_DEADLINE = 60.0  # the workload works again within this after a restore
DIAGNOSE_COST = 3  # hints a `labctl diagnose` during a drill counts for: it names the fault
MAY_USE = ("labctl exec HOST -- CMD / labctl ssh HOST (docker, ip, ping, tcpdump, iptables, nft, ufw, "
           "firewall-cmd), "
           "labctl capture HOST, labctl status; `labctl diagnose` names the fault: it counts as "
           f"{DIAGNOSE_COST} hints")


@dataclass
class Outcome:
    """What a command has to say: lines for a person, data for --json, and whether it succeeded."""

    ok: bool
    lines: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


def _require(lab: Lab) -> dict[str, Any]:
    record = sealed.load(lab)
    if record is None:
        raise UsageError(f"no drill is running on lab '{lab.spec.name}'", hint="`labctl drill start` begins one")
    return record


def _symptom(lab: Lab, deadline: float) -> workload.Result:
    """The workload, until it fails (the fault has taken hold) or the deadline passes."""
    found: list[workload.Result] = []

    def failing() -> bool:
        found.append(workload.run(lab))
        return not found[-1].ok
    try:
        wait_until(failing, deadline, interval=1.0, what="the drill's symptom")
    except WaitTimeout:
        pass
    return found[-1]


def start(lab: Lab, name: str | None, level: int | None, seed: int | None = None,
          notify: Callable[[str], None] = lambda _: None) -> Outcome:
    if sealed.running(lab):
        raise UsageError(f"a drill is already running on lab '{lab.spec.name}'",
                         hint="finish it first: `labctl drill check`, or `labctl drill give-up`")
    choices = catalog.available(lab)
    if name is not None:
        drill = catalog.get(name)
        if drill not in choices:
            raise UsageError(f"drill '{name}' needs a lab whose hosts share a bridge on this machine (docker "
                             f"provider); lab '{lab.spec.name}' runs on {lab.spec.provider}")
    else:
        pool = [d for d in choices if level is None or d.level == level]
        if not pool:
            raise UsageError(f"no drill of level {level}", hint="levels are 1, 2 and 3")
        drill = random.Random(seed).choice(pool)
    notify("checking that the lab works before breaking it")
    before = workload.run(lab)
    if not before.ok:
        raise LabError("the lab does not work before the drill: " + "; ".join(before.symptoms()[:3]),
                       hint="`labctl up` heals it; `labctl diagnose` says what is wrong")
    clean_rules = firewall_state.read(lab)
    made = Made(read_rules=lambda: firewall_state.read(lab))
    rng = random.Random(seed)
    notify("breaking the lab")
    try:
        made_of = catalog.make(lab, drill, rng, made)
    except BaseException:
        _restore(lab, made.parts)
        raise
    broken_rules = firewall_state.read(lab)
    record = {"name": drill.name, "level": drill.level, "made_of": made_of, "started": time.time(),
              "parts": made.parts, "facts": made.facts, "answer": made.answer, "expect": made.expect,
              "hints_used": 0, "diagnose_used": 0, "checks": 0, "clean_rules": clean_rules,
              "broken_rules": broken_rules, "fault_lines": made.fault_lines}
    sealed.save(lab, record)  # before the workload: a crash from here on still leaves the way back
    notify("running the workload")
    result = _symptom(lab, SYMPTOM_DEADLINE)
    if result.ok:
        _restore(lab, made.parts)
        sealed.remove(lab)
        raise LabError(f"drill {drill.name}: its fault did not show within {SYMPTOM_DEADLINE:.0f} s, so the lab "
                       "was restored and no drill runs", hint="start it again; if it happens again, it is a bug")
    lines = [f"drill {drill.name} (level {drill.level}) started on lab {lab.spec.name}.",
             f"The workload: containers {', '.join(workload.container(h) for h in lab.spec.host_names)}, one per "
             f"host, on the attachable overlay {workload.NETWORK}, pinging each other by name.",
             "What you see:", *[f"  {s}" for s in result.symptoms()],
             f"You may use: {MAY_USE}.",
             "Fixed? `labctl drill check`. Stuck? `labctl drill hint`. `labctl drill give-up` shows the answer."]
    return Outcome(True, lines, {"drill": drill.name, "level": drill.level, "symptoms": result.symptoms(),
                                 "workload": result.to_json()})


def hint(lab: Lab) -> Outcome:
    record = _require(lab)
    drill = catalog.get(record["name"])
    texts = catalog.hints(drill, record["facts"])
    used = record["hints_used"]
    if used >= len(texts):
        return Outcome(False, [f"no more hints ({len(texts)} given): `labctl drill give-up` shows the fault"],
                       {"hint": None, "used": used, "of": len(texts)})
    record["hints_used"] = used + 1
    sealed.save(lab, record)
    return Outcome(True, [f"hint {used + 1} of {len(texts)}: {texts[used]}"],
                   {"hint": texts[used], "used": used + 1, "of": len(texts)})


def diagnosed(lab: Lab) -> None:
    """A `labctl diagnose` ran while a drill runs: it is counted."""
    record = sealed.load(lab)
    if record is not None:
        record["diagnose_used"] = record.get("diagnose_used", 0) + 1
        sealed.save(lab, record)


def _grade(record: dict[str, Any]) -> str:
    spent = record["hints_used"] + DIAGNOSE_COST * record.get("diagnose_used", 0)
    return "A" if spent == 0 else "B" if spent <= 2 else "C"


def _summary(record: dict[str, Any], outcome: str, grade: str) -> dict[str, Any]:
    return {"lab": "", "drill": record["name"], "level": record["level"], "outcome": outcome, "grade": grade,
            "seconds": round(time.time() - record["started"], 1), "hints": record["hints_used"],
            "diagnose_used": record.get("diagnose_used", 0), "checks": record.get("checks", 0),
            "fault": record["answer"], "started": record["started"]}


def check(lab: Lab, notify: Callable[[str], None] = lambda _: None) -> Outcome:
    record = _require(lab)
    record["checks"] = record.get("checks", 0) + 1
    sealed.save(lab, record)
    notify("running the workload")
    result = workload.run(lab)
    if not result.ok:
        return Outcome(False, ["not fixed yet:", *[f"  {s}" for s in result.symptoms()]],
                       {"fixed": False, "symptoms": result.symptoms(), "workload": result.to_json()})
    change = firewall_state.compare(record["broken_rules"], firewall_state.read(lab), record["fault_lines"])
    if change.too_broad:
        return Outcome(False, ["it works, but you opened more than the fault needs:",
                               *[f"  {x}" for x in change.too_broad],
                               "put that back and let through only what is needed (or `labctl drill give-up`)."],
                       {"fixed": False, "too_broad": change.too_broad, "changed": change.lines()})
    grade = _grade(record)
    entry = _summary(record, "fixed", grade) | {"lab": lab.spec.name, "changed": change.lines()}
    notify("removing what is left of the drill")
    _restore(lab, record["parts"])
    sealed.remove(lab)
    sealed.add_history(entry)
    lines = ["fixed: the workload works again.", "The fault was:", *[f"  {a}" for a in record["answer"]],
             "What you changed:", *([f"  {x}" for x in change.lines()] or ["  nothing in any firewall"]),
             f"Time: {_minutes(entry['seconds'])}; hints: {entry['hints']}"
             + (f"; diagnose runs: {entry['diagnose_used']}" if entry["diagnose_used"] else "")
             + f"; grade: {grade}"]
    return Outcome(True, lines, {"fixed": True, **entry})


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {int(seconds % 60)} s"


@dataclass
class Diagnosis:
    """What `labctl diagnose` says of the broken lab: its errors, its summary, its findings as JSON."""
    errors: list[str]
    summary: str
    findings: list[dict[str, Any]]


def give_up(lab: Lab, diagnose: Callable[[Lab], Diagnosis],
            notify: Callable[[str], None] = lambda _: None) -> Outcome:
    """Diagnose the broken lab (`diagnose` runs the diagnosis: the verb owns it), then restore it."""
    record = _require(lab)
    notify("diagnosing the broken lab")
    diagnosis = diagnose(lab)
    now = firewall_state.read(lab)
    faults_gone = bool(record["fault_lines"]) and not any(
        set(lines) & set(now.get(host, [])) for host, lines in record["fault_lines"].items())
    notify("restoring the lab")
    _restore(lab, record["parts"])
    sealed.remove(lab)
    entry = _summary(record, "gave up", "-") | {"lab": lab.spec.name}
    sealed.add_history(entry)
    works = _works_again(lab)
    left = firewall_state.compare(record["clean_rules"], firewall_state.read(lab), {}).lines()
    lines = ["The fault was:", *[f"  {a}" for a in record["answer"]],
             "`labctl diagnose` would have said:",
             *([f"  {e}" for e in diagnosis.errors]
               or ["  (nothing now: your changes had already removed the fault's rules)" if faults_gone
                   else "  (nothing: it missed this one)"]),
             f"  {diagnosis.summary}",
             "The lab is restored" + (" and works again." if works.ok else
                                      ", but the workload still fails: " + "; ".join(works.symptoms()[:3]))]
    if left:
        lines += ["The firewalls differ from before the drill (your own changes?):", *[f"  {x}" for x in left]]
    return Outcome(works.ok, lines, {"answer": record["answer"], "diagnosis": diagnosis.findings,
                                     "fault_already_removed": faults_gone,
                                     "restored": works.ok, "firewall_changes": left, **entry})


def _works_again(lab: Lab) -> workload.Result:
    found: list[workload.Result] = []

    def works() -> bool:
        found.append(workload.run(lab))
        return found[-1].ok
    try:
        wait_until(works, RESTORE_DEADLINE, interval=1.0, what="the workload after the restore")
    except WaitTimeout:
        pass
    return found[-1]


def abandon(lab: Lab, hosts_stay: bool) -> list[str]:
    """For `labctl down`: undo the running drill (only its parts on this machine when the hosts
    are destroyed anyway); problems, if any. The record goes with the lab's state."""
    record = sealed.load(lab)
    if record is None:
        return []
    parts = record["parts"] if hosts_stay else [p for p in record["parts"] if _on_this_machine(p)]
    problems = _restore(lab, parts, check=False)
    if hosts_stay:
        workload.remove(lab)
    sealed.remove(lab)
    return problems


def _on_this_machine(part: dict[str, Any]) -> bool:
    return (part["kind"] == "fault" and part["fault"]["kind"] == "path-drop") or part["kind"] == "link-mtu"


def _restore(lab: Lab, parts: list[dict[str, Any]], check: bool = True) -> list[str]:
    """Undo every part, newest first, whatever the learner did meanwhile; what could not be undone."""
    problems: list[str] = []
    for part in reversed(parts):
        try:
            _undo(lab, part)
        except LabError as exc:
            problems.append(exc.message)
    if problems and check:
        raise LabError("the drill could not be fully undone: " + "; ".join(problems),
                       hint="`labctl up` heals the swarm; `labctl down` removes the lab")
    return problems


def _undo(lab: Lab, part: dict[str, Any]) -> None:
    kind = part["kind"]
    if kind == "fault":
        fault = faults.Fault(**part["fault"])
        if fault.kind in ("leave", "wrong-advertise"):
            host = lab.hosts()[fault.host]
            try:
                info = swarm.swarm_info(host)
                if info.state == "active" and (fault.kind == "leave" or info.node_addr == lab.spec.host(host.name).ip):
                    return  # joined again by the learner
            except LabError:
                pass
        faults.undo(lab, fault)
    elif kind == "rule":
        host = lab.host(part["host"])
        rule = shlex.join(part["rule"])
        host.run(f"while iptables -C {part['chain']} {rule} 2>/dev/null; do iptables -D {part['chain']} {rule}; "
                 "done", sudo=True, timeout=30)
    elif kind in ("ufw", "firewalld"):
        script = base64.b64encode((UFW_RESTORE if kind == "ufw" else FIREWALLD_STOP).encode()).decode()
        res = lab.host(part["host"]).run(f"echo {script} | base64 -d | sh -e", sudo=True, timeout=90)
        if not res.ok:
            raise LabError(f"{part['host']}: {kind} could not be put back: {res.tail(2)}")
    elif kind == "link-mtu":
        if Path(f"/sys/class/net/{part['dev']}").exists():  # gone with its node otherwise
            catalog.local(["ip", "link", "set", "dev", part["dev"], "mtu", str(int(part["mtu"]))])
    elif kind == "overlay-subnet":
        workload.remove(lab, wait=True)  # the next workload creates the overlay as it should be
    elif kind == "nft-table":
        lab.host(part["host"]).run(f"nft delete table {part['table']} 2>/dev/null", sudo=True, timeout=30)
    else:
        raise LabError(f"the drill record has a part of unknown kind {kind!r}")


def report(lab_name: str | None) -> list[dict[str, Any]]:
    return [e for e in sealed.history() if lab_name is None or e.get("lab") == lab_name]

