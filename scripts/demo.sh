#!/usr/bin/env bash
# Install infraboot and run the demo on embedded defaults (memory:// Redis, SQLite): no server needed.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[all]"
exec .venv/bin/infraboot demo "$@"    # serves until Ctrl-C; add --once to exit after printing
