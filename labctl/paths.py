"""Where labctl keeps a lab's state, and where its own files are."""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
from importlib import resources
from pathlib import Path

_resource_files = contextlib.ExitStack()
atexit.register(_resource_files.close)


@functools.cache
def resource_dir() -> Path:
    """labctl's own files - the Vagrantfile and provision/ - as a real directory.

    They are package data of labctl (labctl/_resources): copied into a built wheel,
    and symbolic links to the checkout's top-level Vagrantfile and provision/ in a
    source checkout or an editable install. Vagrant and the build scripts need a
    path on disk: an installed wheel is one; a zipped package (Python >= 3.12) is
    extracted for the life of the process."""
    return _resource_files.enter_context(resources.as_file(resources.files("labctl") / "_resources"))


def vagrantfile_dir() -> Path:
    return resource_dir()


def provision_dir() -> Path:
    return (resource_dir() / "provision").resolve()  # the checkout's own path in messages


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
