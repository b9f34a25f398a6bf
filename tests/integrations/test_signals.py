"""SIGTERM is prompt in every mode: during a startup that keeps retrying, and with a handler that never ends."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")

from tests.integrations.conftest import Serve
from tests.servers import AppProcess, TcpProxy

pytestmark = pytest.mark.real

# uvicorn's status when the lifespan startup failed (its STARTUP_FAILURE); gunicorn's arbiter halts with the same.
STARTUP_FAILED = 3
# uvicorn re-raises the SIGTERM it handled once it has shut down gracefully.
GRACEFUL = (0, -signal.SIGTERM)
# From SIGTERM to the process gone, interpreter exit included, on a loaded 2-core machine (measured: 0.2-0.6 s).
PROMPT = 4.0
# Retries that would keep a startup busy for about 20 s if nothing stopped them.
SLOW_RETRIES = {"REDIS_MAX_RETRIES": "12", "REDIS_CONNECT_TIMEOUT": "2"}


def uvicorn(port: int, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--app-dir",
        "tests/integrations/apps",
        "signals_app:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *extra,
    ]


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
    print(f"\nTIMING {sig.name} -> exit {status} in {time.monotonic() - t0:.2f}s")
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

    assert STARTUP_FAILED == status, app.output[-3000:]
    assert elapsed < PROMPT, app.output[-3000:]
    assert ["started", "stopped"] == lines(marker)
    assert "startup stopped by SIGTERM while redis was starting; rolled back: marker" in app.output
