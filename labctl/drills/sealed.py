"""The running drill's record, sealed: encrypted with a key kept outside the lab's folder, so a
learner looking through the lab's files does not read the answer by accident. The learner's
history of finished drills is plain JSON: it names faults only once they were found or shown."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from ..errors import LabError
from ..lab import Lab
from ..paths import labctl_home
from ..state import write_private

RECORD = "drill.sealed"


def _key_path() -> Path:
    return labctl_home() / "drill.key"


def _fernet() -> Fernet:
    path = _key_path()
    try:
        return Fernet(path.read_bytes().strip())
    except FileNotFoundError:
        key = Fernet.generate_key()
        path.parent.mkdir(parents=True, exist_ok=True)
        write_private(path, key.decode() + "\n")
        return Fernet(key)
    except (ValueError, OSError) as exc:
        raise LabError(f"the drill key {path} cannot be read ({exc})",
                       hint="a running drill cannot be read without it: `labctl down` restores the lab "
                            "anyway by destroying it") from None


def _record_path(lab: Lab) -> Path:
    return lab.state.dir / RECORD


def running(lab: Lab) -> bool:
    return _record_path(lab).exists()


def save(lab: Lab, data: dict[str, Any]) -> None:
    token = _fernet().encrypt(json.dumps(data).encode())
    write_private(_record_path(lab), token.decode() + "\n")


def load(lab: Lab) -> dict[str, Any] | None:
    """The running drill (None: none runs)."""
    path = _record_path(lab)
    try:
        token = path.read_bytes().strip()
    except FileNotFoundError:
        return None
    try:
        data = json.loads(_fernet().decrypt(token))
    except (InvalidToken, ValueError) as exc:
        raise LabError(f"the running drill's record {path} cannot be read ({type(exc).__name__})",
                       hint="its key changed or the file was edited: `labctl down` destroys the lab and "
                            "the drill with it") from None
    if not isinstance(data, dict):
        raise LabError(f"the running drill's record {path} is damaged")
    return data


def remove(lab: Lab) -> None:
    _record_path(lab).unlink(missing_ok=True)


def history_path() -> Path:
    return labctl_home() / "drill-history.json"


def history() -> list[dict[str, Any]]:
    path = history_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except (ValueError, OSError) as exc:
        raise LabError(f"the drill history {path} is damaged ({exc})",
                       hint="move it away: a new one is started") from None
    return [d for d in data if isinstance(d, dict)] if isinstance(data, list) else []


def add_history(entry: dict[str, Any]) -> None:
    items = [*history(), entry]
    path = history_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, json.dumps(items, indent=1) + "\n")
