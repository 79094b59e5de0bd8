#!/bin/sh
# The whole test suite: unit tests, then end-to-end tests against a real lab
# (docker provider) that the tests create and destroy. Installs what it needs.
set -eu
cd "$(dirname "$0")"
sh scripts/install-deps.sh --vm
export VAGRANT_CHECKPOINT_DISABLE=1
.venv/bin/ruff check labctl diagnostics tests bench
.venv/bin/mypy labctl diagnostics
exec .venv/bin/python -m pytest -ra "$@"
