"""The interface every backend offers to the rest of labctl."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ..ssh import Endpoint


class Backend(Protocol):
    name: str

    def up(self, on_line: Callable[[str], None]) -> None:
        """Create or start every host (idempotent)."""

    def endpoints(self) -> dict[str, Endpoint]:
        """SSH endpoints of the hosts that run."""

    def states(self) -> dict[str, str]:
        """Each host's state as its provider reports it (running, stopped, not created...)."""

    def destroy(self, on_line: Callable[[str], None]) -> None:
        """Remove every host and whatever the backend made for the lab."""

    def leftovers(self) -> list[str]:
        """What `destroy` should have removed and is still there (empty: all gone)."""
