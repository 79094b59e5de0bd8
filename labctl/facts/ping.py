"""What ping (iputils or busybox) printed: the summary line, or that the name did not resolve."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from .. import validate
from ..ssh import Result
from .base import Fact

_SUMMARY = re.compile(r"(\d+) packets transmitted, (\d+) (?:packets )?received")
_NO_NAME = ("bad address", "unknown host", "name or service not known", "name does not resolve",
            "temporary failure in name resolution", "could not resolve")


@dataclass(frozen=True)
class PingSummary:
    transmitted: int
    received: int | None  # None: no summary line (ping never started)
    unresolved: bool  # ping said the name does not resolve


def parse_ping(text: str) -> PingSummary:
    match = _SUMMARY.search(text)
    lowered = text.lower()
    return PingSummary(int(match.group(1)) if match else 0, int(match.group(2)) if match else None,
                       any(marker in lowered for marker in _NO_NAME))


@dataclass(frozen=True)
class ContainerPing(Fact[PingSummary]):
    """`ping` run inside a container (count echoes, `interval` s apart, 1 s to wait for each)."""

    container: str
    target: str
    count: int = 3
    interval: float = 1.0
    timeout = 30.0

    def __post_init__(self) -> None:
        validate.container(self.container)
        validate.ipv4(self.target)

    @property
    def command(self) -> str:
        gap = "" if self.interval == 1.0 else f" -i {self.interval:g}"
        return (f"docker exec {shlex.quote(self.container)} ping -c {int(self.count)}{gap} -W 1 "
                f"{shlex.quote(self.target)}")

    def parse(self, result: Result) -> PingSummary:
        return parse_ping(result.out + "\n" + result.err)
