"""infraboot.starlette under a real uvicorn process, and its routes in process."""

from __future__ import annotations

import signal

import pytest

pytest.importorskip("starlette")
httpx = pytest.importorskip("httpx")

from starlette.applications import Starlette

import infraboot
import infraboot.starlette as ib
from tests.integrations.conftest import Serve, uvicorn_args
from tests.servers import free_port

pytestmark = pytest.mark.real


async def test_probes_and_routes_under_uvicorn(serve: Serve, port: int, redis_url: str, database_url: str) -> None:
    """The Starlette example serves its probes and its own routes against the real servers."""
    app = serve(uvicorn_args("starlette_app:app", port), port=port, REDIS_URL=redis_url, DATABASE_URL=database_url)
    app.wait_listening()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        ready, answer, metrics = await client.get("/readyz"), await client.get("/answer"), await client.get("/metrics")
    app.terminate()
    assert (200, "pass") == (ready.status_code, ready.json()["status"])
    assert {"answer": 42} == answer.json()
    assert "infraboot_component_state" in metrics.text
    assert app.wait(15) in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in app.output


async def test_required_redis_down_fails_the_lifespan(serve: Serve, port: int) -> None:
    """A required Redis that refuses makes uvicorn report the failed startup and exit non-zero."""
    app = serve(
        uvicorn_args("starlette_app:app", port),
        port=port,
        REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
        REDIS_CONNECT_TIMEOUT="0.5",
        REDIS_MAX_RETRIES="0",
        DATABASE_URL="sqlite+aiosqlite:///:memory:",
    )
    assert 0 != app.wait(60)
    assert "required component 'redis'" in app.output
    assert "Application startup failed" in app.output


async def test_routes_report_stopping_with_503() -> None:
    """In process: after shutdown, /readyz is 503 and /livez 200, served as application/health+json."""
    system = infraboot.SystemInitializer(check_interval=None)
    app = Starlette(routes=ib.health_routes(system, details=True))
    await system.initialize_all()
    await system.shutdown()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        ready, live = await client.get("/readyz"), await client.get("/livez")
    assert (503, 200) == (ready.status_code, live.status_code)
    assert "application/health+json" == ready.headers["content-type"]
