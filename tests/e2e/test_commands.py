"""exec, images load and status output formats against the real lab."""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.conftest import LabRun

pytestmark = pytest.mark.e2e

IMAGE = "labctl-test/tiny:1"


@pytest.fixture(scope="module")
def tiny_image(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A one-file image made here (no registry): busybox from Debian's busybox-static."""
    root = tmp_path_factory.mktemp("tiny")
    tar_path = root / "rootfs.tar"
    with tarfile.open(tar_path, "w") as tar:
        tar.add("/bin/busybox", arcname="bin/busybox")
    subprocess.run(["docker", "import", "-c", 'CMD ["/bin/busybox", "true"]', str(tar_path), IMAGE],
                   check=True, capture_output=True)
    yield IMAGE
    subprocess.run(["docker", "rmi", "-f", IMAGE], capture_output=True)


def test_exec_passes_output_and_exit_code(lab: LabRun) -> None:
    proc = lab("exec", "host1", "--", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert proc.returncode == 7
    assert proc.stdout == "out\n"
    assert proc.stderr == "err\n"
    assert lab("exec", "worker-2", "--", "hostname").stdout.strip() == "worker-2"
    assert lab("exec", "worker-1", "--", "ip -4 -o addr show eth1 | wc -l").stdout.strip() == "1"


def test_images_load_copies_an_image_into_every_host(lab: LabRun, tiny_image: str, tmp_path: Path) -> None:
    for host in ("manager", "worker-1", "worker-2"):
        lab.sh(host, f"docker rmi -f {tiny_image} >/dev/null 2>&1; true")
    proc = lab("images", "load", tiny_image)
    assert proc.returncode == 0, proc.stderr
    for host in ("manager", "worker-1", "worker-2"):
        assert lab.sh(host, f"docker run --rm {tiny_image} /bin/busybox echo hello").stdout.strip() == "hello"
    # and from a `docker save` tarball
    tarball = tmp_path / "tiny.tar"
    subprocess.run(["docker", "save", "-o", str(tarball), tiny_image], check=True)
    lab.sh("worker-2", f"docker rmi -f {tiny_image}")
    assert lab("images", "load", str(tarball)).returncode == 0
    assert lab.sh("worker-2", f"docker image inspect {tiny_image} >/dev/null").returncode == 0
    for host in ("manager", "worker-1", "worker-2"):
        lab.sh(host, f"docker rmi -f {tiny_image}")


def test_images_load_of_a_missing_image_is_a_usage_error(lab: LabRun) -> None:
    proc = lab("images", "load", "no-such-image:0")
    assert proc.returncode == 2
    assert "not in this machine's Docker" in proc.stderr


def test_status_formats(lab: LabRun) -> None:
    plain = lab("status", "--format", "plain", check=True).stdout
    assert "manager (host1)" in plain and "worker-2 (host3)" in plain and "ready" in plain
    markdown = lab("status", "--format", "markdown", check=True).stdout
    assert "| manager (host1)" in markdown and "|---" in markdown.replace(":", "-")


def test_images_load_into_a_host_whose_docker_is_down_names_it(lab: LabRun, tiny_image: str) -> None:
    """The remote `docker load` ends without reading its input: that is a failed load on that host,
    not a lost connection."""
    lab("fault", "add", "worker-2", "docker-stop", check=True, timeout=180)
    try:
        proc = lab("images", "load", tiny_image, timeout=300)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "worker-2: `docker load` failed" in proc.stderr and "connection lost" not in proc.stderr, proc.stderr
    finally:
        lab("fault", "clear", check=True, timeout=300)
    for host in ("manager", "worker-1", "worker-2"):
        lab.sh(host, f"docker rmi -f {tiny_image} >/dev/null 2>&1; true")
