"""Where labctl keeps a lab's state, and where its own files are."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PROVISION_DIR = PROJECT_ROOT / "provision"
VAGRANTFILE_DIR = PROJECT_ROOT


def labctl_home() -> Path:
    """Root of all labs' state; LABCTL_HOME overrides it (tests use their own)."""
    env = os.environ.get("LABCTL_HOME")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "labctl"


def labs_dir() -> Path:
    return labctl_home() / "labs"


def lab_dir(name: str) -> Path:
    return labs_dir() / name
