"""Running and cleaning scenarios on a lab: what `labctl scenario` asks for, without the rendering."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..errors import LabError, UsageError
from ..lab import Lab
from ..ui import phase
from . import images, limits
from .catalog import SCENARIOS
from .engine import Ctx, Printer, Scenario, ScenarioResult, clean_up, run_scenario, snapshot


def pick(names: list[str]) -> list[Scenario]:
    if names == ["all"]:
        return list(SCENARIOS.values())
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown or "all" in names:
        raise UsageError(f"no scenario named {', '.join(unknown) or 'all (with others)'}",
                         hint=f"scenarios: {', '.join(SCENARIOS)}, or `all` alone; commands: list, run, clean "
                              "(`labctl scenario --help`)")
    return [SCENARIOS[n] for n in dict.fromkeys(names)]


def prepare(lab: Lab, image_mode: str | None, alpine: str | None, nginx: str | None,
            say: Callable[[str], None]) -> Ctx:
    """What the scenarios need of the lab: every host in the swarm, its limits, the images."""
    hosts = lab.hosts()
    found = limits.detect(hosts)
    limits.require_swarm(found)
    chosen = images.choose(hosts, lab.spec.manager.name, image_mode, alpine, nginx, say)
    say(f"lab '{lab.spec.name}': images {chosen.alpine}, {chosen.nginx} ({chosen.reason})")
    for line in found.summary():
        say(f"lab '{lab.spec.name}': {line}")
    if found.missing("ipvs"):
        say("  -> routing-mesh and service-VIP checks are skipped; each scenario shows the point with "
            "publish mode=host or --endpoint-mode dnsrr instead, and says so")
    pace = lab.pace()
    if pace > 1:
        say(f"lab '{lab.spec.name}': its VMs run under qemu's software emulation: the checks wait up to "
            f"{pace:g}x longer for the swarm to converge")
    return Ctx(lab.spec, hosts, chosen, found, pace=pace)



def run(ctx: Ctx, chosen: list[Scenario], printer: Printer, keep: bool) -> list[ScenarioResult]:
    """Each scenario in turn; an interrupted one ends the run (its clean-up has run)."""
    results: list[ScenarioResult] = []
    for scenario in chosen:
        result = run_scenario(scenario, ctx, printer, keep)
        results.append(result)
        if result.interrupted:
            break
    return results


@dataclass(frozen=True)
class Cleaned:
    scenario: str
    removed: int


def clean(lab: Lab, chosen: list[Scenario]) -> list[Cleaned]:
    """Remove exactly what the scenarios make (after `run --keep`, or an interrupted run), and
    check that it is gone; what else runs on the hosts is left alone."""
    hosts = lab.hosts()
    cleaned = []
    for scenario in chosen:
        with phase(f"clean up {scenario.name}") as progress:
            before = snapshot(hosts)
            theirs = {h: {k: v for k, v in items.items() if scenario.owns(lab.spec, h, v)}
                      for h, items in before.items()}
            others = {h: {k: v for k, v in items.items() if k not in theirs[h]} for h, items in before.items()}
            # Done when every host holds no more than what is not the scenario's.
            done = clean_up(scenario, lab.spec, hosts, others, wait=60 * lab.pace())
            if not done.ok:
                raise LabError(f"could not remove: {', '.join(done.leftovers + done.unreachable)}",
                               hint="remove them by hand with `labctl exec HOST -- sudo docker ...`")
            removed = sum(len(items) for items in theirs.values())
            progress.done(f"removed {removed} item(s)" if removed else "nothing to remove")
        cleaned.append(Cleaned(scenario.name, removed))
    return cleaned
