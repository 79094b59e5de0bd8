from labctl.sshconfig import parse_ssh_config

VAGRANT_OUTPUT = """Host manager
  HostName 127.0.0.1
  User vagrant
  Port 2201
  UserKnownHostsFile /dev/null
  StrictHostKeyChecking no
  PasswordAuthentication no
  IdentityFile /tmp/lt/.vagrant/machines/manager/docker/private_key
  IdentitiesOnly yes
  LogLevel FATAL

Host worker-1
  HostName 127.0.0.1
  User vagrant
  Port 2222
  IdentityFile "/home/a user/.vagrant/machines/worker-1/docker/private_key"
  IdentitiesOnly yes

Host worker-2
  HostName 192.168.121.44
  User vagrant
  Port 22
  IdentityFile /x/worker-2/key
"""


def test_all_machines_parsed_from_one_call() -> None:
    eps = parse_ssh_config(VAGRANT_OUTPUT, ["manager", "worker-1", "worker-2"])
    assert eps["manager"].port == 2201
    assert eps["manager"].hostname == "127.0.0.1"
    assert eps["manager"].key_file.endswith("manager/docker/private_key")
    assert eps["worker-1"].port == 2222
    assert eps["worker-1"].key_file == "/home/a user/.vagrant/machines/worker-1/docker/private_key"
    assert eps["worker-2"].hostname == "192.168.121.44"
    assert eps["worker-2"].user == "vagrant"


def test_missing_machines_are_left_out() -> None:
    eps = parse_ssh_config(VAGRANT_OUTPUT.split("Host worker-1")[0], ["manager", "worker-1"])
    assert set(eps) == {"manager"}


def test_empty_output() -> None:
    assert parse_ssh_config("", ["manager"]) == {}
