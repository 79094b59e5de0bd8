"""Time `labctl up` against what typical Vagrant swarm labs do, in the same run.

Cold: from nothing to three Ready nodes (the node image or VM box already built).
Warm: the same command again on a ready lab.
Baseline: `vagrant up`, then the same provisioners and swarm commands through
`vagrant ssh`, host after host; warm baseline: `vagrant up` + re-provisioning.
With --provider libvirt both boot three VMs, with the accelerator labctl finds
(KVM, or qemu's TCG where KVM cannot run a guest), which is printed.

    python bench/bench_up.py [--runs 3] [--provider docker|libvirt]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from labctl import libvirt_host, local_docker, vm_box  # noqa: E402
from labctl.provisioner import PROVISIONERS  # noqa: E402
from labctl.spec import build_spec  # noqa: E402
from labctl.wait import wait_until  # noqa: E402

LAB = "bench"
SUBNET = "192.168.64.0/24"


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    fn()
    return time.monotonic() - start


def run(cmd: list[str], env: dict[str, str], stdin: bytes | None = None) -> str:
    proc = subprocess.run(cmd, env=env, input=stdin, capture_output=True, timeout=900)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout.decode()}\n{proc.stderr.decode()}")
    return proc.stdout.decode()


class Labctl:
    def __init__(self, home: Path, provider: str):
        self.env = {**os.environ, "LABCTL_HOME": str(home), "VAGRANT_CHECKPOINT_DISABLE": "1"}
        self.provider = provider
        home.mkdir(parents=True, exist_ok=True)
        self.lab_file = home / "labctl.toml"
        box = f'box = "{vm_box.BOX}"\n' if provider == "libvirt" else ""
        self.lab_file.write_text(f'[lab]\nname = "{LAB}"\nsubnet = "{SUBNET}"\nprovider = "{provider}"\n{box}')

    def __call__(self, *args: str) -> str:
        return run([sys.executable, "-m", "labctl", "--lab-file", str(self.lab_file), *args], self.env)

    def cold(self) -> None:
        self("up")

    def warm(self) -> None:
        self("up")

    def down(self) -> None:
        self("down")


class Baseline:
    """A plain Vagrant swarm lab: the same Vagrantfile, one command at a time."""

    def __init__(self, home: Path, provider: str, accel: libvirt_host.Accel | None):
        spec = build_spec({"lab": {"name": LAB + "-base", "subnet": SUBNET, "provider": provider}})
        self.spec, self.provider = spec, provider
        home.mkdir(parents=True, exist_ok=True)
        (home / "lab.json").write_text(json.dumps(spec.to_json()))
        self.env = {**os.environ, "VAGRANT_CHECKPOINT_DISABLE": "1", "VAGRANT_CWD": str(ROOT),
                    "VAGRANT_DOTFILE_PATH": str(home / ".vagrant"), "LABCTL_LAB_JSON": str(home / "lab.json"),
                    "VAGRANT_DEFAULT_PROVIDER": provider}
        if accel is not None:  # the same box and accelerator as labctl's VMs
            self.env.update(LABCTL_BOX=vm_box.BOX, LABCTL_LIBVIRT_DRIVER=accel.driver)
        self.provision = b"".join((ROOT / "provision" / n).read_bytes() for n in PROVISIONERS)

    def ssh(self, host: str, command: str, stdin: bytes | None = None) -> str:
        return run(["vagrant", "ssh", host, "-c", command], self.env, stdin)

    def provision_all(self) -> None:
        for host in self.spec.host_names:
            self.ssh(host, "sudo sh -s", self.provision)

    def cold(self) -> None:
        if self.provider == "docker":
            local_docker.ensure_network(self.spec)
        run(["vagrant", "up", "--provider", self.provider], self.env)
        self.provision_all()
        m = self.spec.manager
        self.ssh(m.name, f"sudo docker swarm init --advertise-addr {m.ip} --listen-addr {m.ip}:2377")
        token = self.ssh(m.name, "sudo docker swarm join-token -q worker").strip()
        for w in self.spec.workers:
            self.ssh(w.name, f"sudo docker swarm join --token {token} --advertise-addr {w.ip} {m.ip}:2377")
        self.wait_ready()

    def wait_ready(self) -> None:
        wait_until(lambda: self.ssh(self.spec.manager.name, "sudo docker node ls").count(" Ready ") >= 3,
                   600, "3 Ready nodes", interval=0.5)

    def warm(self) -> None:
        run(["vagrant", "up", "--provider", self.provider], self.env)
        self.provision_all()
        self.wait_ready()

    def down(self) -> None:
        run(["vagrant", "destroy", "-f"], self.env)
        if self.provider == "docker":
            local_docker.remove_lab_leftovers(self.spec.name, lambda _: None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--provider", choices=("docker", "libvirt"), default="docker")
    args = parser.parse_args()
    accel = None
    if args.provider == "libvirt":
        # What labctl's own preparation does before its first boot, so neither side pays for it.
        for ready in (libvirt_host.ensure_kvm_device(), libvirt_host.ensure_daemons(), libvirt_host.ensure_pool()):
            if ready:
                print(ready)
        if not vm_box.added(vm_box.BOX):
            print(f"building {vm_box.BOX} first (not timed)", flush=True)
            vm_box.build(lambda line: None)
        accel = libvirt_host.choose_accel(vm_box.kernel())
        print(f"VMs run with {accel.describe()}", flush=True)
    results: dict[str, list[float]] = {k: [] for k in ("labctl cold", "labctl warm", "baseline cold",
                                                       "baseline warm")}
    with tempfile.TemporaryDirectory(prefix="labctl-bench-") as tmp:
        labctl = Labctl(Path(tmp) / "home", args.provider)
        baseline = Baseline(Path(tmp) / "base", args.provider, accel)
        for i in range(args.runs):
            for name, tool in (("labctl", labctl), ("baseline", baseline)):
                try:
                    results[f"{name} cold"].append(timed(tool.cold))
                    results[f"{name} warm"].append(timed(tool.warm))
                finally:
                    tool.down()
            print(f"run {i + 1}/{args.runs}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in results.items()),
                  flush=True)
    med = {k: statistics.median(v) for k, v in results.items()}
    print()
    print(f"{'':16}{'median':>10}")
    for key, value in med.items():
        print(f"{key:16}{value:>9.1f}s")
    cold_target, warm_target = ("300 s", "60 s") if args.provider == "libvirt" else ("45 s", "5 s")
    mode = f" [{accel.describe()}]" if accel else ""
    print(f"\ncold{mode}: labctl {med['labctl cold']:.1f} s vs baseline {med['baseline cold']:.1f} s "
          f"-> {med['baseline cold'] / med['labctl cold']:.1f}x faster (target <= {cold_target})")
    print(f"warm: labctl {med['labctl warm']:.1f} s vs baseline {med['baseline warm']:.1f} s "
          f"-> {med['baseline warm'] / med['labctl warm']:.1f}x faster (target <= {warm_target})")


if __name__ == "__main__":
    main()
