"""Fixtures of the unit tests that run labctl as a user would, against state made by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labctl.spec import build_spec


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def fake_lab(home: Path) -> Path:
    """A lab's state as `up` leaves it, pointing at an SSH port where nothing listens."""
    d = home / "labs" / "lab"
    d.mkdir(parents=True)
    spec = build_spec({"lab": {"provider": "docker"}})
    (d / "lab.json").write_text(json.dumps(spec.to_json()))
    endpoints = {h: {"hostname": "127.0.0.1", "port": 1, "user": "vagrant", "key_file": "/nonexistent"}
                 for h in spec.host_names}
    (d / "state.json").write_text(json.dumps({"endpoints": endpoints}))
    return d
