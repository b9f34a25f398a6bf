"""The command line: the demo runs with no server, check reports and exits with a meaningful code."""

from __future__ import annotations

import os
import subprocess
import sys

import infraboot

from .servers import free_port


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "DATABASE_"))}
    return subprocess.run(
        [sys.executable, "-m", "infraboot", *args],
        check=False,
        capture_output=True,
        text=True,
        env={**clean, **env},
        timeout=60,
    )


def test_version() -> None:
    """--version prints the package version."""
    out = run("--version")
    assert (0, infraboot.__version__) == (out.returncode, out.stdout.strip())


def test_demo_runs_on_embedded_defaults() -> None:
    """The demo starts memory:// Redis and SQLite, uses both, and shuts down cleanly."""
    out = run("demo", "--once")
    assert 0 == out.returncode, out.stderr
    assert "startup ok" in out.stdout
    assert "the database says 6 * 7 = 42" in out.stdout
    assert "shutdown ok" in out.stdout


def test_check_exit_codes() -> None:
    """0 when healthy, 1 when only optional components are down, 2 when a required one failed."""
    dead = f"redis://127.0.0.1:{free_port()}/0"
    healthy = run("check", "redis", REDIS_URL="memory://")
    degraded = run("check", "redis", REDIS_URL=dead, REDIS_REQUIRED="false", REDIS_CONNECT_TIMEOUT="0.5")
    failed = run("check", "redis", REDIS_URL=dead, REDIS_CONNECT_TIMEOUT="0.3", REDIS_MAX_RETRIES="0")
    assert (0, 1, 2) == (healthy.returncode, degraded.returncode, failed.returncode)
    assert "required component 'redis'" in failed.stderr


def test_bad_configuration_prints_one_line_per_problem() -> None:
    """A configuration error is a clear message and exit 2, never a traceback."""
    out = run(
        "check",
        "redis",
        "database",
        REDIS_URL="http://x",
        DATABASE_URL="postgresql+asyncpg://h/db",
        DATABASE_POOL_SIZE="0",
    )
    assert 2 == out.returncode
    assert 2 == len(out.stderr.strip().splitlines())
    assert "Traceback" not in out.stderr
