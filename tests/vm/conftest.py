"""The VM suite's bounded form runs on every CI run (up, re-up, the routing-mesh scenario,
diagnose, down); the tests marked vm_full (the other mesh and encrypted-overlay scenarios, a few
minutes each under qemu's software emulation) run with LABCTL_VM_FULL=1."""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("LABCTL_VM_FULL") == "1":
        return
    skip = pytest.mark.skip(reason="part of the full VM suite: LABCTL_VM_FULL=1 runs it")
    for item in items:
        if item.get_closest_marker("vm_full"):
            item.add_marker(skip)
