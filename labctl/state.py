"""A lab's state folder: its description, cached SSH endpoints, lock and logs.

Files are written atomically and readable by their owner only; a damaged file
is reported by name with the fix, never as a traceback.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from .errors import LabError
from .paths import lab_dir, labs_dir
from .spec import LAB_NAME_RE, LabSpec, check_lab_name
from .ssh import Endpoint

# Written into every state folder labctl makes: only such a folder is ever deleted.
MARKER = ".labctl-lab"


def write_private(path: Path, text: str) -> None:
    """Write a file atomically, mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class LabState:
    def __init__(self, name: str):
        self.name = check_lab_name(name, "lab name")
        self.dir = lab_dir(name)

    @property
    def spec_path(self) -> Path:
        return self.dir / "lab.json"

    @property
    def state_path(self) -> Path:
        return self.dir / "state.json"

    @property
    def lock_path(self) -> Path:
        return self.dir / "lock"

    @property
    def vagrant_dotfile(self) -> Path:
        return self.dir / ".vagrant"

    @property
    def vagrant_log(self) -> Path:
        return self.dir / "vagrant.log"

    @property
    def vm_path(self) -> Path:
        return self.dir / "vm.json"

    def exists(self) -> bool:
        return self.spec_path.is_file()

    def ensure_dir(self) -> None:
        _check_inside(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.dir, 0o700)
        marker = self.dir / MARKER
        if not marker.exists():
            marker.write_text(f"state of labctl lab {self.name}\n")

    def _read_json(self, path: Path) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text())
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            return data
        except FileNotFoundError:
            return {}
        except (ValueError, OSError) as exc:
            raise LabError(
                f"state file {path} is damaged ({exc})",
                hint=f"delete it and run `labctl --lab {self.name} up`: labctl rebuilds it from what the hosts report",
            ) from None

    def load_spec(self) -> LabSpec:
        data = self._read_json(self.spec_path)
        if not data:
            raise LabError(f"lab '{self.name}' is not up", hint="`labctl up` creates it")
        try:
            return LabSpec.from_json(data)
        except (KeyError, TypeError, LabError) as exc:
            raise LabError(
                f"state file {self.spec_path} is damaged ({exc})",
                hint=f"delete it and run `labctl --lab {self.name} up` (with the same lab file or flags)",
            ) from None

    def save_spec(self, spec: LabSpec) -> None:
        write_private(self.spec_path, json.dumps(spec.to_json(), indent=2) + "\n")

    def load(self) -> dict[str, Any]:
        return self._read_json(self.state_path)

    def save(self, data: dict[str, Any]) -> None:
        write_private(self.state_path, json.dumps(data, indent=2, sort_keys=True) + "\n")

    def endpoints(self) -> dict[str, Endpoint]:
        raw = self.load().get("endpoints", {})
        try:
            return {name: Endpoint.from_json(ep) for name, ep in raw.items()}
        except (KeyError, TypeError, ValueError, AttributeError, LabError) as exc:
            raise LabError(f"state file {self.state_path} is damaged ({exc})",
                           hint="delete it; `labctl up` asks the provider again") from None

    def save_endpoints(self, endpoints: dict[str, Endpoint]) -> None:
        data = self.load()
        data["endpoints"] = {name: ep.to_json() for name, ep in endpoints.items()}
        self.save(data)

    def load_vm(self) -> dict[str, str]:
        """What the VM providers decided at the first `up` (box, libvirt driver): a lab's VMs
        keep them for life."""
        return {k: v for k, v in self._read_json(self.vm_path).items() if isinstance(v, str)}

    def save_vm(self, data: dict[str, str]) -> None:
        write_private(self.vm_path, json.dumps(data, indent=2, sort_keys=True) + "\n")

    def made_by_labctl(self) -> bool:
        return (self.dir / MARKER).is_file() or self.spec_path.is_file()

    def remove(self) -> None:
        """Delete the lab's state folder: only a folder labctl made, inside its own state folder,
        checked right before deleting."""
        if not self.dir.exists() and not self.dir.is_symlink():
            return
        _check_inside(self.dir)
        if not self.made_by_labctl():
            raise LabError(f"{self.dir} was not made by labctl: not deleting it",
                           hint="remove it by hand if it is really yours to remove")
        try:
            shutil.rmtree(self.dir)  # never follows symbolic links inside the folder
        except OSError as exc:
            raise LabError(f"cannot remove the lab's state folder {self.dir}: {exc.strerror or exc}") from None


def _check_inside(path: Path) -> None:
    """Refuse a lab folder that is a symbolic link or resolves outside labctl's own labs folder."""
    root = labs_dir().resolve()
    if path.is_symlink() or path.resolve().parent != root:
        raise LabError(f"refusing to touch {path}: it is not a folder of its own inside {root}",
                       hint="a lab's state folder must be a plain folder in labctl's state folder")


def all_labs() -> list[str]:
    if not labs_dir().is_dir():
        return []
    return sorted(p.name for p in labs_dir().iterdir()
                  if LAB_NAME_RE.fullmatch(p.name) and not p.is_symlink() and (p / "lab.json").is_file())
