#!/usr/bin/env bash
# The whole suite against the lowest supported dependency versions (tests/constraints-lowest.txt),
# on the oldest supported Python, in .venv-lowest: bash scripts/test-lowest.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/services.sh
[ -x .venv-lowest/bin/python ] || python3 -m venv .venv-lowest
.venv-lowest/bin/python -m pip install -q --disable-pip-version-check -c tests/constraints-lowest.txt -e ".[dev]"
exec .venv-lowest/bin/python -m pytest "$@"
