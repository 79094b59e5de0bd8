#!/bin/sh
# Installs what labctl and its tests need on Debian 12 (as root), idempotently:
# Debian packages, a Python virtual environment with labctl in it, and a
# running Docker daemon (started here when none answers).
# --vm adds the libvirt provider: libvirt, qemu, vagrant-libvirt, and the tools that
# build the offline VM box (libvirtd itself is started by `labctl up`).
set -eu
cd "$(dirname "$0")/.."
repo=$(pwd)

DEBIAN_PACKAGES="docker.io vagrant debootstrap busybox-static iptables iproute2 openssh-client tcpdump tshark
 python3 python3-venv python3-pip ca-certificates"
if [ "${1:-}" = "--vm" ]; then
  DEBIAN_PACKAGES="$DEBIAN_PACKAGES libvirt-daemon-system libvirt-clients vagrant-libvirt qemu-system-x86 qemu-utils
 dnsmasq-base fdisk e2fsprogs mount"
fi

need_install=""
for pkg in $DEBIAN_PACKAGES; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_install="$need_install $pkg"
done
if [ -n "$need_install" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages:$need_install - run this script as root (or install them)" >&2
    exit 3
  fi
  echo "installing Debian packages:$need_install"
  apt-get update -qq
  # tshark asks whether non-root users may capture: the default (no) is fine
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need_install >/dev/null
fi

# A virtual environment: Debian's Python refuses system-wide pip installs.
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! .venv/bin/python -c 'import labctl, pytest' >/dev/null 2>&1 \
   || [ pyproject.toml -nt .venv/.installed ]; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e ".[test]"
  touch .venv/.installed
fi
# `labctl` on the PATH for root, unless something else already has that name.
if [ "$(id -u)" -eq 0 ] && [ -d /usr/local/bin ]; then
  current=$(readlink /usr/local/bin/labctl 2>/dev/null || true)
  if [ ! -e /usr/local/bin/labctl ] || [ "${current#*/.venv/bin/}" != "$current" ]; then
    ln -sf "$repo/.venv/bin/labctl" /usr/local/bin/labctl
  fi
fi

# A Docker daemon for the docker provider (VirtualBox/libvirt users may have none).
if ! docker info >/dev/null 2>&1; then
  if [ -d /run/systemd/system ]; then
    systemctl start docker
  else
    echo "starting dockerd (log: /var/log/labctl-dockerd.log)"
    setsid nohup dockerd >>/var/log/labctl-dockerd.log 2>&1 </dev/null &
  fi
  i=0
  until docker info >/dev/null 2>&1; do
    i=$((i + 1))
    [ "$i" -lt 120 ] || { echo "dockerd did not start; see /var/log/labctl-dockerd.log" >&2; exit 1; }
    sleep 0.5
  done
fi
