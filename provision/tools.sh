#!/bin/sh
# Idempotent: what labctl's diagnostics and scenarios need on a host.
set -eu
export DEBIAN_FRONTEND=noninteractive
missing=""
command -v python3 >/dev/null 2>&1 || missing="$missing python3"
python3 -c 'import scapy' >/dev/null 2>&1 || missing="$missing python3-scapy"
command -v tcpdump >/dev/null 2>&1 || missing="$missing tcpdump"
command -v ip >/dev/null 2>&1 || missing="$missing iproute2"
command -v iptables >/dev/null 2>&1 || missing="$missing iptables"
command -v curl >/dev/null 2>&1 || missing="$missing curl"
if [ -n "$missing" ]; then
  apt-get update -qq
  # shellcheck disable=SC2086 # word splitting of the package list is wanted
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
  echo "changed: installed$missing"
fi
