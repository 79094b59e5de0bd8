#!/bin/sh
# Idempotent: on a host with a kernel of its own (a VM), loads the kernel modules the
# swarm needs and makes them load at every boot. ip_vs: the routing mesh and service
# VIPs; br_netfilter: the bridge's traffic through iptables; vxlan: overlay networks;
# esp4: encrypted overlays. A container node shares its machine's kernel: nothing to do.
set -eu
if [ -f /.dockerenv ] || grep -qa 'container=' /proc/1/environ 2>/dev/null; then
  exit 0
fi
command -v modprobe >/dev/null 2>&1 || exit 0
conf=/etc/modules-load.d/labctl-swarm.conf
loaded=""
missing=""
builtin="/lib/modules/$(uname -r)/modules.builtin"
for module in ip_vs br_netfilter vxlan esp4; do
  if grep -q "/$module.ko" "$builtin" 2>/dev/null; then
    continue  # built into the kernel
  fi
  if [ ! -d "/sys/module/$module" ]; then
    if modprobe "$module" 2>/dev/null; then
      loaded="$loaded $module"
    else
      missing="$missing $module"
    fi
  fi
  if [ -d /etc/modules-load.d ] && ! grep -qx "$module" "$conf" 2>/dev/null && [ -d "/sys/module/$module" ]; then
    echo "$module" >> "$conf"
  fi
done
[ -z "$loaded" ] || echo "changed: loaded kernel modules$loaded (kept in $conf)"
[ -z "$missing" ] || echo "kernel modules not available:$missing" >&2
exit 0
