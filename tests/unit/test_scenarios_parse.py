"""Reading docker's and busybox's output (recorded from a real lab)."""

from __future__ import annotations

import json

from labctl import facts
from labctl.scenarios import limits, parse
from labctl.ssh import Result

NETWORK_LS = """NETWORK ID     NAME              DRIVER    SCOPE
b870683bd028   bridge            bridge    local
cf41b0742e8d   docker_gwbridge   bridge    local
d9937126438b   host              host      local
mub2w5ahlmex   ingress           overlay   swarm
cah56fthcwi8   nginx-net         overlay   swarm
39fef4e4e096   none              null      local
"""

SERVICE_LS = """ID             NAME              MODE         REPLICAS   IMAGE                      PORTS
jq255u0howot   container-nginx   replicated   3/5        labctl/nginx-lite:latest   *:80->80/tcp
kq255u0howot   other             global       3/3        labctl/nginx-lite:latest
"""

INSPECT = [{
    "Name": "nginx-net", "Id": "cah56fthcwi8g8c0zy9cacmw6",
    "IPAM": {"Config": [{"Subnet": "10.0.1.0/24", "Gateway": "10.0.1.1"}]},
    "Containers": {
        "36fe6bf3": {"Name": "container-nginx.2.asil8t9c4ueo", "IPv4Address": "10.0.1.4/24"},
        "lb-nginx-net": {"Name": "nginx-net-endpoint", "IPv4Address": "10.0.1.9/24"},
    },
    "Peers": [{"Name": "7c38f358973f", "IP": "192.168.58.10"}, {"Name": "362f7e3770d4", "IP": "192.168.58.12"}],
}]

NSLOOKUP = """Server:\t\t127.0.0.11
Address:\t127.0.0.11:53

Non-authoritative answer:

Non-authoritative answer:
Name:\tweb-nginx
Address: 10.0.8.3
Name:\tweb-nginx
Address: 10.0.8.2
"""

PRETTY = """ID:             jq255u0howot
Name:           container-nginx
Ports:
 PublishedPort = 80
  Protocol = tcp
  TargetPort = 80
  PublishMode = ingress
"""


def test_network_ls() -> None:
    rows = parse.network_ls(NETWORK_LS)
    assert rows["ingress"].driver == "overlay" and rows["ingress"].scope == "swarm"
    assert rows["nginx-net"].id == "cah56fthcwi8"
    assert "NAME" not in rows


def test_service_ls() -> None:
    assert parse.service_ls(SERVICE_LS) == {"container-nginx": (3, 5), "other": (3, 3)}


def test_network_inspect_separates_tasks_from_the_load_balancer() -> None:
    info = parse.network_inspect(json.dumps(INSPECT))
    assert info.tasks() == {"container-nginx.2.asil8t9c4ueo": "10.0.1.4"}
    assert set(info.peers.values()) == {"192.168.58.10", "192.168.58.12"}
    assert info.gateway == "10.0.1.1" and info.subnet == "10.0.1.0/24"


def test_nslookup_ignores_the_server_address() -> None:
    assert parse.nslookup_addresses(NSLOOKUP) == ["10.0.8.3", "10.0.8.2"]
    assert parse.nslookup_addresses("Server: 127.0.0.11\nAddress: 127.0.0.11:53\n") == []


def test_ip_addr_and_ports() -> None:
    text = ("1: lo: <LOOPBACK> mtu 65536\n    inet 127.0.0.1/8 scope host lo\n"
            "68: eth0@if69: <BROADCAST> mtu 1500\n    inet 172.17.0.2/16 brd 172.17.255.255 scope global eth0\n")
    assert parse.ip_addr_ipv4(text) == "172.17.0.2"
    assert parse.service_ports(PRETTY) == [{"PublishedPort": "80", "Protocol": "tcp", "TargetPort": "80",
                                           "PublishMode": "ingress"}]


def test_limits_from_facts() -> None:
    docker = facts.DockerInfo().parse(Result(0, '{"ServerVersion": "27.0.1", "Name": "worker-1"}', ""))
    assert docker.name == "worker-1"
    missing = limits.missing(facts.Capability(False), facts.Capability(False), "nodns")
    assert "Could not get ipvs family information" in (missing["ipvs"] or "")
    assert missing["esp"] and missing["internet"]
    ok = limits.missing(facts.Capability(True), facts.Capability(True), "yes")
    assert ok == {"ipvs": None, "esp": None, "internet": None}


def test_ipvs_missing_anywhere_counts_everywhere() -> None:
    lim = limits.Limits({"manager": {"ipvs": None, "internet": None},
                         "worker-1": {"ipvs": "no IPVS", "internet": "no way out"}})
    assert lim.missing("ipvs", "manager") == "no IPVS (on worker-1)"
    assert lim.missing("internet", "manager") is None
    assert lim.missing("internet", "worker-1") == "no way out"
