#!/bin/sh
# Idempotent: installs Docker from the distribution's packages when it is
# missing, and starts it, with or without systemd. Prints one line per change.
set -eu
export DEBIAN_FRONTEND=noninteractive

if ! command -v dockerd >/dev/null 2>&1; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends docker.io >/dev/null
  echo "changed: installed docker.io"
fi

if docker info >/dev/null 2>&1; then
  exit 0
fi

if ! pgrep -x dockerd >/dev/null 2>&1; then
  # A host restarted without a clean dockerd stop keeps its pid files; when the old
  # pid now belongs to another process, dockerd refuses to start ("pid file found").
  rm -f /var/run/docker.pid /var/run/docker/containerd/containerd.pid
fi
if [ -d /run/systemd/system ]; then
  systemctl enable --now docker >/dev/null 2>&1 || systemctl restart docker
else
  # No init system (a docker-provider node). `service docker start` fails there
  # (its ulimit call is refused), so start dockerd directly, detached.
  setsid nohup dockerd >>/var/log/dockerd.log 2>&1 </dev/null &
fi
i=0
until docker info >/dev/null 2>&1; do
  i=$((i + 1))
  if [ "$i" -ge 300 ]; then
    echo "dockerd did not start within 30 s; last lines of its log:" >&2
    tail -n 5 /var/log/dockerd.log >&2 2>/dev/null || journalctl -u docker -n 5 >&2 || true
    exit 1
  fi
  sleep 0.1
done
echo "changed: started dockerd"
