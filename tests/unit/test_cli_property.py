"""Property: whatever the arguments, environment and lab files - random or hostile - labctl answers
with a documented exit code, at most one `error:` line (and a `hint:` line), never a traceback, and
touches nothing outside its own state folder.

The CLI runs in-process through labctl.cli.main (its error handling is what users see). It can
never reach a real lab or host: the only lab is a fake one whose SSH endpoints are a closed port on
127.0.0.1, PATH holds no tool (no docker, vagrant, iptables or ssh: a command that needs one exits 3),
and `up` and `down` are not generated - `up` of a lab file with existing hosts would SSH to whatever
address the file names, and `down` removes docker containers by lab name on this machine's dockerd.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import sys
import uuid
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labctl import cli
from labctl.spec import build_spec

EXIT_CODES = {0, 1, 2, 3, 4, 130}
MARKER = Path(f"/tmp/labctl-property-{uuid.uuid4().hex[:10]}")  # what a hostile value would create
HOSTILE = [
    f"x;touch {MARKER}", f"$(touch {MARKER})", f"`touch {MARKER}`", f"a|touch {MARKER}", f"x && touch {MARKER}",
    f"'; touch {MARKER}; '", "..", "/", "../../etc", "-rf", "--help", "é", "名前", "a" * 5000, "", " ", "\n",
    "x\ny", "%s%n", "{{json .}}", "[red]markup[/red]", "²", "٣/tcp", "²/udp", "nan", "inf", "-1", "1e309",
]
VALID = ["lab", "manager", "worker-1", "host2", "alpine", "nginx:1.27", "4789/udp", "7946/tcp", "eth0",
         "192.168.56.99", "1400", "10", "container01-alpine"]
VERBS = [  # every command but `up` and `down` (see above)
    ["status"], ["status", "--all"], ["status", "--json"], ["exec"], ["ssh"], ["images", "load"],
    ["images", "build-node", "--image"], ["scenario", "list"], ["scenario", "run"], ["scenario", "clean"],
    ["diagnose"], ["diagnose", "ping"], ["capture"], ["fault", "add"], ["fault", "list"], ["fault", "clear"],
]
OPTIONS = ["--json", "--images", "--alpine-image", "--nginx-image", "--report", "--save-evidence", "--write",
           "--seconds", "--count", "--port", "--peer", "--addr", "--mtu", "--action", "--direction", "--timeout",
           "--format", "--keep", "--strict", "--vxlan", "--filter", "--", "block", "path-drop", "mtu",
           "docker-stop", "leave", "wrong-advertise", "all", "standalone-overlay", "default-bridge", "ping"]

values = st.one_of(
    st.sampled_from(HOSTILE), st.sampled_from(VALID),
    st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=40),
)
words = st.one_of(values, st.sampled_from(OPTIONS))
LAB_FILE = "@lab-file"  # replaced by the path of the generated lab file
global_options = st.lists(st.one_of(st.tuples(st.sampled_from(["--lab", "--lab-file", "--wait"]), values),
                                    st.just(("--lab-file", LAB_FILE))), max_size=2)
argv = st.tuples(global_options, st.sampled_from(VERBS), st.lists(words, max_size=6)).map(
    lambda t: [w for pair in t[0] for w in pair] + t[1] + t[2])


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(value)  # a JSON string is a TOML basic string


lab_keys = st.sampled_from(["name", "subnet", "provider", "box", "node_image", "memory", "cpus", "ssh_user",
                            "ssh_key", "host_keys", "bogus"])
scalars = st.one_of(values, st.integers(-2**63, 2**63 - 1), st.booleans())
lab_files = st.one_of(
    st.text(max_size=200),  # anything, mostly not TOML
    st.tuples(st.dictionaries(lab_keys, scalars, max_size=5),
              st.dictionaries(values, st.dictionaries(st.sampled_from(["role", "ip", "ssh_host", "ssh_port"]),
                                                      scalars, max_size=3), max_size=3)).map(
        lambda t: "[lab]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in t[0].items())
        + "".join(f"[hosts.{json.dumps(h)}]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in f.items())
                  for h, f in t[1].items())),
)
json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), values),
                           lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(values, inner, max_size=3)), max_leaves=8)
state_files = st.one_of(st.none(), st.text(max_size=80), json_values.map(json.dumps))
# fault records: the right keys (mostly), anything in them
fault_records = st.lists(st.dictionaries(st.sampled_from(["id", "host", "kind", "params", "undo", "description"]),
                                         st.one_of(json_values, st.sampled_from(["manager", "mtu", "block"]))),
                         max_size=2).map(json.dumps)
environments = st.dictionaries(st.sampled_from(["LABCTL_LAB", "LABCTL_ALPINE_IMAGE", "LABCTL_NGINX_IMAGE",
                                                "LABCTL_SCENARIO_IMAGES", "LABCTL_PROVIDER"]), values, max_size=2)


def tree(root: Path) -> dict[str, str]:
    """Every file and folder under root with a digest of its content (a snapshot to compare)."""
    found = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        found[rel] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def run_cli(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code: Any = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        old = sys.argv
        sys.argv = ["labctl", *args]
        try:
            cli.main()
        except SystemExit as exc:
            code = exc.code
        finally:
            sys.argv = old
    return (code if isinstance(code, int) else 1), out.getvalue(), err.getvalue()


def test_any_input_gives_a_documented_exit_and_one_error_line(tmp_path: Path) -> None:
    home, files, work, sentinel = (tmp_path / d for d in ("home", "files", "work", "sentinel"))
    for d in (files, work, sentinel / "inner"):
        d.mkdir(parents=True)
    (sentinel / "keep.txt").write_text("must not change\n")
    (sentinel / "inner" / "lab.json").write_text("{}\n")
    spec = build_spec({"lab": {"provider": "docker"}})
    good_state = json.dumps({"endpoints": {h: {"hostname": "127.0.0.1", "port": 1, "user": "vagrant",
                                               "key_file": "/nonexistent"} for h in spec.host_names}})
    before = tree(sentinel)
    saved_env = dict(os.environ)
    saved_cwd = os.getcwd()

    # LABCTL_PROPERTY_EXAMPLES: more examples for a longer search (random seed when set)
    more = int(os.environ.get("LABCTL_PROPERTY_EXAMPLES", "0"))

    @settings(max_examples=more or 200, deadline=None, derandomize=not more, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(args=argv, lab_file=lab_files, lab_json=st.one_of(st.just(json.dumps(spec.to_json())), state_files),
           state_json=st.one_of(st.just(good_state), state_files), faults_json=st.one_of(state_files, fault_records),
           env=environments)
    def example(args: list[str], lab_file: str, lab_json: str | None, state_json: str | None,
                faults_json: str | None, env: dict[str, str]) -> None:
        shutil.rmtree(home, ignore_errors=True)
        lab = home / "labs" / "lab"
        lab.mkdir(parents=True)
        for name, content in (("lab.json", lab_json), ("state.json", state_json), ("faults.json", faults_json)):
            if content is not None:
                (lab / name).write_text(content)
        (files / "lab.toml").write_text(lab_file)
        args = [str(files / "lab.toml") if a == LAB_FILE else a for a in args]
        os.environ.clear()
        os.environ.update({"LABCTL_HOME": str(home), "PATH": str(tmp_path / "no-tools"), "HOME": str(tmp_path),
                           "LABCTL_KNOWN_HOSTS": str(home / "known_hosts"), **env})
        os.chdir(work)
        try:
            code, out, err = run_cli(args)
        finally:
            os.environ.clear()
            os.environ.update(saved_env)
            os.chdir(saved_cwd)
        shown = f"labctl {args!r} -> {code}\nstdout: {out[-2000:]}\nstderr: {err[-2000:]}"
        assert code in EXIT_CODES, shown
        assert "Traceback" not in out + err, shown
        lines = [line for line in err.splitlines() if line.strip()]
        if lines:
            assert lines[0].startswith("error: "), shown
            assert len(lines) == 1 or (len(lines) == 2 and lines[1].startswith("hint: ")), shown
        assert not MARKER.exists(), shown
        assert list(work.iterdir()) == [], shown
        assert tree(sentinel) == before, shown
        assert {p.name for p in tmp_path.iterdir()} == {"home", "files", "work", "sentinel"}, shown

    example()
