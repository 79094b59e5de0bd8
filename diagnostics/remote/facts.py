"""Runs ON a lab host (as root, `python3 - CONFIG_JSON`): the host's own facts as one JSON line.

Only reads state (plus a throw-away VXLAN link and genetlink query that test the
kernel). Standard library only: the host may lack everything but python3.
"""

import glob
import json
import os
import socket
import struct
import subprocess
import sys

CONFIG = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}


def run(cmd, timeout=8.0):
    """A command as a list of words: no shell ever reads a value the host reported."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        return p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired:
        return 124, "", f"timed out after {timeout:.0f} s"
    except OSError as exc:
        return 127, "", f"{cmd[0]}: {exc.strerror or exc}"


def jrun(cmd, default):
    rc, out, _ = run(cmd)
    if rc != 0:
        return default
    try:
        return json.loads(out)
    except ValueError:
        return default


def genl_family_exists(name):
    """Ask the kernel's generic netlink controller for a family (as dockerd does for IPVS)."""
    try:
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 16)  # NETLINK_GENERIC
    except OSError:
        return None
    try:
        s.settimeout(2)
        s.bind((0, 0))
        attr_name = name.encode() + b"\0"
        attr = struct.pack("HH", 4 + len(attr_name), 2) + attr_name  # CTRL_ATTR_FAMILY_NAME
        attr += b"\0" * ((4 - len(attr) % 4) % 4)
        genl = struct.pack("BBH", 3, 1, 0)  # CTRL_CMD_GETFAMILY, version 1
        body = genl + attr
        msg = struct.pack("IHHII", 16 + len(body), 0x10, 1, 1, 0) + body  # GENL_ID_CTRL, NLM_F_REQUEST
        s.send(msg)
        data = s.recv(65536)
        _, mtype = struct.unpack("IH", data[:6])
        if mtype == 2:  # NLMSG_ERROR
            err = struct.unpack("i", data[16:20])[0]
            return err == 0
        return True
    except OSError:
        return None
    finally:
        s.close()


def kernel():
    name = "labctlvxtest"
    run(["ip", "link", "del", name])
    rc, _, err = run(["ip", "link", "add", name, "type", "vxlan", "id", "16777200", "dstport", "0", "nolearning"])
    vxlan = rc == 0
    run(["ip", "link", "del", name])
    ipvs = genl_family_exists("IPVS")
    # Docker's encrypted overlay installs ESP SAs with AES-GCM (rfc4106): try one, then remove it.
    spi = "0x4c414201"
    sa = ["src", "198.51.100.1", "dst", "198.51.100.2", "proto", "esp", "spi", spi]
    rc2, _, err2 = run(["ip", "xfrm", "state", "add", *sa, "mode", "transport",
                        "aead", "rfc4106(gcm(aes))", "0x0102030405060708090a0b0c0d0e0f1011121314", "128"])
    esp = rc2 == 0
    if esp:
        run(["ip", "xfrm", "state", "del", *sa])
    return {
        "vxlan": vxlan, "vxlan_error": err.strip()[:200],
        "ipvs": ipvs,
        "esp": esp, "esp_error": err2.strip()[:200],
        "release": os.uname().release,
    }


def interfaces():
    out = []
    for link in jrun(["ip", "-j", "addr", "show"], []):
        addrs = [f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", []) if a.get("family") == "inet"]
        out.append({"name": link.get("ifname", ""), "mtu": link.get("mtu", 0), "up": "UP" in link.get("flags", []),
                    "addrs": addrs})
    return out


def routes():
    return [r.get("dst", "") for r in jrun(["ip", "-j", "route", "show"], []) if r.get("dst") not in (None, "default")]


def route_to(ip):
    r = jrun(["ip", "-j", "route", "get", str(ip)], [])
    if not r:
        return {"dev": "", "src": ""}
    return {"dev": r[0].get("dev", ""), "src": r[0].get("prefsrc", "")}


def docker_state():
    rc, out, err = run(["docker", "info", "--format", "{{json .}}"], timeout=10)
    try:
        info = json.loads(out) if rc == 0 else {}
    except ValueError:
        info = {}
    # Newer clients exit 0 with ServerErrors when no daemon answers.
    if rc != 0 or not info.get("ServerVersion"):
        alive = run(["pgrep", "-x", "dockerd"])[0] == 0
        why = "; ".join(info.get("ServerErrors") or []) or err.strip() or out.strip()
        return {"running": False, "error": why[-300:], "process": alive}
    swarm = info.get("Swarm") or {}
    cluster = swarm.get("Cluster") or {}
    return {
        "running": True, "error": "", "process": True,
        "version": info.get("ServerVersion", ""),
        "swarm_state": swarm.get("LocalNodeState") or "inactive",
        "swarm_error": swarm.get("Error") or "",
        "node_id": swarm.get("NodeID") or "",
        "node_addr": swarm.get("NodeAddr") or "",
        "is_manager": bool(swarm.get("ControlAvailable")),
        "remote_managers": [m.get("Addr", "") for m in swarm.get("RemoteManagers") or []],
        "data_path_port": cluster.get("DataPathPort") or 0,
        "default_addr_pool": cluster.get("DefaultAddrPool") or [],
    }


def overlay_networks():
    ids = run(["docker", "network", "ls", "-q", "--filter", "driver=overlay"])[1].split()
    nets = []
    for nid in ids:
        data = jrun(["docker", "network", "inspect", "-v", "--", nid], [])
        if not data:
            continue
        n = data[0]
        opts = n.get("Options") or {}
        vnis = [int(v) for v in (opts.get("com.docker.network.driver.overlay.vxlanid_list") or "").split(",") if v]
        nets.append({
            "name": n.get("Name", ""), "id": n.get("Id", ""),
            "subnets": [c.get("Subnet", "") for c in (n.get("IPAM") or {}).get("Config") or []],
            "vnis": vnis,
            "mtu": int(opts.get("com.docker.network.driver.mtu") or 0),
            "encrypted": "encrypted" in opts,
            "ingress": bool(n.get("Ingress")),
            "local_containers": len(n.get("Containers") or {}),
            "peers": [p.get("IP", "") for p in n.get("Peers") or []],
        })
    return nets


def vxlan_devices():
    """VXLAN links in docker's network sandboxes: VNI, port, MTU, and peers in the forwarding table."""
    devs = []
    for ns in glob.glob("/var/run/docker/netns/*"):
        links = jrun(["nsenter", f"--net={ns}", "ip", "-d", "-j", "link", "show", "type", "vxlan"], [])
        for link in links:
            info = (link.get("linkinfo") or {}).get("info_data") or {}
            name = link.get("ifname", "")
            fdb = jrun(["nsenter", f"--net={ns}", "bridge", "-j", "fdb", "show", "dev", name], [])
            devs.append({
                "ns": os.path.basename(ns), "name": name, "vni": info.get("id", 0), "port": info.get("port", 0),
                "mtu": link.get("mtu", 0), "fdb_peers": sorted({e["dst"] for e in fdb if e.get("dst")}),
            })
    return devs


def services():
    rc, out, _ = run(["docker", "service", "ls", "-q"])
    if rc != 0 or not out.split():
        return []
    data = jrun(["docker", "service", "inspect", "--", *out.split()], [])
    res = []
    for s in data:
        spec = s.get("Spec") or {}
        ep = spec.get("EndpointSpec") or {}
        res.append({"name": spec.get("Name", ""), "mode": ep.get("Mode", "vip"),
                    "published": [p.get("PublishedPort") for p in ep.get("Ports") or []
                                  if p.get("PublishMode", "ingress") == "ingress"]})
    return res


def nodes():
    ids = run(["docker", "node", "ls", "-q"])[1].split()
    return jrun(["docker", "node", "inspect", "--", *ids], []) if ids else []


def main():
    peers = CONFIG.get("peers", [])
    docker = docker_state()
    facts = {
        "hostname": socket.gethostname(),
        "docker": docker,
        "interfaces": interfaces(),
        "routes": routes(),
        "routes_to_peers": {ip: route_to(ip) for ip in peers},
        "kernel": kernel(),
        "overlays": overlay_networks() if docker["running"] else [],
        "vxlan": vxlan_devices() if docker["running"] else [],
        "services": services() if docker["running"] and docker.get("is_manager") else [],
        "nodes": nodes() if docker["running"] and docker.get("is_manager") else [],
    }
    facts["nodes"] = [{"id": n.get("ID", ""), "hostname": (n.get("Description") or {}).get("Hostname", ""),
                       "role": (n.get("Spec") or {}).get("Role", ""),
                       "state": (n.get("Status") or {}).get("State", ""),
                       "addr": (n.get("Status") or {}).get("Addr", "")} for n in facts["nodes"]]
    print(json.dumps(facts))


main()
