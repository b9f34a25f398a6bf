"""The command line: the demo runs with no server, check reports and exits with a meaningful code."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import infraboot
from infraboot._front._failures import failure_lines

from .servers import free_port


def clean_env(**env: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "DATABASE_", "INFRABOOT_"))}
    return {**clean, **env}


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return python("-m", "infraboot", *args, **env)


def python(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        check=False,
        capture_output=True,
        text=True,
        env=clean_env(**env),
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


def silent_port() -> tuple[socket.socket, int]:
    """A port that accepts the connection (the backlog does) and never answers: a hung server."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock, sock.getsockname()[1]


def test_a_start_cut_short_by_another_failure_is_not_a_failure_of_its_own() -> None:
    """Redis hangs, the database refuses: redis is 'cancelled' in the table, and no failure line is its (#24)."""
    sock, port = silent_port()
    with sock:
        out = run(
            "check",
            REDIS_URL=f"redis://127.0.0.1:{port}/0",
            REDIS_CONNECT_TIMEOUT="20",
            DATABASE_URL=f"postgresql+asyncpg://app@127.0.0.1:{free_port()}/app",
            DATABASE_MAX_RETRIES="0",
        )
    assert 2 == out.returncode
    table = dict(line.split(None, 1) for line in out.stdout.split("\n\n")[0].splitlines()[1:])
    assert table["redis"].startswith("cancelled")
    assert "not finished: stopped because 'database' failed" in table["redis"]
    assert "failed after" in out.stderr  # the database's own line
    assert "'redis'" not in out.stderr
    assert "cancelled" not in out.stderr


def test_wait_names_the_last_real_error_of_a_start_cut_short() -> None:
    """At the timeout redis, retrying after 'refused', is cut short: wait says 'refused', not 'cancelled' (#24)."""
    sock, port = silent_port()
    with sock:
        out = run(
            "wait",
            "--timeout",
            "3",
            REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
            REDIS_MAX_RETRIES="1000",
            DATABASE_URL=f"postgresql+asyncpg://app@127.0.0.1:{port}/app",
            DATABASE_CONNECT_TIMEOUT="30",
        )
    assert 2 == out.returncode
    assert "gave up after 3s: redis: refused; database: no answer (still starting)" in out.stderr, out.stderr


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
    assert 130 == proc.returncode
    assert "Traceback" not in output


# -- one exit-code contract: 2 for configuration and startup failures, one line per problem ---------

BAD_TIMEOUT = (
    "infraboot: INFRABOOT_SHUTDOWN_TIMEOUT='-1': must be a finite number of seconds > 0, "
    "e.g. INFRABOOT_SHUTDOWN_TIMEOUT=30"
)


@pytest.mark.parametrize("command", [["check"], ["check", "--json"], ["graph"], ["wait", "--timeout", "5"]])
def test_a_bad_infraboot_variable_exits_2_with_one_line(command: list[str]) -> None:
    """A bad INFRABOOT_* value is one line naming the variable and its value, exit 2, no traceback."""
    out = run(*command, INFRABOOT_SHUTDOWN_TIMEOUT="-1", REDIS_URL="memory://")
    assert (2, [BAD_TIMEOUT], "") == (out.returncode, out.stderr.splitlines(), out.stdout)


def test_every_bad_infraboot_variable_is_reported_at_once() -> None:
    """Type and range problems of several variables come together, one line each, in one run."""
    out = run(
        "check",
        INFRABOOT_SHUTDOWN_TIMEOUT="-1",
        INFRABOOT_CHECK_TTL="soon",
        INFRABOOT_FAILURE_THRESHOLD="0",
        INFRABOOT_CHECK_INTERVAL="off",
    )
    expected = [
        BAD_TIMEOUT,
        "infraboot: INFRABOOT_CHECK_TTL='soon': must be a number of seconds > 0, e.g. INFRABOOT_CHECK_TTL=1",
        "infraboot: INFRABOOT_FAILURE_THRESHOLD='0': must be a whole number >= 1, e.g. INFRABOOT_FAILURE_THRESHOLD=1",
    ]
    assert (2, expected) == (out.returncode, out.stderr.splitlines())


BAD_JSON = (
    "infraboot: REDIS_CLIENT_OPTIONS is not valid JSON (Expecting property name enclosed in double quotes "
    """at character 2); give a JSON object, e.g. REDIS_CLIENT_OPTIONS='{"decode_responses": true}'"""
)


@pytest.mark.parametrize("command", [["check"], ["wait", "--timeout", "5"]])
def test_invalid_json_in_an_options_variable_exits_2_with_one_line(command: list[str]) -> None:
    """REDIS_CLIENT_OPTIONS='{bad' is one line naming the variable, exit 2, no SettingsError traceback."""
    out = run(*command, REDIS_URL="memory://", REDIS_CLIENT_OPTIONS="{bad", DATABASE_ENABLED="false")
    assert (2, [BAD_JSON]) == (out.returncode, out.stderr.splitlines())


def test_a_worker_with_invalid_json_options_exits_2_with_one_line(tmp_path: Path) -> None:
    """infraboot.asyncio.run() reports invalid JSON in REDIS_CLIENT_OPTIONS as the CLI does: one line, exit 2."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER.replace('components=["jobs"]', 'components=["jobs", "redis"]').format(body=""))
    out = python(str(script), REDIS_URL="memory://", REDIS_CLIENT_OPTIONS="{bad")
    assert (2, [BAD_JSON], "") == (out.returncode, out.stderr.splitlines(), out.stdout)


def test_check_warns_about_a_misspelt_variable_before_the_table() -> None:
    """check prints a misspelt variable under our prefixes with the did-you-mean, and still checks."""
    out = run("check", "redis", REDIS_URL="memory://", REDIS_REQUIRD="false")
    warning = (
        "infraboot: warning: REDIS_REQUIRD is not a setting infraboot reads (ignored); did you mean REDIS_REQUIRED?"
    )
    assert (0, [warning]) == (out.returncode, out.stderr.splitlines())


def test_a_missing_extra_names_the_install_command() -> None:
    """A bare install (no pydantic) makes check exit 2 with the pip command, not a ModuleNotFoundError."""
    code = (
        "import sys; sys.modules['pydantic'] = None; "  # what `import pydantic` meets on a bare install
        "from infraboot.__main__ import main; raise SystemExit(main(['check']))"
    )
    out = python("-c", code, REDIS_URL="memory://")
    assert 2 == out.returncode
    assert 'pip install "infraboot[redis]"' in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize(
    ("module", "extra"),
    [
        ("redis.asyncio", "redis"),
        ("asyncpg", "postgres"),
        ("aiosqlite", "sqlite"),
        ("fastapi", "fastapi"),
        ("prometheus_client", "metrics"),
    ],
)
def test_each_optional_dependency_maps_to_its_extra(module: str, extra: str) -> None:
    """The missing module's name picks the extra whose install command is printed."""
    lines = failure_lines(ModuleNotFoundError(f"No module named {module!r}", name=module))
    assert lines is not None
    assert f'pip install "infraboot[{extra}]"' in lines[0]


def test_an_unknown_import_error_is_not_disguised_as_a_missing_extra() -> None:
    """An ImportError of a module no extra installs is a bug: it is not turned into an install hint."""
    assert None is failure_lines(ModuleNotFoundError("No module named 'myapp'", name="myapp"))


@pytest.mark.parametrize("command", [["graph"], ["check", "redis"], ["check", "redis", "--json"]])
def test_a_closed_stdout_is_not_a_traceback(command: list[str]) -> None:
    """When the reader goes away (`infraboot graph | head -1`), the CLI exits 141 quietly."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "infraboot", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(REDIS_URL="memory://"),
    )
    assert proc.stdout is not None
    proc.stdout.close()  # before the child writes: its first write (or flush) meets a closed pipe
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (141, "") == (proc.returncode, err)


def test_a_closed_stdout_through_head_is_quiet() -> None:
    """`infraboot graph | head -1` prints the first line and no traceback."""
    out = subprocess.run(
        ["/bin/sh", "-c", f"{sys.executable} -m infraboot graph | head -1"],
        check=False,
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
    )
    assert (0, "level 0 (start together):\n", "") == (out.returncode, out.stdout, out.stderr)


WORKER = """
import infraboot
import infraboot.asyncio


@infraboot.component("jobs")
async def jobs(ctx):
    yield "queue"


infraboot.register(jobs)  # at import time, before any INFRABOOT_* value is checked


async def main(system):
    print("main ran")
    {body}


infraboot.asyncio.run(main, components=["jobs"], signals=())
"""


def test_a_worker_registering_at_import_reports_a_bad_variable(tmp_path: Path) -> None:
    """A worker that registers at import time imports fine; run() prints the bad variable and exits 2."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(body=""))
    out = python(str(script), INFRABOOT_SHUTDOWN_TIMEOUT="-1")
    assert (2, [BAD_TIMEOUT], "") == (out.returncode, out.stderr.splitlines(), out.stdout)


def test_a_worker_with_good_variables_runs(tmp_path: Path) -> None:
    """The same worker with valid INFRABOOT_* values starts, runs main and exits 0."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(body=""))
    out = python(str(script), INFRABOOT_SHUTDOWN_TIMEOUT="5", INFRABOOT_CHECK_INTERVAL="off")
    assert (0, "main ran\n") == (out.returncode, out.stdout), out.stderr


def test_run_exits_130_on_a_keyboard_interrupt(tmp_path: Path) -> None:
    """A KeyboardInterrupt that run()'s signal handling did not catch is exit 130, no traceback."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(body="raise KeyboardInterrupt"))
    out = python(str(script))
    assert (130, "") == (out.returncode, out.stderr)


def test_ctrl_c_during_wait_exits_130() -> None:
    """SIGINT while wait is retrying stops it with status 130 and no traceback."""
    dead = f"redis://127.0.0.1:{free_port()}/0"
    proc = subprocess.Popen(
        [sys.executable, "-m", "infraboot", "wait", "redis", "--timeout", "30"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(REDIS_URL=dead, REDIS_CONNECT_TIMEOUT="0.3", REDIS_MAX_RETRIES="0"),
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # bounded: wait gives up (and closes stdout) after 30 s
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert first.startswith("waiting (")
    assert (130, "") == (proc.returncode, err)
