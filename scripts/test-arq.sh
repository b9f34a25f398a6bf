#!/usr/bin/env bash
# The arq adapter's tests, in a venv of their own: arq pins redis<6 and infraboot[redis] needs redis>=8,
# so the two cannot share .venv (pydantic: the default system reads the built-ins' settings names even when
# they are not started). bash scripts/test-arq.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/services.sh
[ -x .venv-arq/bin/python ] || python3 -m venv .venv-arq
.venv-arq/bin/python -m pip install -q --disable-pip-version-check "arq==0.28.0" -e ".[arq]" "pydantic>=2.5" "pydantic-settings>=2.1" "pytest>=8" "pytest-asyncio>=0.23" "pytest-timeout>=2.2"
exec .venv-arq/bin/python -m pytest tests/integrations/test_arq.py "$@"
