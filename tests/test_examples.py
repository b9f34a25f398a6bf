"""Every example runs on the embedded defaults, with no server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.py"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(path: Path) -> None:
    """The example exits 0 and prints a successful startup."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "DATABASE_"))}
    args = [sys.executable, str(path), "--once"]  # the servers and the worker exit after one round
    out = subprocess.run(args, check=False, capture_output=True, text=True, env=env, timeout=60)
    assert 0 == out.returncode, out.stderr
    assert "startup ok" in out.stdout


def test_custom_component_example_limits() -> None:
    """The rate limiter example allows two calls and refuses the third."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "DATABASE_"))}
    path = Path(__file__).parent.parent / "examples" / "custom_component.py"
    out = subprocess.run([sys.executable, str(path)], check=True, capture_output=True, text=True, env=env, timeout=60)
    assert "[True, True, False]" in out.stdout
