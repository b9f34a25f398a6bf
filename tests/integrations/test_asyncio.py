"""infraboot.asyncio: the worker example as a real process, signals, exit codes; running() in process."""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import infraboot
import infraboot.asyncio
from tests.integrations.conftest import Serve, pg_connections, redis_clients
from tests.servers import RedisServer, TcpProxy, free_port

pytestmark = pytest.mark.real

WORKER = [sys.executable, "examples/worker.py"]


async def test_sigterm_stops_the_worker_gracefully(
    serve: Serve, redis_server: RedisServer, database_url: str, app_name: str
) -> None:
    """SIGTERM: the worker returns, shuts down, exits 0, and every connection is closed."""
    worker = serve(WORKER, REDIS_URL=redis_server.url(), DATABASE_URL=database_url, DATABASE_APPLICATION_NAME=app_name)
    worker.wait_for_output("worker ready")
    during = await redis_clients(redis_server.port)
    worker.terminate()
    status = worker.wait(15)
    assert 0 == status
    assert during >= 1
    assert "shut down cleanly" in worker.output
    assert (0, 0) == (await redis_clients(redis_server.port), await pg_connections(database_url, app_name))


async def test_a_required_failure_exits_2_with_one_clear_line(serve: Serve) -> None:
    """A required database that refuses: exit status 2 and a message naming it, no traceback."""
    worker = serve(
        WORKER,
        REDIS_URL="memory://",
        DATABASE_URL=f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/test",
        DATABASE_CONNECT_TIMEOUT="0.5",
        DATABASE_MAX_RETRIES="0",
    )
    assert 2 == worker.wait(30)
    assert "infraboot: required component 'database'" in worker.output
    assert "Traceback" not in worker.output


async def test_bad_configuration_exits_2_before_any_connection(serve: Serve) -> None:
    """An invalid setting is reported by name, with status 2."""
    worker = serve(
        WORKER, REDIS_URL="memory://", DATABASE_URL="sqlite+aiosqlite:///:memory:", DATABASE_POOL_SIZE="many"
    )
    assert 2 == worker.wait(30)
    assert "DATABASE_POOL_SIZE" in worker.output


async def test_sigterm_during_startup_stops_at_once(serve: Serve, redis_proxy: TcpProxy) -> None:
    """SIGTERM while Redis is still connecting cancels the startup: the worker exits long before the connect timeout."""
    redis_proxy.set_mode("blackhole")
    worker = serve(
        [sys.executable, "-X", "dev", "examples/worker.py"],
        REDIS_URL=f"redis://{redis_proxy.url_host}/0",
        REDIS_CONNECT_TIMEOUT="20",
        DATABASE_URL="sqlite+aiosqlite:///:memory:",
    )
    deadline = time.monotonic() + 30
    while redis_proxy.accepted == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    t0 = time.monotonic()
    worker.terminate()
    status = worker.wait(15)
    assert 0 == status
    assert time.monotonic() - t0 < 10


async def test_running_starts_and_always_shuts_down() -> None:
    """running() yields a started system and shuts it down even when the body raises."""

    @infraboot.component("thing")
    async def thing(ctx: infraboot.Context) -> AsyncIterator[str]:
        yield "T"

    infraboot.register(thing)
    with pytest.raises(RuntimeError, match="boom"):
        async with infraboot.asyncio.running(["thing"]) as system:
            assert "T" == system.get("thing")
            raise RuntimeError("boom")
    assert infraboot.ComponentState.STOPPED == infraboot.state("thing")


def test_run_passes_the_system_and_returns_mains_result() -> None:
    """run(main) gives main the system when it takes one argument, and returns its result."""
    system = infraboot.SystemInitializer(check_interval=None)

    async def main(got: infraboot.SystemInitializer) -> str:
        return "same" if got is system else "other"

    assert "same" == infraboot.asyncio.run(main, system=system)


SWALLOWS_A_CANCELLATION = """
import asyncio

import infraboot
import infraboot.asyncio


async def main():
    print("worker ready", flush=True)
    swallowed = 0
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            if swallowed < 2:  # what a driver's blocking command sometimes does (redis-py's BLPOP)
                swallowed += 1
                print(f"swallowed cancellation {swallowed}", flush=True)
                continue
            raise


infraboot.asyncio.run(main, components=[])
print("shut down cleanly", flush=True)
"""


async def test_sigterm_stops_a_main_that_swallows_its_cancellation(serve: Serve, tmp_path: Path) -> None:
    """A cancellation swallowed inside main (a driver's bug) does not keep the worker alive after SIGTERM."""
    script = tmp_path / "swallower.py"
    script.write_text(SWALLOWS_A_CANCELLATION)
    worker = serve([sys.executable, str(script)], INFRABOOT_DRAIN_DELAY="0.1")
    worker.wait_for_output("worker ready")
    t0 = time.monotonic()
    worker.terminate()
    assert 0 == worker.wait(15)
    assert time.monotonic() - t0 < 5  # 0.1 s of drain, then a cancellation every half second
    assert worker.output.count("swallowed cancellation") == 2
    assert "shut down cleanly" in worker.output
