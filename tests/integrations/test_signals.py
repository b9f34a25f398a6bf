"""SIGTERM is prompt in every mode: during a startup that keeps retrying, and with a handler that never ends."""

from __future__ import annotations

import signal
import socket
import sys
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.version import Version

httpx = pytest.importorskip("httpx")

from tests.integrations.conftest import APPS, Serve, uvicorn_args
from tests.servers import AppProcess, TcpProxy

pytestmark = pytest.mark.real

# uvicorn's status when the lifespan startup failed (its STARTUP_FAILURE); gunicorn's arbiter halts with the same.
STARTUP_FAILED = 3
# A SIGTERM that ended the startup: uvicorn >= 0.50 exits STARTUP_FAILED, older ones re-raise the signal
# (-SIGTERM), and gunicorn's arbiter then sees no boot error and exits 0 (the lowest-versions run has 0.31).
SIGTERM_STARTUP_STATUS = STARTUP_FAILED if Version(version("uvicorn")) >= Version("0.50") else -signal.SIGTERM
# uvicorn re-raises the SIGTERM it handled once it has shut down gracefully.
GRACEFUL = (0, -signal.SIGTERM)
# From SIGTERM to the process gone, interpreter exit included, on a loaded 2-core machine (measured: 0.1-1.1 s).
PROMPT = 4.0
# Retries that would keep a startup busy for about 20 s if nothing stopped them.
SLOW_RETRIES = {"REDIS_MAX_RETRIES": "12", "REDIS_CONNECT_TIMEOUT": "2"}


def uvicorn(port: int, *extra: str) -> list[str]:
    return uvicorn_args("signals_app:app", port, *extra, app_dir=APPS)


def gunicorn(port: int, worker: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--chdir",
        "tests/integrations/apps",
        "-k",
        worker,
        "-b",
        f"127.0.0.1:{port}",
        *extra,
        "signals_app:app",
    ]


@pytest.fixture
def dead_redis(real_redis: tuple[str, str, int]) -> Iterator[TcpProxy]:
    """A proxy in front of the real Redis that refuses every connection."""
    proxy = TcpProxy(real_redis[2])
    proxy.set_mode("refuse")
    try:
        yield proxy
    finally:
        proxy.close()


def redis_url(proxy: TcpProxy) -> str:
    return f"redis://127.0.0.1:{proxy.port}/15"


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def stop_and_time(app: AppProcess, sig: signal.Signals = signal.SIGTERM) -> tuple[int, float]:
    """Send *sig*; the exit status and the seconds from the signal to the process gone."""
    t0 = time.monotonic()
    app.proc.send_signal(sig)
    status = app.wait(timeout=60)
    return status, time.monotonic() - t0


@pytest.mark.parametrize("mode", ["refuse", "blackhole"])
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_sigterm_during_a_retrying_foreground_startup_under_uvicorn_stops_it_and_rolls_back(
    serve: Serve, port: int, tmp_path: Path, dead_redis: TcpProxy, mode: str, loop: str
) -> None:
    """SIGTERM 0.5 s into a startup retrying Redis: uvicorn exits within seconds, the started marker torn down."""
    dead_redis.set_mode(mode)  # type: ignore[arg-type]
    marker = tmp_path / "marker"
    app = serve(
        uvicorn(port, "--loop", loop),
        port=port,
        MARKER_FILE=str(marker),
        REDIS_URL=redis_url(dead_redis),
        **SLOW_RETRIES,
    )
    app.wait_for_output("component_starting component=redis")
    time.sleep(0.5)  # the scenario: half a second into the attempts (not a synchronisation)
    status, elapsed = stop_and_time(app)

    assert SIGTERM_STARTUP_STATUS == status, app.output[-3000:]
    assert elapsed < PROMPT, app.output[-3000:]
    assert ["started", "stopped"] == lines(marker)
    assert "startup stopped by SIGTERM while redis was starting; rolled back: marker" in app.output


def test_sigint_during_a_retrying_foreground_startup_under_uvicorn_stops_it_too(
    serve: Serve, port: int, tmp_path: Path, dead_redis: TcpProxy
) -> None:
    """Ctrl-C (SIGINT) stops a retrying startup as promptly as SIGTERM, and rolls back."""
    marker = tmp_path / "marker"
    app = serve(uvicorn(port), port=port, MARKER_FILE=str(marker), REDIS_URL=redis_url(dead_redis), **SLOW_RETRIES)
    app.wait_for_output("component_retrying component=redis")
    status, elapsed = stop_and_time(app, signal.SIGINT)

    assert STARTUP_FAILED == status, app.output[-3000:]
    assert elapsed < PROMPT, app.output[-3000:]
    assert ["started", "stopped"] == lines(marker)
    assert "startup stopped by SIGINT" in app.output


def test_sigterm_during_a_background_startup_under_uvicorn_ends_it_and_exits_gracefully(
    serve: Serve, port: int, tmp_path: Path, dead_redis: TcpProxy
) -> None:
    """background=True: the server is already listening; SIGTERM cancels the startup behind it and exits cleanly."""
    marker = tmp_path / "marker"
    app = serve(
        uvicorn(port),
        port=port,
        MARKER_FILE=str(marker),
        REDIS_URL=redis_url(dead_redis),
        BACKGROUND="1",
        **SLOW_RETRIES,
    )
    app.wait_listening()
    app.wait_for_output("component_retrying component=redis")
    status, elapsed = stop_and_time(app)

    assert status in GRACEFUL, app.output[-3000:]
    assert elapsed < PROMPT, app.output[-3000:]
    assert ["started", "stopped"] == lines(marker)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        # uvicorn's supervisor exits 0; gunicorn's arbiter takes a worker's status 3 for a boot error and halts with 1.
        pytest.param(lambda p: uvicorn(p, "--workers", "2"), 0, id="uvicorn-workers-2"),
        pytest.param(
            lambda p: gunicorn(p, "uvicorn.workers.UvicornWorker"),
            1 if SIGTERM_STARTUP_STATUS == STARTUP_FAILED else 0,
            id="gunicorn-uvicorn-worker",
        ),
        pytest.param(lambda p: gunicorn(p, "asgi"), 1, id="gunicorn-asgi-worker"),
    ],
)
def test_sigterm_during_a_retrying_startup_under_a_process_manager_stops_every_worker_promptly(
    serve: Serve, port: int, tmp_path: Path, dead_redis: TcpProxy, args: object, expected: int
) -> None:
    """The manager forwards SIGTERM to its workers; each stops its startup, rolls back, and the manager exits."""
    marker = tmp_path / "marker"
    command = args(port)  # type: ignore[operator]
    app = serve(command, port=port, MARKER_FILE=str(marker), REDIS_URL=redis_url(dead_redis), **SLOW_RETRIES)
    workers = 2 if "--workers" in command else 1
    deadline = time.monotonic() + 30
    while app.output.count("component_retrying component=redis attempt=1 ") < workers:
        assert time.monotonic() < deadline, app.output[-3000:]
        time.sleep(0.02)
    status, elapsed = stop_and_time(app)

    assert expected == status, app.output[-3000:]
    assert elapsed < PROMPT, app.output[-3000:]
    assert ["started"] * workers + ["stopped"] * workers == sorted(lines(marker))


def test_sigterm_during_a_retrying_startup_under_asyncio_run_stops_it_and_rolls_back(
    serve: Serve, tmp_path: Path, dead_redis: TcpProxy
) -> None:
    """infraboot.asyncio.run: SIGTERM while Redis is retried cancels the startup; main never runs; status 0."""
    marker = tmp_path / "marker"
    app = serve(
        [sys.executable, "tests/integrations/apps/signals_worker.py"],
        MARKER_FILE=str(marker),
        REDIS_URL=redis_url(dead_redis),
        **SLOW_RETRIES,
    )
    app.wait_for_output("component_retrying component=redis")
    status, elapsed = stop_and_time(app)

    assert 0 == status, app.output[-3000:]
    assert elapsed < PROMPT, app.output[-3000:]
    assert ["started", "stopped"] == lines(marker)
    assert "worker serving" not in app.output
    assert "worker stopped" in app.output


def enter_stuck_handler(app: AppProcess, stuck: Path) -> socket.socket:
    """Open a connection that sends ``GET /stuck`` and wait until the handler runs; it never answers."""
    app.wait_listening()
    assert app.port is not None
    client = socket.create_connection(("127.0.0.1", app.port), timeout=5)
    client.sendall(b"GET /stuck HTTP/1.1\r\nhost: test\r\n\r\n")
    deadline = time.monotonic() + 30
    while "entered" not in lines(stuck):
        assert time.monotonic() < deadline, app.output[-3000:]
        time.sleep(0.02)
    return client


def test_a_stuck_handler_under_uvicorn_is_cancelled_after_the_graceful_timeout_and_shutdown_runs(
    serve: Serve, port: int, tmp_path: Path, redis_url: str
) -> None:
    """--timeout-graceful-shutdown 2: SIGTERM with a handler stuck for ever exits in about 2 s, torn down."""
    marker, stuck = tmp_path / "marker", tmp_path / "stuck"
    app = serve(
        uvicorn(port, "--timeout-graceful-shutdown", "2"),
        port=port,
        MARKER_FILE=str(marker),
        STUCK_FILE=str(stuck),
        REDIS_URL=redis_url,
    )
    with enter_stuck_handler(app, stuck):
        status, elapsed = stop_and_time(app)

    assert status in GRACEFUL, app.output[-3000:]
    assert 2.0 <= elapsed < 2.0 + PROMPT, app.output[-3000:]
    assert ["started", "stopped"] == lines(marker)
    assert "timeout graceful shutdown exceeded" in app.output


def test_a_stuck_handler_under_gunicorns_uvicorn_worker_is_killed_at_the_graceful_timeout_without_shutdown(
    serve: Serve, port: int, tmp_path: Path, redis_url: str
) -> None:
    """The stock UvicornWorker never cancels a stuck request: gunicorn kills it at --graceful-timeout, no shutdown."""
    marker, stuck = tmp_path / "marker", tmp_path / "stuck"
    app = serve(
        gunicorn(port, "uvicorn.workers.UvicornWorker", "--graceful-timeout", "3"),
        port=port,
        MARKER_FILE=str(marker),
        STUCK_FILE=str(stuck),
        REDIS_URL=redis_url,
    )
    with enter_stuck_handler(app, stuck):
        status, elapsed = stop_and_time(app)

    assert 0 == status, app.output[-3000:]
    assert 3.0 <= elapsed < 3.0 + PROMPT, app.output[-3000:]
    assert ["started"] == lines(marker)  # the lifespan's shutdown never ran: the worker was killed


def test_a_stuck_handler_under_a_bounded_uvicorn_worker_is_cancelled_and_shutdown_runs(
    serve: Serve, port: int, tmp_path: Path, redis_url: str
) -> None:
    """A UvicornWorker subclass with timeout_graceful_shutdown=2 cancels the stuck request and shuts down in time."""
    marker, stuck = tmp_path / "marker", tmp_path / "stuck"
    app = serve(
        gunicorn(port, "bounded_worker.BoundedWorker", "--graceful-timeout", "10"),
        port=port,
        MARKER_FILE=str(marker),
        STUCK_FILE=str(stuck),
        REDIS_URL=redis_url,
    )
    with enter_stuck_handler(app, stuck):
        status, elapsed = stop_and_time(app)

    assert 0 == status, app.output[-3000:]
    assert 2.0 <= elapsed < 2.0 + PROMPT, app.output[-3000:]
    assert ["started", "stopped"] == lines(marker)
