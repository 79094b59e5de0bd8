"""`labctl up` as an ordered list of idempotent phases.

Each phase looks at what is there before it changes anything, so a re-run on a
ready lab changes nothing, and a re-run after a failure resumes and heals.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from . import node_image, provision, swarm
from .errors import LabError
from .lab import Lab
from .providers import Choice
from .ssh import Host, fan_out, split_results
from .ui import Step, phase

# A phase: title and the work, which returns its one-line summary.
PhaseFn = Callable[[Step], str]


@dataclass
class UpResult:
    provider: str
    nodes: list[swarm.NodeEntry]
    changed: bool


def reachable(hosts: dict[str, Host]) -> bool:
    """Do all hosts answer SSH now? (The fast path that spares Vagrant's seconds.)"""
    answered, failed = split_results(fan_out(list(hosts.values()), lambda h: h.run("true", timeout=5).ok))
    return not failed and all(answered.values())


class UpPipeline:
    def __init__(self, lab: Lab, choice: Choice, quiet: bool = False):
        self.lab = lab
        self.lab.spec = dataclasses.replace(lab.spec, provider=choice.provider)
        self.choice = choice
        self.quiet = quiet
        self.changed = False
        self.nodes: list[swarm.NodeEntry] = []

    @property
    def spec(self):  # type: ignore[no-untyped-def]
        return self.lab.spec

    def phases(self) -> list[tuple[str, PhaseFn]]:
        phases: list[tuple[str, PhaseFn]] = []
        if self.spec.provider == "docker" and not node_image.present(self.spec.node_image):
            phases.append((f"build node image {self.spec.node_image}", self.build_image))
        phases += [
            ("boot hosts", self.boot),
            ("provision docker and tools", self.provision),
            ("swarm init", self.init),
            ("join workers", self.join),
            ("verify swarm", self.verify),
        ]
        return phases

    def run(self) -> UpResult:
        self.lab.state.ensure_dir()
        self.lab.state.save_spec(self.spec)  # the Vagrantfile reads it; `down` finds the lab by it
        for title, work in self.phases():
            with phase(title, self.quiet) as step:
                step.done(work(step))
        return UpResult(self.spec.provider or "", self.nodes, self.changed)

    def build_image(self, step: Step) -> str:
        step.note("node image missing: building it (about a minute)")
        method = node_image.build(self.spec.node_image, "auto", step.note)
        self.changed = True
        return f"built with {method}"

    def boot(self, step: Step) -> str:
        if self.spec.existing:
            self.lab.backend().up(step.note)
            return f"{len(self.spec.hosts)} existing hosts answer SSH"
        try:
            known = self.lab.state.endpoints()
        except LabError as exc:
            # Only a cache of what Vagrant reports: rebuild it rather than stop.
            step.note(f"{exc.message}: asking Vagrant again")
            self.lab.state.save({})
            known = {}
        if known.keys() >= set(self.spec.host_names):
            step.note("checking whether the hosts already answer")
            if reachable(self.lab.hosts(connect_timeout=3)):
                return "all hosts already running"
        self.lab.close()
        backend = self.lab.backend()
        backend.up(step.note)
        endpoints = backend.endpoints()
        missing = [h for h in self.spec.host_names if h not in endpoints]
        if missing:
            raise LabError(f"Vagrant reports no SSH endpoint for {', '.join(missing)}",
                           hint=f"see {self.lab.state.vagrant_log}")
        self.lab.state.save_endpoints(endpoints)
        self.changed = True
        return f"{len(endpoints)} hosts up ({self.spec.provider})"

    def provision(self, step: Step) -> str:
        step.note("installing and starting Docker where needed, on every host at once")
        changes = provision.provision_all(list(self.lab.hosts().values()))
        made = [f"{host}: {', '.join(c)}" for host, c in changes.items() if c]
        self.changed |= bool(made)
        return "; ".join(made) if made else "nothing to change"

    def init(self, step: Step) -> str:
        manager = self.spec.manager
        summary = swarm.init_manager(self.lab.hosts()[manager.name], manager)
        self.changed |= summary != "already the manager"
        return f"{manager.name}: {summary}"

    def join(self, step: Step) -> str:
        outcome = swarm.join_workers(self.spec, self.lab.hosts())
        self.changed |= any(v != "already joined" for v in outcome.values())
        return "; ".join(f"{name}: {what}" for name, what in sorted(outcome.items()))

    def verify(self, step: Step) -> str:
        step.note("waiting for every node to be Ready")
        self.nodes = swarm.verify(self.spec, self.lab.hosts())
        return f"{len(self.nodes)} nodes Ready, each advertising its private address"
