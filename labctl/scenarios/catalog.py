"""The scenarios: Docker's overlay-networking tutorial, exercise by exercise.

Commands are the tutorial's, typo-free, run where the tutorial runs them. Where
a command cannot run unattended (an interactive `docker run -it`) or cannot work
on this lab (no IPVS), the step says how it differs.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shlex

from .. import facts, validate
from ..runner import Result
from ..spec import LabSpec
from . import checks, parse
from .checks import curl, inspect_lists_tasks, network_listed, network_not_listed, nginx_page, ping_ok
from .engine import Check, Ctx, Fail, Made, Scenario, Step

DETACH_NOTE = "--detach: labctl watches `docker service ls` until it converges"
NO_IPVS_ALT = "shown instead of the routing mesh (no IPVS here)"
DNSRR_NOTE = "; --endpoint-mode dnsrr: service VIPs need IPVS, which this lab lacks, so the name resolves to the tasks"
IMAGE_HINT = "tasks do not start: `docker service ps` shows why (an image missing on a host?)"


def _remember(key: str) -> Check:
    """A check that keeps the command's output (an ID) for later steps."""
    def check(ctx: Ctx, out: Result) -> str:
        ctx.vars[key] = out.out.strip()
        return f"{key} = {ctx.vars[key][:12]}"
    return check


# --- 1. default-overlay ---------------------------------------------------------------

def _default_overlay(ctx: Ctx) -> list[Step]:
    m, workers, svc = ctx.manager, ctx.workers, "container-nginx"
    spare = workers[-1]  # the host the mesh is shown from without a task (needs IPVS)
    steps = [Step(f"{h} lists the ingress overlay and docker_gwbridge", h, "docker network ls",
                  check=network_listed(h, "ingress", "docker_gwbridge"),
                  hint="the host is not in the swarm (`labctl status`)") for h in ctx.all_hosts]
    steps += [
        Step("overlay nginx-net is created on the manager", m, "docker network create -d overlay nginx-net"),
        Step("service container-nginx: 5 replicas on nginx-net, port 80 published", m,
             lambda c: "docker service create --detach --name container-nginx --publish target=80,published=80 "
                       f"--replicas=5 --network nginx-net{c.run_flags()} {c.images.nginx}", note=DETACH_NOTE),
        Step("the service converges: 5/5 replicas", m, "docker service ls", check=checks.replicas(svc, 5),
             until=120, interval=1, hint=IMAGE_HINT),
    ]
    steps += [Step(f"nginx-net exists on {w} where a task runs, though nobody created it there", w,
                   "docker network inspect nginx-net", expect_rc=None, until=10,
                   check=inspect_lists_tasks(w, svc, "nginx-net", peers=False),
                   hint="the worker did not get the network with its task") for w in workers]
    steps += [Step(f"`docker network inspect nginx-net` on {h} lists its task containers and the peers", h,
                   "docker network inspect nginx-net", expect_rc=None, until=10,
                   check=inspect_lists_tasks(h, svc, "nginx-net"),
                   hint="the overlay's peers learn of each other through gossip (TCP/UDP 7946)")
              for h in ctx.all_hosts]
    steps.append(Step("the service publishes port 80 (target 80) through the ingress routing mesh", m,
                      "docker service inspect --pretty container-nginx", check=_publishes(80, 80, "ingress")))
    steps += [Step(f"port 80 of {h} answers through the routing mesh", m, curl(f"http://{ctx.ip(h)}:80/"),
                   check=nginx_page, requires=("ipvs",), until=10, diagnose=h,
                   hint=f"the mesh forwards from {h} to a task over the ingress overlay (VXLAN, UDP 4789)")
              for h in ctx.all_hosts]
    steps += [
        Step(f"tasks leave {spare}, to show the mesh from a host without one", m,
             lambda c: f"docker service update --detach --constraint-add node.hostname!={c.node_name(spare)} "
                       "container-nginx", requires=("ipvs",), note="not in the tutorial: frees a host of tasks"),
        Step(f"{spare} runs no task of container-nginx", m, "docker service ps --filter desired-state=running "
             "--format '{{.Node}} {{.CurrentState}}' container-nginx", requires=("ipvs",), until=90, interval=1,
             check=_no_task_on(spare, svc)),
        Step(f"port 80 of {spare}, which runs no task, answers through the routing mesh", m,
             curl(f"http://{ctx.ip(spare)}:80/"), check=nginx_page, requires=("ipvs",), until=10, diagnose=spare,
             hint=f"{spare} must forward to a task on another host over the ingress overlay (VXLAN, UDP 4789)"),
    ]
    n = len(ctx.all_hosts)
    steps += [
        Step("global service container-nginx-host: each host publishes port 8081 itself (mode=host)", m,
             lambda c: "docker service create --detach --name container-nginx-host --mode global "
                       "--endpoint-mode dnsrr --publish mode=host,target=80,published=8081 "
                       f"--network nginx-net{c.run_flags()} {c.images.nginx}",
             only_without="ipvs", note=f"{NO_IPVS_ALT}: the tutorial's mode=host variant, one task per host"),
        Step(f"container-nginx-host converges: {n}/{n}, one task per host", m, "docker service ls",
             check=checks.replicas("container-nginx-host", n), until=120, interval=1, only_without="ipvs",
             hint=IMAGE_HINT),
    ]
    steps += [Step(f"port 8081 of {h} answers from {h}'s own task", m, curl(f"http://{ctx.ip(h)}:8081/"),
                   check=nginx_page, until=10, only_without="ipvs", diagnose=h,
                   hint="host-mode publishing maps the host's port to its local task")
              for h in ctx.all_hosts]
    steps += [
        Step("container-nginx-host is removed", m, "docker service rm container-nginx-host", only_without="ipvs"),
        Step("overlay nginx-net-2 is created", m, "docker network create -d overlay nginx-net-2"),
        Step("the service moves from nginx-net to nginx-net-2", m,
             "docker service update --detach --network-add nginx-net-2 --network-rm nginx-net container-nginx",
             note=DETACH_NOTE),
        Step("the update completes: 5/5 replicas redeployed", m, "docker service ls",
             check=checks.updated(svc, 5), until=120, interval=1, hint=IMAGE_HINT),
    ]
    steps += [Step(f"no task container is left on nginx-net on {h}", h, "docker network inspect nginx-net",
                   expect_rc=None, check=checks.no_tasks_on(h, "nginx-net"), until=30)
              for h in ctx.all_hosts]
    steps += [Step(f"the task containers on {h} are all on nginx-net-2", h, "docker network inspect nginx-net-2",
                   expect_rc=None, until=30,
                   check=inspect_lists_tasks(h, svc, "nginx-net-2", peers=False, absent_ok=True, total=5))
              for h in ctx.all_hosts]
    steps += [
        Step("service container-nginx is removed", m, "docker service rm container-nginx", teardown=True),
        Step("networks nginx-net and nginx-net-2 are removed", m, "docker network rm nginx-net nginx-net-2",
             until=30, interval=1, teardown=True),
    ]
    steps += [Step(f"{w}'s copies of nginx-net and nginx-net-2 are gone too", w, "docker network ls",
                   check=network_not_listed(w, "nginx-net", "nginx-net-2"), until=30, teardown=True,
                   hint="the manager tells workers to remove networks they no longer use")
              for w in workers]
    return steps


def _publishes(published: int, target: int, mode: str) -> Check:
    def check(ctx: Ctx, out: Result) -> str:
        ports = parse.service_ports(out.out)
        want = {"PublishedPort": str(published), "TargetPort": str(target), "PublishMode": mode}
        if not any(all(p.get(k) == v for k, v in want.items()) for p in ports):
            raise Fail(f"no port {published} -> {target} published in {mode} mode", output=out.out.strip()[-600:])
        return f"{published} -> {target} ({mode})"
    return check


def _no_task_on(host: str, service: str) -> Check:
    def check(ctx: Ctx, out: Result) -> str:
        nodes = [line.split()[0] for line in out.out.splitlines() if line.strip()]
        if ctx.node_name(host) in nodes:
            raise Fail(f"{host} still runs a task of {service}", output=out.out.strip())
        if checks.local_tasks(ctx, host, service):
            raise Fail(f"{host} still has a running task container of {service}")
        return f"tasks on {', '.join(sorted(set(nodes)))}"
    return check


# --- 2. user-defined-overlay -----------------------------------------------------------

def _task_host(service: str) -> Check:
    """`docker service ps`: the service's one running task; remembers its host."""
    def check(ctx: Ctx, out: Result) -> str:
        running = [r for r in (line.split() for line in out.out.splitlines()) if len(r) >= 2 and r[1] == "Running"]
        if len(running) != 1:
            raise Fail(f"{len(running)} running tasks of {service}, expected 1", output=out.out.strip())
        ctx.vars["task_host"] = ctx.host_of_node(running[0][0])
        return f"its task runs on {ctx.vars['task_host']}"
    return check


def _user_defined_overlay(ctx: Ctx) -> list[Step]:
    m, svc = ctx.manager, "container01-nginx"
    ps = "docker service ps --filter desired-state=running --format '{{.Node}} {{.CurrentState}}' container01-nginx"
    steps = [
        Step("overlay rede01-overlay is created", m, "docker network create -d overlay rede01-overlay"),
        Step("service container01-nginx: 1 replica on rede01-overlay, published 8080 -> 80", m,
             lambda c: "docker service create --detach --name container01-nginx --network rede01-overlay "
                       f"--replicas 1 --publish published=8080,target=80{c.run_flags()} {c.images.nginx}",
             note=DETACH_NOTE),
        Step("the service converges: 1/1", m, "docker service ls", check=checks.replicas(svc, 1), until=120,
             interval=1, hint=IMAGE_HINT),
        Step("its task is found", m, ps, check=_task_host(svc), until=20),
        Step("`docker network inspect rede01-overlay` lists the service's task", lambda c: c.vars["task_host"],
             "docker network inspect rede01-overlay", expect_rc=None, until=10,
             check=lambda c, out: inspect_lists_tasks(c.vars["task_host"], svc, "rede01-overlay")(c, out),
             note="run on the host of the task: Containers lists only local ones"),
    ]
    steps += [Step(f"port 8080 of {h} answers through the routing mesh", m, curl(f"http://{ctx.ip(h)}:8080/"),
                   check=nginx_page, requires=("ipvs",), until=10, diagnose=h,
                   hint="the mesh forwards to the task over the ingress overlay (VXLAN, UDP 4789)")
              for h in ctx.all_hosts]
    steps += [
        Step("port 8080 is published in host mode instead", m,
             "docker service update --detach --publish-rm published=8080,target=80 "
             "--publish-add mode=host,published=8080,target=80 container01-nginx",
             only_without="ipvs", note=f"{NO_IPVS_ALT}: only the task's host answers"),
        Step("the update completes: 1/1", m, "docker service ls", check=checks.updated(svc, 1), until=120,
             interval=1, only_without="ipvs", hint=IMAGE_HINT),
        Step("its task is found", m, ps, check=_task_host(svc), until=20, only_without="ipvs"),
        Step("port 8080 of the task's host answers", m, lambda c: curl(f"http://{c.ip(c.vars['task_host'])}:8080/"),
             check=nginx_page, until=15, only_without="ipvs", diagnose=lambda c: c.vars["task_host"],
             hint="host-mode publishing maps the host's port to its local task"),
        Step("service container01-nginx is removed", m, "docker service rm container01-nginx", teardown=True),
        Step("network rede01-overlay is removed", m, "docker network rm rede01-overlay", until=30, interval=1,
             teardown=True),
    ]
    return steps


# --- 3. standalone-overlay -------------------------------------------------------------

def _same_network_id(host: str) -> Check:
    listed = network_listed(host, "test-net", scope="swarm")

    def check(ctx: Ctx, out: Result) -> str:
        listed(ctx, out)
        row = parse.network_ls(out.out)["test-net"]
        created = ctx.vars.get("test-net", "")
        if not created.startswith(row.id):
            raise Fail(f"test-net on {host} has ID {row.id}; the manager created {created[:12]}", output=out.out)
        return f"same NETWORK ID {row.id} as on the manager"
    return check


def _standalone_overlay(ctx: Ctx) -> list[Step]:
    h1, h2 = ctx.manager, ctx.workers[0]
    alpine = ctx.images.alpine
    interactive = "the tutorial's -it session, detached here; its shell is reached with `docker exec`"
    return [
        Step("attachable overlay test-net is created on host1", h1,
             "docker network create --driver=overlay --attachable test-net", check=_remember("test-net")),
        Step("container01-alpine runs on host1, on test-net", h1,
             f"docker run -dit --name container01-alpine --network test-net {alpine}", note=interactive),
        Step(f"{h2} does not list test-net yet", h2, "docker network ls",
             check=network_not_listed(h2, "test-net")),
        Step(f"container02-alpine runs detached on {h2}, on test-net", h2,
             f"docker run -dit --name container02-alpine --network test-net {alpine}",
             hint=f"{h2} could not attach to the swarm network (gossip TCP/UDP 7946, or the manager on TCP 2377)"),
        Step(f"{h2} now lists test-net, with the same NETWORK ID", h2, "docker network ls",
             check=_same_network_id(h2)),
        Step(f"container01-alpine ({h1}) pings container02-alpine ({h2}) by name", h1,
             "docker exec container01-alpine ping -c 2 container02-alpine", expect_rc=None, check=ping_ok,
             # names reach other hosts by gossip: after a dockerd restart that takes up to a minute
             until=90, interval=2, timeout=60, diagnose=h2,
             hint=checks.overlay_ping_hint(h1, h2, "container02-alpine")),
        Step(f"a container03-alpine started with --rm on {h2} pings container01-alpine by name", h2,
             f"docker run --rm --name container03-alpine --network test-net {alpine} ping -c 2 container01-alpine",
             expect_rc=None, check=ping_ok, until=90, interval=2, timeout=60, diagnose=h2,
             note="the tutorial types the ping inside `docker run -it --rm`; here it is the container's command",
             hint=checks.overlay_ping_hint(h2, h1, "container01-alpine")),
        *_encrypted_overlay(ctx, h1, h2),
        Step(f"container02-alpine is stopped on {h2}", h2, "docker container stop -t 1 container02-alpine",
             teardown=True, note="-t 1: its shell ignores SIGTERM, so don't wait the default 10 s"),
        Step(f"test-net disappears from {h2}", h2, "docker network ls", check=network_not_listed(h2, "test-net"),
             until=15, teardown=True, hint="a worker removes a swarm network when its last container leaves it"),
        Step(f"container02-alpine is removed from {h2}", h2, "docker container rm container02-alpine",
             teardown=True),
        Step("container01-alpine is removed from host1", h1, "docker container rm -f container01-alpine", teardown=True,
             note="-f: the tutorial exits its shell first"),
        Step("test-net is removed", h1, "docker network rm test-net", until=15, interval=1, teardown=True),
    ]


ENCRYPTED_NOTE = "not in the tutorial: the same over an encrypted overlay (--opt encrypted, IPsec ESP)"


def _esp_counted(src: str, dst: str) -> Check:
    """`ip -s xfrm state` holds an ESP state from `src` to `dst` that has carried packets."""
    def check(ctx: Ctx, out: Result) -> str:
        for block in re.split(r"(?m)^(?=src )", out.out):
            head = block.split("\n", 1)[0].split()
            packets = re.search(r"(\d+)\(packets\)", block)
            if head[1:4:2] == [src, dst] and "proto esp" in block and packets and int(packets.group(1)) > 0:
                return f"ESP {src} -> {dst} carried {packets.group(1)} packets"
        raise Fail(f"no ESP state from {src} to {dst} has carried a packet: the ping was not encrypted",
                   output=out.out.strip()[-1500:])
    return check


def _encrypted_overlay(ctx: Ctx, h1: str, h2: str) -> list[Step]:
    alpine, net = ctx.images.alpine, "secure-net"
    return [
        Step(f"attachable encrypted overlay {net} is created on host1", h1,
             f"docker network create --driver=overlay --attachable --opt encrypted {net}",
             requires=("esp",), note=ENCRYPTED_NOTE),
        Step(f"container01-secure runs on host1, on {net}", h1,
             f"docker run -dit --name container01-secure --network {net} {alpine}", requires=("esp",)),
        Step(f"container02-secure runs on {h2}, on {net}", h2,
             f"docker run -dit --name container02-secure --network {net} {alpine}", requires=("esp",)),
        Step(f"container01-secure ({h1}) pings container02-secure ({h2}) by name, encrypted", h1,
             "docker exec container01-secure ping -c 2 container02-secure", expect_rc=None, check=ping_ok,
             until=90, interval=2, timeout=60, requires=("esp",), diagnose=h2,
             hint="an encrypted overlay also needs IP protocol 50 (ESP) between the hosts"),
        Step(f"the ping crossed as ESP: {h2}'s IPsec state from host1 counted packets", h2, "ip -s xfrm state",
             check=lambda c, out: _esp_counted(c.ip(h1), c.ip(h2))(c, out), until=10, requires=("esp",),
             note="run as root: the kernel's IPsec states (xfrm)"),
        Step(f"container02-secure is removed from {h2}", h2, "docker container rm -f container02-secure",
             requires=("esp",), teardown=True),
        Step("container01-secure is removed from host1", h1, "docker container rm -f container01-secure",
             requires=("esp",), teardown=True),
        Step(f"{net} is removed", h1, f"docker network rm {net}", until=15, interval=1, requires=("esp",),
             teardown=True),
    ]


# --- 4. container-to-service -----------------------------------------------------------

def _web_mode(ctx: Ctx) -> str:
    return "dnsrr" if ctx.limits.missing("ipvs") else "vip"


def _resolves_service(service: str, network: str) -> Check:
    """The service's name resolves to its VIP on `network` (vip) or to its tasks' addresses (dnsrr)."""
    def check(ctx: Ctx, out: Result) -> str:
        got = set(parse.nslookup_addresses(out.out))
        if _web_mode(ctx) == "vip":
            vips = ctx.sh(ctx.manager, f"docker service inspect --format '{{{{json .Endpoint.VirtualIPs}}}}' {service}")
            net_id = ctx.sh(ctx.manager, f"docker network inspect --format '{{{{.Id}}}}' {network}").out.strip()
            want = {v["Addr"].split("/")[0] for v in json.loads(vips.out or "[]") or [] if v.get("NetworkID") == net_id}
            what = "its virtual IP"
        else:
            want = set(_task_ips(ctx, service, network))
            what = "its tasks' addresses (dnsrr)"
        if not got or got != want:
            raise Fail(f"{service} resolves to {sorted(got) or 'nothing'}, expected {what} {sorted(want)}",
                       output=out.out.strip())
        return f"{service} -> {', '.join(sorted(got))} ({what})"
    return check


def _task_ips(ctx: Ctx, service: str, network: str) -> list[str]:
    ips: list[str] = []
    for host, names in checks.task_hosts(ctx, service).items():
        for name in names:
            fmt = f'{{{{(index .NetworkSettings.Networks "{network}").IPAddress}}}}'
            out = ctx.sh(host, f"docker inspect --format '{fmt}' {shlex.quote(name)}")
            ips += out.out.split()
    return sorted(ips)


def _resolves_tasks(service: str, network: str) -> Check:
    def check(ctx: Ctx, out: Result) -> str:
        got, want = sorted(set(parse.nslookup_addresses(out.out))), _task_ips(ctx, service, network)
        if got != want:
            raise Fail(f"tasks.{service} resolves to {got or 'nothing'}, expected the tasks' {want}",
                       output=out.out.strip())
        return f"tasks.{service} -> {', '.join(got)}"
    return check


def _container_to_service(ctx: Ctx) -> list[Step]:
    m, client_host = ctx.manager, ctx.workers[0]
    dns_hint = "the embedded DNS learns of services through the swarm's gossip (TCP/UDP 7946)"
    return [
        Step("attachable overlay web-net is created", m, "docker network create --driver overlay --attachable web-net"),
        Step(f"service web-nginx: 2 replicas on web-net, none on {client_host}", m,
             lambda c: f"docker service create --detach --name web-nginx --replicas 2 --network web-net "
                       f"--endpoint-mode {_web_mode(c)} --constraint node.hostname!={c.node_name(client_host)}"
                       f"{c.run_flags()} {c.images.nginx}",
             note=lambda c: DETACH_NOTE + (DNSRR_NOTE if _web_mode(c) == "dnsrr" else "")),
        Step("the service converges: 2/2", m, "docker service ls", check=checks.replicas("web-nginx", 2), until=120,
             interval=1, hint=IMAGE_HINT),
        Step(f"standalone container client-alpine runs on {client_host}, on web-net", client_host,
             f"docker run -dit --name client-alpine --network web-net {ctx.images.alpine}",
             hint=f"{client_host} could not attach to the swarm network"),
        Step("client-alpine resolves the service by name", client_host,
             "docker exec client-alpine nslookup web-nginx", expect_rc=None, until=90, interval=1,
             check=_resolves_service("web-nginx", "web-net"), hint=dns_hint),
        Step("client-alpine gets an HTTP answer from the service by name", client_host,
             "docker exec client-alpine wget -qO- http://web-nginx/", check=nginx_page, until=10,
             expect_rc=None, timeout=20,
             hint=f"the service's tasks run on other hosts: VXLAN (UDP 4789) to {client_host} may be blocked"),
        Step("client-alpine resolves tasks.web-nginx to the service's tasks", client_host,
             "docker exec client-alpine nslookup tasks.web-nginx", expect_rc=None, until=90, interval=1,
             check=_resolves_tasks("web-nginx", "web-net"), hint=dns_hint),
        Step("client-alpine gets an HTTP answer from a task through tasks.web-nginx", client_host,
             "docker exec client-alpine wget -qO- http://tasks.web-nginx/", check=nginx_page, until=10,
             expect_rc=None, timeout=20,
             hint=f"VXLAN (UDP 4789) between the tasks' hosts and {client_host} may be blocked"),
        Step("client-alpine is removed", client_host, "docker container rm -f client-alpine", teardown=True),
        Step("service web-nginx is removed", m, "docker service rm web-nginx", teardown=True),
        Step("network web-net is removed", m, "docker network rm web-net", until=30, interval=1, teardown=True),
    ]


# --- 5. default-bridge -----------------------------------------------------------------

def _bridge_lists_both(ctx: Ctx, out: Result) -> str:
    info = parse.network_inspect(out.out)
    missing = [n for n in ("container01-alpine", "container02-alpine") if not info.containers.get(n)]
    if missing:
        raise Fail(f"Containers does not list {', '.join(missing)} with an address", output=out.out[-800:])
    gateway, where = info.gateway, ""
    if not gateway:  # some dockerd versions list only the subnet: the gateway is the bridge's own address
        bridge = json.loads(out.out)[0].get("Options", {}).get("com.docker.network.bridge.name", "docker0")
        bridge = validate.interface(bridge, reported_by=ctx.manager)
        gateway = parse.ip_addr_ipv4(ctx.sh(ctx.manager, f"ip -4 addr show {shlex.quote(bridge)}").out, bridge)
        where = f" ({bridge}'s address; IPAM lists no Gateway)"
    if not gateway:
        raise Fail("no gateway: neither in IPAM.Config nor on the bridge", output=out.out[-800:])
    subnet = ipaddress.ip_network(info.subnet) if info.subnet else None
    # the addresses go into later steps' commands (ping IP)
    ctx.vars.update(ip1=validate.ipv4(info.containers["container01-alpine"], reported_by=ctx.manager),
                    ip2=validate.ipv4(info.containers["container02-alpine"], reported_by=ctx.manager))
    outside = [ip for ip in (gateway, ctx.vars["ip1"], ctx.vars["ip2"])
               if subnet is not None and ipaddress.ip_address(ip) not in subnet]
    if outside:
        raise Fail(f"{', '.join(outside)} outside the bridge's subnet {subnet}", output=out.out[-800:])
    return f"gateway {gateway}{where}, container01 {ctx.vars['ip1']}, container02 {ctx.vars['ip2']}"


def _both_running(ctx: Ctx, out: Result) -> str:
    up = [n for n in ("container01-alpine", "container02-alpine")
          if any(n in line and " Up " in line for line in out.out.splitlines())]
    if len(up) != 2:
        raise Fail("container01-alpine and container02-alpine are not both Up", output=out.out.strip())
    return "both Up"


def _same_address(ctx: Ctx, out: Result) -> str:
    seen = parse.ip_addr_ipv4(out.out)
    if seen != ctx.vars["ip1"]:
        raise Fail(f"eth0 has {seen or 'no IPv4 address'}; the bridge lists {ctx.vars['ip1']}", output=out.out)
    return f"eth0 {seen}, as the bridge lists it"


def _name_fails(ctx: Ctx, out: Result) -> str:
    text = out.out + out.err
    if out.rc == 0:
        raise Fail("the name resolved and answered: the default bridge should have no DNS", output=text.strip())
    if not facts.parse_ping(text).unresolved:
        raise Fail("ping failed, but not because the name does not resolve", output=text.strip())
    return "fails as expected: no DNS on the default bridge"


def _default_bridge(ctx: Ctx) -> list[Step]:
    h, alpine = ctx.manager, ctx.images.alpine
    return [
        *[Step(f"{name} runs on the default bridge", h, f"docker run -dit --name {name} {alpine} ash")
          for name in ("container01-alpine", "container02-alpine")],
        Step("both containers are up", h, "docker container ls", check=_both_running),
        Step("`docker network inspect bridge` lists both, their addresses and the gateway", h,
             "docker network inspect bridge", check=_bridge_lists_both),
        Step("container01-alpine sees the same address on eth0", h, "docker exec container01-alpine ip addr show",
             check=_same_address),
        Step("container01-alpine reaches the internet", h, "docker exec container01-alpine ping -c 2 google.com",
             expect_rc=None, check=ping_ok, requires=("internet",),
             hint="the host reaches the internet but its containers do not: NAT (iptables MASQUERADE) or forwarding"),
        Step("container01-alpine pings container02-alpine by address", h,
             lambda c: f"docker exec container01-alpine ping -c 2 {c.vars['ip2']}", expect_rc=None, check=ping_ok,
             hint="both containers are on the same bridge: iptables FORWARD rules on the host?"),
        Step("pinging container02-alpine by name fails (the default bridge has no DNS)", h,
             "docker exec container01-alpine ping -c 2 container02-alpine", expect_rc=None, check=_name_fails),
        Step("both containers are stopped", h, "docker container stop -t 1 container01-alpine container02-alpine",
             teardown=True, note="-t 1: their shells ignore SIGTERM, so don't wait the default 10 s"),
        Step("both containers are removed", h, "docker container rm container01-alpine container02-alpine",
             teardown=True),
    ]


# --- the catalog -----------------------------------------------------------------------

def _manager(spec: LabSpec) -> str:
    return spec.manager.name


def _worker(spec: LabSpec) -> str:
    return spec.workers[0].name


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("default-overlay",
             "ingress and docker_gwbridge; a 5-replica nginx on overlay nginx-net, the routing mesh, "
             "moving it to nginx-net-2",
             _default_overlay,
             lambda s: [Made(_manager(s), "service", ("container-nginx", "container-nginx-host")),
                        Made(_manager(s), "network", ("nginx-net", "nginx-net-2"))]),
    Scenario("user-defined-overlay",
             "a service on your own overlay rede01-overlay, published on port 8080",
             _user_defined_overlay,
             lambda s: [Made(_manager(s), "service", ("container01-nginx",)),
                        Made(_manager(s), "network", ("rede01-overlay",))],
             min_workers=1),
    Scenario("standalone-overlay",
             "standalone containers on two hosts talk over attachable overlay test-net, by name",
             _standalone_overlay,
             lambda s: [Made(_worker(s), "container", ("container02-alpine", "container03-alpine")),
                        Made(_manager(s), "container", ("container01-alpine",)),
                        Made(_manager(s), "network", ("test-net",))],
             min_workers=1),
    Scenario("container-to-service",
             "a standalone container on another host reaches a swarm service by name and by tasks.NAME",
             _container_to_service,
             lambda s: [Made(_worker(s), "container", ("client-alpine",)),
                        Made(_manager(s), "service", ("web-nginx",)), Made(_manager(s), "network", ("web-net",))],
             min_workers=1),
    Scenario("default-bridge",
             "two containers on the default bridge: ping by address works, by name does not (no DNS)",
             _default_bridge,
             lambda s: [Made(_manager(s), "container", ("container01-alpine", "container02-alpine"))],
             min_workers=0),
)}
