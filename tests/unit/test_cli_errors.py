"""Bad input gets one line, a hint and an exit code that means something - never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def labctl(home: Path, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
           ) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k not in ("LABCTL_LAB", "LABCTL_DEBUG")}
    full_env.update({"LABCTL_HOME": str(home), **(env or {})})
    proc = subprocess.run([sys.executable, "-m", "labctl", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=60)
    assert "Traceback" not in proc.stderr + proc.stdout
    return proc


def test_command_on_a_lab_that_is_not_up(home: Path) -> None:
    proc = labctl(home, "exec", "manager", "--", "true")
    assert proc.returncode == 1
    assert "lab 'lab' is not up" in proc.stderr
    assert "labctl up" in proc.stderr


def test_unknown_host_is_a_usage_error(home: Path, fake_lab: Path) -> None:
    proc = labctl(home, "exec", "worker-9", "--", "true")
    assert proc.returncode == 2
    assert "no host named 'worker-9'" in proc.stderr
    assert "worker-1 (host2)" in proc.stderr


def test_host_that_does_not_answer_ssh(home: Path, fake_lab: Path) -> None:
    proc = labctl(home, "exec", "host2", "--", "true")
    assert proc.returncode == 1
    assert "worker-1 does not answer SSH at 127.0.0.1:1" in proc.stderr


def test_malformed_lab_file_names_the_line(home: Path, tmp_path: Path) -> None:
    (tmp_path / "labctl.toml").write_text('[lab]\nname = "ok"\nsubnet = "300.1.1.0/24"\n')
    proc = labctl(home, "up", cwd=tmp_path)
    assert proc.returncode == 2
    assert "line 3" in proc.stderr and "lab.subnet" in proc.stderr


def test_unknown_provider(home: Path) -> None:
    proc = labctl(home, "up", "--provider", "hyperv")
    assert proc.returncode == 2
    assert "unknown provider 'hyperv'" in proc.stderr


def test_missing_vagrant_is_reported_with_a_hint(home: Path, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    proc = labctl(home, "up", env={"PATH": str(bin_dir)})
    assert proc.returncode == 3
    assert "Vagrant is not installed" in proc.stderr
    assert "apt-get install vagrant" in proc.stderr
    assert not (home / "labs" / "lab").exists()  # nothing half-made


def test_damaged_state_file_is_named(home: Path, fake_lab: Path) -> None:
    (fake_lab / "state.json").write_text('{"endpoints": {"manager": ')
    proc = labctl(home, "exec", "manager", "--", "true")
    assert proc.returncode == 1
    assert str(fake_lab / "state.json") in proc.stderr
    assert "damaged" in proc.stderr


def test_down_of_a_lab_that_does_not_exist_is_harmless(home: Path) -> None:
    proc = labctl(home, "--lab", "nothing", "down")
    assert proc.returncode == 0
    assert "nothing to remove" in proc.stdout


def test_usage_errors_exit_2(home: Path) -> None:
    assert labctl(home, "no-such-command").returncode == 2
    assert labctl(home, "status", "--format", "fancy").returncode == 2


def test_ctrl_c_says_interrupted_and_exits_130(home: Path, fake_lab: Path) -> None:
    """A host whose sshd accepts but never speaks keeps `exec` waiting; Ctrl-C ends it with one line."""
    import signal
    import socket

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    state = json.loads((fake_lab / "state.json").read_text())
    for ep in state["endpoints"].values():
        ep["port"] = port
    (fake_lab / "state.json").write_text(json.dumps(state))
    env = {k: v for k, v in os.environ.items() if k != "LABCTL_LAB"}
    proc = subprocess.Popen([sys.executable, "-m", "labctl", "exec", "manager", "--", "true"],
                            env={**env, "LABCTL_HOME": str(home)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        listener.settimeout(20)
        conn, _ = listener.accept()  # labctl is connecting: now it waits for a banner
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=5)
        conn.close()
    finally:
        proc.kill()
        listener.close()
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[0] == "error: interrupted" and "Traceback" not in err
