"""`labctl down`: undo the running drill and the faults, destroy the hosts, check that nothing is left,
then forget the lab."""

from __future__ import annotations

from .. import faults
from ..drills import engine, sealed
from ..errors import LabError
from ..lab import Lab
from ..ui import phase


def down(lab: Lab) -> None:
    """Everything the lab made goes; if anything remains, say what and keep the state for a re-run.
    The caller holds the lab's lock: no `up` can start in a half-removed folder."""
    name = lab.spec.name
    backend = lab.backend()
    problems: list[str] = []
    if sealed.running(lab):
        with phase("undo the running drill") as progress:
            problems += engine.abandon(lab, hosts_stay=backend.keeps_hosts)
            progress.done("undone" if not problems else "partly undone")
    with phase("undo injected faults") as progress:
        # Hosts that stay keep every fault unless it is undone; destroyed hosts take theirs
        # with them, and only the path drops on this machine remain.
        cleared = faults.clear(lab) if backend.keeps_hosts else faults.clear_machine_rules(lab)
        problems += cleared.failed
        progress.done(f"{len(cleared.done)} undone" if cleared.done else "none to undo")
    with phase(f"destroy lab {name}") as progress:
        summary = backend.destroy(progress.note)
        left = backend.leftovers()
        problems += [f"{what} is still there" for what in left]
        if left:
            raise LabError(f"lab '{name}' was not fully removed: {'; '.join(problems)}",
                           hint="its state is kept: run `labctl down` again, or remove what is named by hand")
        progress.done(summary)
    if problems:
        raise LabError(f"lab '{name}' was destroyed, but: {'; '.join(problems)}",
                       hint="its state is kept so `labctl down` can try again; `labctl fault list` "
                            "shows what is recorded")
    lab.close()
    lab.state.remove()
