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
    assert '"status": "pass"' in out.stdout
    assert "shut down: redis, database" in out.stdout


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


def test_check_prints_a_table_and_the_waterfall() -> None:
    """check shows component, state, latency, attempts and error code, then the startup waterfall."""
    out = run("check", "--timeout", "10", REDIS_URL="memory://", DATABASE_URL="sqlite+aiosqlite:///:memory:")
    assert 0 == out.returncode, out.stderr
    header = out.stdout.splitlines()[0].split()
    assert ["component", "state", "latency", "attempts", "error"] == header
    assert "startup ok" in out.stdout


def test_check_refuses_a_bad_timeout() -> None:
    """--timeout must be a positive number of seconds; argparse says so and exits 2."""
    out = run("check", "--timeout", "soon")
    assert 2 == out.returncode
    assert "must be a number of seconds > 0" in out.stderr


def test_wait_returns_once_everything_answers() -> None:
    """wait exits 0 at once when the components are reachable."""
    out = run("wait", "--timeout", "10", REDIS_URL="memory://", DATABASE_URL="sqlite+aiosqlite:///:memory:")
    assert 0 == out.returncode, out.stderr
    assert out.stdout.startswith("ready after")


def test_wait_gives_up_at_the_timeout_with_the_reason() -> None:
    """wait prints progress while a server refuses, and exits 2 at the timeout naming the error."""
    dead = f"redis://127.0.0.1:{free_port()}/0"
    out = run("wait", "redis", "--timeout", "1.5", REDIS_URL=dead, REDIS_CONNECT_TIMEOUT="0.3", REDIS_MAX_RETRIES="0")
    assert 2 == out.returncode
    assert "waiting (" in out.stdout
    assert "gave up after 1.5s: redis: refused" in out.stderr


def test_graph_formats() -> None:
    """graph prints the built-in components as text, mermaid and dot."""
    text, mermaid, dot = (run("graph", "--format", f) for f in ("text", "mermaid", "dot"))
    assert (0, 0, 0) == (text.returncode, mermaid.returncode, dot.returncode)
    assert text.stdout.startswith("level 0 (start together):")
    assert mermaid.stdout.startswith("graph TD")
    assert dot.stdout.startswith("digraph infraboot {")
    assert '"redis"' in dot.stdout


def test_demo_serves_until_interrupted(tmp_path: object) -> None:
    """Without --once the demo serves HTTP; SIGINT stops it and it shuts down cleanly."""
    import signal
    import time
    import urllib.request

    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "DATABASE_"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "infraboot", "demo", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=clean,
    )
    try:
        deadline = time.monotonic() + 30
        body = ""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                    body = response.read().decode()
                break
            except OSError:
                time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert '"answer":42' in body
    assert "shut down: redis, database" in output
