"""The test-kit example (examples/kit_app) passes its own suite: anyio, a throwaway PostgreSQL, a Redis outage."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parent.parent / "examples" / "kit_app"

pytestmark = pytest.mark.real


def test_the_examples_own_suite_passes(real_database: tuple[str, str, int], real_redis: tuple[str, str, int]) -> None:
    """Run from its own folder with its own configuration (anyio's plugin, pytest-asyncio off), nothing skipped."""
    env = {**os.environ, "INFRABOOT_TEST_DATABASE_URL": real_database[0], "INFRABOOT_TEST_REDIS_URL": real_redis[0]}
    args = [sys.executable, "-m", "pytest", "-q", "-rs"]
    out = subprocess.run(args, check=False, capture_output=True, text=True, cwd=EXAMPLE, env=env, timeout=300)
    assert 0 == out.returncode, f"{out.stdout}\n{out.stderr}"
    assert re.search(r"\b4 passed\b", out.stdout), out.stdout
    assert "skipped" not in out.stdout, out.stdout
