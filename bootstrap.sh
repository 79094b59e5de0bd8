#!/bin/sh
# First command on a fresh Debian 12 machine (as root): install everything,
# bring up the lab, show its status. Extra arguments go to `labctl up`.
set -eu
cd "$(dirname "$0")"
sh scripts/install-deps.sh
export VAGRANT_CHECKPOINT_DISABLE=1
exec .venv/bin/labctl up "$@"
