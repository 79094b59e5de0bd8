"""Copy images from this machine's Docker into every host (no registry needed)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from . import validate
from .errors import LabError, UsageError
from .local_docker import docker
from .ssh import Host, fan_out, raise_first


def export(names: list[str], workdir: Path) -> Path:
    """One tarball of the named local images (or a tarball given as the only name)."""
    if len(names) == 1 and Path(names[0]).is_file():
        return Path(names[0])
    for name in names:
        if Path(name).suffix in (".tar", ".gz") and not Path(name).exists():
            raise UsageError(f"tarball {name} does not exist")
        validate.image(name, hint="give local image names (alpine, nginx:1.27) or one `docker save` tarball")
        if not docker("image", "inspect", name).ok:
            raise UsageError(f"image {name} is not in this machine's Docker",
                             hint=f"`docker pull {name}` or build it first, or pass a `docker save` tarball")
    path = workdir / "images.tar"
    docker("save", "-o", str(path), *names, timeout=900, check=True)
    return path


def load_into(host: Host, data: bytes) -> str:
    result = host.run("docker load", sudo=True, stdin=data, timeout=900)
    if not result.ok:
        raise LabError(f"{host.name}: `docker load` failed: {result.tail(2)}")
    return ", ".join(line.split(": ", 1)[-1] for line in result.out.splitlines() if "Loaded" in line)


def load(hosts: list[Host], names: list[str]) -> dict[str, str]:
    with tempfile.TemporaryDirectory(prefix="labctl-images-") as tmp:
        tarball = export(names, Path(tmp))
        try:
            data = tarball.read_bytes()  # read once, sent to every host at once
        except OSError as exc:
            raise UsageError(f"cannot read {tarball}: {exc.strerror or exc}") from None
        return raise_first(fan_out(hosts, lambda h: load_into(h, data)))
