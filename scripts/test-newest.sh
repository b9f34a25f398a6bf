#!/usr/bin/env bash
# The whole suite on the newest supported Python (3.13), in .venv-3.13: bash scripts/test-newest.sh [pytest args]
# Under CI=true a missing interpreter is a failure; elsewhere it is skipped with a note.
set -euo pipefail
cd "$(dirname "$0")/.."
py=""
for candidate in python3.13 "$HOME/.pyenv/versions/3.13.0/bin/python3.13" /usr/local/bin/python3.13; do
  if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null; then
    py=$(command -v "$candidate"); break
  fi
done
if [ -z "$py" ]; then
  for candidate in "$HOME"/.pyenv/versions/3.13*/bin/python3.13; do
    [ -x "$candidate" ] && py="$candidate" && break
  done
fi
if [ -z "$py" ]; then
  if [ "${CI:-}" = "true" ]; then echo "test-newest: no Python 3.13 found" >&2; exit 1; fi
  echo "test-newest: no Python 3.13 found; skipped"; exit 0
fi
bash scripts/services.sh
[ -x .venv-3.13/bin/python ] || "$py" -m venv .venv-3.13
.venv-3.13/bin/python -m pip install -q --disable-pip-version-check -e ".[dev]"
exec .venv-3.13/bin/python -m pytest "$@"
