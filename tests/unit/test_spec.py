import json
from pathlib import Path

import pytest

from labctl.errors import UsageError
from labctl.spec import DEFAULT_SUBNET, LabSpec, build_spec, free_subnet, load_spec


def test_defaults_give_three_hosts_on_the_private_subnet() -> None:
    spec = build_spec({})
    assert spec.name == "lab"
    assert [(h.name, h.role, h.ip) for h in spec.hosts] == [
        ("manager", "manager", "192.168.56.10"),
        ("worker-1", "worker", "192.168.56.11"),
        ("worker-2", "worker", "192.168.56.12"),
    ]
    assert spec.manager.name == "manager"
    assert [w.name for w in spec.workers] == ["worker-1", "worker-2"]


def test_tutorial_aliases_resolve_to_hosts() -> None:
    spec = build_spec({})
    assert spec.host("host1").name == "manager"
    assert spec.host("host2").name == "worker-1"
    assert spec.host("host3").name == "worker-2"
    assert spec.host("worker-2").ip == "192.168.56.12"


def test_unknown_host_is_a_usage_error_listing_the_hosts() -> None:
    with pytest.raises(UsageError) as err:
        build_spec({}).host("worker-3")
    assert "worker-3" in err.value.message
    assert "worker-1 (host2)" in (err.value.hint or "")


def test_subnet_moves_default_addresses() -> None:
    spec = build_spec({"lab": {"subnet": "10.20.30.0/24"}})
    assert [h.ip for h in spec.hosts] == ["10.20.30.10", "10.20.30.11", "10.20.30.12"]
    assert spec.netmask == "255.255.255.0"


def test_json_round_trip_is_lossless() -> None:
    spec = build_spec({"lab": {"name": "two", "subnet": "192.168.57.0/24", "provider": "docker"}})
    data = json.loads(json.dumps(spec.to_json()))
    assert LabSpec.from_json(data) == spec
    assert data["hosts"][0]["resource_name"] == "labctl-two-manager"
    assert data["docker_network"] == "labctl-two"


def test_lab_file_overrides_and_flags_win(tmp_path: Path) -> None:
    path = tmp_path / "labctl.toml"
    path.write_text('[lab]\nname = "class"\nsubnet = "192.168.58.0/24"\n\n[hosts.manager]\n'
                    '[hosts.worker-1]\nip = "192.168.58.21"\n[hosts.worker-2]\n')
    spec = load_spec(path)
    assert spec.name == "class"
    assert spec.host("worker-1").ip == "192.168.58.21"
    with pytest.raises(UsageError, match=r"not a host address of 192\.168\.59\.0/24"):
        load_spec(path, {"subnet": "192.168.59.0/24", "name": None})
    path.write_text('[lab]\nname = "class"\nsubnet = "192.168.58.0/24"\n')
    moved = load_spec(path, {"subnet": "192.168.59.0/24", "name": None})
    assert moved.subnet == "192.168.59.0/24"
    assert moved.manager.ip == "192.168.59.10"


@pytest.mark.parametrize(("text", "field", "line"), [
    ('[lab]\nname = "x"\nsubnett = "1.2.3.0/24"\n', "lab.subnett", 3),
    ('[lab]\nsubnet = "192.168.56.0/33"\n', "lab.subnet", 2),
    ('[lab]\nprovider = "hyperv"\n', "lab.provider", 2),
    ('[hosts.manager]\n\n[hosts.worker-1]\nip = "10.0.0.5"\n', "hosts.worker-1.ip", 4),
    ('[hosts.manager]\nrole = "boss"\n', "hosts.manager.role", 2),
    ('[lab]\nmemory = "lots"\n', "lab.memory", 2),
])
def test_malformed_lab_file_names_line_and_field(tmp_path: Path, text: str, field: str, line: int) -> None:
    path = tmp_path / "labctl.toml"
    path.write_text(text)
    with pytest.raises(UsageError) as err:
        load_spec(path)
    assert f"line {line}" in err.value.message
    assert f"'{field}'" in err.value.message


def test_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "labctl.toml"
    path.write_text('[lab]\nname = "x\n')
    with pytest.raises(UsageError) as err:
        load_spec(path)
    assert "line 2" in err.value.message


def test_exactly_one_manager_and_unique_addresses() -> None:
    with pytest.raises(UsageError, match="exactly one"):
        build_spec({"hosts": {"a": {"role": "worker"}, "b": {"role": "worker"}}})
    with pytest.raises(UsageError, match="already used"):
        build_spec({"hosts": {"manager": {"ip": "192.168.56.10"}, "b": {"ip": "192.168.56.10"}}})


def test_gateway_and_bad_names_are_refused() -> None:
    with pytest.raises(UsageError, match="gateway"):
        build_spec({"hosts": {"manager": {"ip": "192.168.56.1"}}})
    with pytest.raises(UsageError, match="not a valid host name"):
        build_spec({"hosts": {"manager": {}, "host2": {}}})
    with pytest.raises(UsageError, match=r"lab\.name"):
        build_spec({"lab": {"name": "My Lab; rm -rf /"}})


def test_free_subnet_skips_those_in_use() -> None:
    assert free_subnet(set()) == DEFAULT_SUBNET
    assert free_subnet({"192.168.56.0/24", "192.168.57.0/24"}) == "192.168.58.0/24"
    with pytest.raises(UsageError):
        free_subnet({"192.168.56.0/21"})


def test_load_spec_takes_the_default_subnet_when_none_is_given() -> None:
    spec = load_spec(None, {"name": "second"}, default_subnet="192.168.57.0/24")
    assert spec.subnet == "192.168.57.0/24"
    assert spec.manager.ip == "192.168.57.10"


EXISTING = """[lab]
name = "cloud"
provider = "existing"
ssh_user = "ubuntu"
ssh_key = "~/keys/lab key.pem"

[hosts.manager]
ip = "172.31.5.10"
ssh_host = "ec2-54-1-2-3.compute.amazonaws.com"
[hosts.worker-1]
ip = "172.31.9.11"
ssh_host = "54.1.2.4"
ssh_port = 2222
ssh_user = "admin"
[hosts.worker-2]
ip = "172.31.5.12"
ssh_host = "54.1.2.5"
"""


def test_existing_hosts_lab_file(tmp_path: Path) -> None:
    path = tmp_path / "labctl.toml"
    path.write_text(EXISTING)
    spec = load_spec(path)
    assert spec.existing
    assert spec.subnet == "172.31.0.0/20"  # the smallest network holding every host's address
    m, w1 = spec.host("manager"), spec.host("host2")
    assert (m.ssh_host, m.ssh_port, m.ssh_user) == ("ec2-54-1-2-3.compute.amazonaws.com", 22, "ubuntu")
    assert m.ssh_key is not None and m.ssh_key.endswith("/keys/lab key.pem") and "~" not in m.ssh_key
    assert (w1.ssh_port, w1.ssh_user) == (2222, "admin")
    assert LabSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec


@pytest.mark.parametrize(("change", "field"), [
    (('ssh_host = "54.1.2.4"', 'ssh_host = "54.1.2.4; rm -rf /"'), "hosts.worker-1.ssh_host"),
    (('ssh_host = "54.1.2.4"', 'ssh_host = "$(reboot)"'), "hosts.worker-1.ssh_host"),
    (("ssh_port = 2222", "ssh_port = 70000"), "hosts.worker-1.ssh_port"),
    (('ssh_user = "admin"', 'ssh_user = "admin me"'), "hosts.worker-1.ssh_user"),
    (('ip = "172.31.9.11"\n', ""), "hosts.worker-1.ip"),
])
def test_existing_hosts_unsafe_or_missing_fields(tmp_path: Path, change: tuple[str, str], field: str) -> None:
    path = tmp_path / "labctl.toml"
    path.write_text(EXISTING.replace(*change))
    with pytest.raises(UsageError) as err:
        load_spec(path)
    assert f"'{field}'" in err.value.message
    assert "line " in err.value.message


def test_ssh_fields_only_for_existing_hosts() -> None:
    with pytest.raises(UsageError, match="only applies"):
        build_spec({"hosts": {"manager": {"ssh_host": "1.2.3.4"}}})


@pytest.mark.parametrize("field,value", [("ssh_user", "root\n"), ("ssh_host", "10.0.0.1\n")])
def test_a_trailing_newline_is_not_a_valid_ssh_field(field: str, value: str) -> None:
    hosts = {n: {"ssh_host": "10.0.0.1", "ip": f"10.0.0.{i}"} for i, n in enumerate(["manager", "w1", "w2"], 10)}
    hosts["manager"]["role"] = "manager"
    hosts["w1"][field] = value
    with pytest.raises(UsageError, match=rf"hosts\.w1\.{field}"):
        build_spec({"lab": {"provider": "existing", "subnet": "10.0.0.0/24"}, "hosts": hosts})


def test_a_trailing_newline_is_not_a_lab_name() -> None:
    with pytest.raises(UsageError, match=r"lab\.name"):
        build_spec({"lab": {"name": "lab\n"}})
