"""Checks shared by the scenarios. Each is a function of (context, result) that
raises Fail or Skip, or returns a note on what it saw; helper commands it needs
run through ctx.sh and are not shown (they are not part of the tutorial)."""

from __future__ import annotations

import shlex
from collections.abc import Callable

from .. import facts
from ..runner import Result
from ..ssh import fan_out, split_results
from . import parse
from .engine import Check, Ctx, Fail, Skip, StepResult

NGINX_PAGE = "Welcome to nginx"


def curl(url: str) -> str:
    return f"curl -sS -m 5 {url}"


def local_tasks(ctx: Ctx, host: str, service: str) -> list[str]:
    """Names of the running task containers of `service` on `host`."""
    out = ctx.sh(host, f"docker ps --filter label=com.docker.swarm.service.name={shlex.quote(service)} "
                       "--filter status=running --format '{{.Names}}'")
    return sorted(out.out.split())


def task_hosts(ctx: Ctx, service: str) -> dict[str, list[str]]:
    """Every host's running task containers of `service`."""
    found, _ = split_results(fan_out([ctx.hosts[h] for h in ctx.all_hosts],
                                     lambda h: local_tasks(ctx, h.name, service)))
    return found


SWARM_PORTS = (2377, 7946, 4789)


def firewall_evidence(ctx: Ctx, hosts: list[str]) -> str:
    """Firewall rules on `hosts` that drop the swarm's ports (2377, 7946, 4789)."""
    found = fan_out([ctx.hosts[h] for h in hosts], lambda h: facts.read(h, facts.FirewallRules()))
    lines = []
    for host in hosts:
        rules = found.get(host)
        if isinstance(rules, dict):
            lines += [f"{host}: `{r.rule}`" for r in facts.dropping(rules, SWARM_PORTS)]
    return "; ".join(lines)


def network_listed(host: str, *names: str, scope: str | None = None) -> Check:
    def check(ctx: Ctx, out: Result) -> str:
        rows = parse.network_ls(out.out)
        missing = [n for n in names if n not in rows or (scope and rows[n].scope != scope)]
        if missing:
            raise Fail(f"{host} does not list {', '.join(missing)}", output=out.out.strip())
        return ", ".join(f"{n} ({rows[n].driver}, {rows[n].id})" for n in names)
    return check


def network_not_listed(host: str, *names: str) -> Check:
    def check(ctx: Ctx, out: Result) -> str:
        present = [n for n in names if n in parse.network_ls(out.out)]
        if present:
            raise Fail(f"{host} still lists {', '.join(present)}", output=out.out.strip())
        return f"{', '.join(names)} not listed"
    return check


def replicas(service: str, count: int | None = None) -> Check:
    """`docker service ls` shows the service converged: n/n, n = count if given."""
    def check(ctx: Ctx, out: Result) -> str:
        found = parse.service_ls(out.out).get(service)
        if found is None:
            raise Fail(f"{service} is not listed", output=out.out.strip())
        running, desired = found
        want = desired if count is None else count
        if running != want or desired != want:
            raise Fail(f"{service} has {running}/{desired} replicas, waiting for {want}/{want}",
                       output=_service_ps(ctx, service))
        return f"{service} {running}/{desired}"
    return check


def updated(service: str, count: int | None = None) -> Check:
    """Converged and the rolling update finished."""
    converged = replicas(service, count)

    def check(ctx: Ctx, out: Result) -> str:
        note = converged(ctx, out)
        state = ctx.sh(ctx.manager, "docker service inspect --format "
                                    f"'{{{{if .UpdateStatus}}}}{{{{.UpdateStatus.State}}}}{{{{end}}}}' {service}")
        if state.out.strip() not in ("completed", ""):
            raise Fail(f"update of {service} is {state.out.strip()}", output=_service_ps(ctx, service))
        return f"{note}, update {state.out.strip() or 'done'}"
    return check


def _service_ps(ctx: Ctx, service: str) -> str:
    out = ctx.sh(ctx.manager, f"docker service ps --no-trunc {service} 2>&1 | head -12")
    return out.out.strip()


def inspect_lists_tasks(host: str, service: str, network: str, peers: bool = True,
                        absent_ok: bool = False, total: int | None = None) -> Check:
    """`docker network inspect NET` on `host` lists exactly the host's task containers
    (and, with `peers`, every host that runs a task among its Peers). With `total`,
    the last host also checks that all task containers were seen."""
    def check(ctx: Ctx, out: Result) -> str:
        tasks = local_tasks(ctx, host, service)
        if out.rc != 0:
            if tasks:
                raise Fail(f"{network} does not exist on {host}, which runs {len(tasks)} task(s)",
                           output=out.err.strip())
            if not absent_ok:
                raise Skip(f"{host} runs no task of {service}, so it has no copy of {network}")
            note = f"{host} runs no task and has no copy of {network}"
        else:
            info = parse.network_inspect(out.out)
            listed = sorted(info.tasks())
            if listed != tasks:
                raise Fail(f"Containers lists {listed or 'nothing'}, but {host} runs {tasks or 'no task'}",
                           output=out.out.strip()[-800:])
            note = f"{len(listed)} task container(s)"
            if peers and tasks:
                want = {ctx.ip(h) for h, t in task_hosts(ctx, service).items() if t}
                have = set(info.peers.values())
                if not want <= have:
                    raise Fail(f"Peers lists {sorted(have) or 'nobody'}; missing {sorted(want - have)}",
                               output=out.out.strip()[-800:])
                note += f", peers {', '.join(sorted(have))}"
        if total is not None:
            seen = ctx.vars.setdefault(f"seen:{network}", {})
            seen[host] = len(tasks)
            if len(seen) == len(ctx.all_hosts) and sum(seen.values()) != total:
                raise Fail(f"{sum(seen.values())} task containers on {network} across the hosts, not {total}")
        return note
    return check


def no_tasks_on(host: str, network: str) -> Check:
    def check(ctx: Ctx, out: Result) -> str:
        if out.rc != 0:
            if "no such network" in (out.err + out.out).lower():
                return f"{network} is gone from {host}"
            raise Fail(f"`docker network inspect {network}` failed", output=out.err.strip())
        left = sorted(parse.network_inspect(out.out).tasks())
        if left:
            raise Fail(f"{network} still has {', '.join(left)}")
        return "no task container attached"
    return check


def nginx_page(ctx: Ctx, out: Result) -> str:
    if NGINX_PAGE not in out.out:
        raise Fail("no nginx welcome page in the answer", output=(out.out + out.err).strip()[-400:])
    return "nginx answered"


# A name on another host arrives by gossip; after a dockerd restart that can take a minute.
# A name that resolves but does not answer is lost traffic: no use waiting as long for it.
RESOLVED_NO_REPLY_RETRY = 10.0


def ping_ok(ctx: Ctx, out: Result) -> str:
    ping = facts.parse_ping(out.out + "\n" + out.err)
    received = ping.received
    if out.rc != 0 or not received:
        if ping.unresolved:
            raise Fail("the name does not resolve", output=(out.out + out.err).strip())
        raise Fail("no reply", output=(out.out + out.err).strip(), retry_for=RESOLVED_NO_REPLY_RETRY)
    return f"{received} replies"


def overlay_ping_hint(src: str, dst: str, target: str) -> Callable[[Ctx, StepResult], str]:
    """The likely cause of a failed ping across hosts on an overlay."""
    def hint(ctx: Ctx, result: StepResult) -> str:
        if facts.parse_ping(result.output).unresolved:
            cause = (f"{target} does not resolve: {src}'s embedded DNS learns of containers on {dst} through "
                     f"the swarm's gossip (TCP/UDP 7946), which may be blocked between them")
        else:
            cause = (f"{target} resolves but does not answer: the overlay's VXLAN traffic (UDP 4789) between "
                     f"{src} ({ctx.ip(src)}) and {dst} ({ctx.ip(dst)}) is blocked or lost")
        evidence = firewall_evidence(ctx, sorted({src, dst}))
        return f"{cause}; firewall rules found: {evidence}" if evidence else cause
    return hint
