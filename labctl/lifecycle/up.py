"""`labctl up` as an ordered list of small, idempotent phases over one context.

Each phase looks at what is there before it changes anything, so a re-run on a
ready lab changes nothing, and a re-run after a failure resumes and heals.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

from .. import provisioner, swarm
from ..backends import Choice
from ..backends.base import Boot, OnLine
from ..lab import Lab
from ..ui import Progress, phase
from . import converge


@dataclass
class UpContext:
    """What the phases share: the lab, and what they found or changed."""

    lab: Lab
    changed: bool = False
    nodes: list[swarm.NodeEntry] = field(default_factory=list)


# A phase does its work and returns its one-line summary.
Phase = Callable[[UpContext, Progress], str]


def boot_hosts(ctx: UpContext, progress: Progress) -> str:
    backend = ctx.lab.backend()
    already = backend.ready(progress.note)
    if already is not None:
        return already
    ctx.lab.close()  # the hosts may come back on other endpoints
    boot = backend.up(progress.note)
    ctx.changed |= boot.changed
    return boot.summary


def provision_hosts(ctx: UpContext, progress: Progress) -> str:
    progress.note("installing and starting Docker where needed, on every host at once")
    changes = provisioner.provision_all(list(ctx.lab.hosts().values()))
    made = [f"{host}: {', '.join(c)}" for host, c in changes.items() if c]
    ctx.changed |= bool(made)
    return "; ".join(made) if made else "nothing to change"


def init_swarm(ctx: UpContext, progress: Progress) -> str:
    manager = ctx.lab.spec.manager
    summary = swarm.init_manager(ctx.lab.hosts()[manager.name], manager)
    ctx.changed |= summary != "already the manager"
    return f"{manager.name}: {summary}"


def join_workers(ctx: UpContext, progress: Progress) -> str:
    outcome = swarm.join_workers(ctx.lab.spec, ctx.lab.hosts())
    ctx.changed |= any(v != "already joined" for v in outcome.values())
    return "; ".join(f"{name}: {what}" for name, what in sorted(outcome.items()))


def verify_swarm(ctx: UpContext, progress: Progress) -> str:
    progress.note("waiting for every node to be Ready")
    ctx.nodes = swarm.verify(ctx.lab.spec, ctx.lab.hosts())
    return f"{len(ctx.nodes)} nodes Ready, each advertising its private address"


def converge_overlay(ctx: UpContext, progress: Progress) -> str:
    progress.note("waiting for every host's ingress network to reach every peer")
    pace = ctx.lab.pace()
    settle = (converge.SETTLE_CHANGED if ctx.changed else converge.SETTLE) * pace
    outcome = converge.converge(ctx.lab.spec, ctx.lab.hosts(), progress.note, settle=settle,
                                healed=converge.HEALED * pace)
    ctx.changed |= bool(outcome.rejoined)
    return outcome.summary


def _backend_phase(work: Callable[[OnLine], Boot]) -> Phase:
    def run(ctx: UpContext, progress: Progress) -> str:
        done = work(progress.note)
        ctx.changed |= done.changed
        return done.summary
    return run


def phases(lab: Lab) -> list[tuple[str, Phase]]:
    """The backend's own preparations (the docker provider's node image), then the lab's phases."""
    prepare = [(title, _backend_phase(work)) for title, work in lab.backend().preparations()]
    return [
        *prepare,
        ("boot hosts", boot_hosts),
        ("provision docker and tools", provision_hosts),
        ("swarm init", init_swarm),
        ("join workers", join_workers),
        ("verify swarm", verify_swarm),
        ("overlay data plane converged", converge_overlay),
    ]


def up(lab: Lab, choice: Choice, quiet: bool = False) -> UpContext:
    """Bring the lab up on the chosen provider; the context says what changed."""
    lab.spec = dataclasses.replace(lab.spec, provider=choice.provider)
    lab.state.ensure_dir()
    lab.state.save_spec(lab.spec)  # the Vagrantfile reads it; `down` finds the lab by it
    ctx = UpContext(lab)
    for title, work in phases(lab):
        with phase(title, quiet) as progress:
            progress.done(work(ctx, progress))
    return ctx
