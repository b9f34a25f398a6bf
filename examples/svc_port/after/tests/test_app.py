"""The service against the real servers: every test uses event kinds of its own, so runs do not collide."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import infraboot
import infraboot.testing
import pytest

from svc.app import create_app
from svc.jobs import rollup
from svc.settings import Settings


def new_kind() -> str:
    return f"click-{uuid.uuid4().hex[:12]}"


async def test_healthy_with_every_server(client: httpx.AsyncClient) -> None:
    """Redis, PostgreSQL and the asyncpg pool answer: readiness says so."""
    response = await client.get("/readyz")
    assert 200 == response.status_code
    assert "pass" == response.json()["status"]


async def test_an_event_is_committed_and_counted(client: httpx.AsyncClient) -> None:
    """Each event is committed by its request, counted in Redis, and seen by the raw asyncpg pool."""
    kind = new_kind()
    assert 1 == (await client.post(f"/events/{kind}")).json()["seen"]
    assert 2 == (await client.post(f"/events/{kind}")).json()["seen"]
    assert {"kind": kind, "count": 2} == (await client.get(f"/events/{kind}/count")).json()


async def test_the_rollup_counts_per_kind(client: httpx.AsyncClient) -> None:
    """The job, run once, writes the count of each kind and counts its run in Redis."""
    kind = new_kind()
    for _ in range(3):
        await client.post(f"/events/{kind}")
    runs = (await client.get(f"/rollups/{kind}")).json()["runs"]
    assert await rollup() >= 1
    assert {"kind": kind, "count": 3, "runs": runs + 1} == (await client.get(f"/rollups/{kind}")).json()


async def test_the_scheduler_runs_the_rollup(settings: Settings) -> None:
    """With a short interval the scheduler runs the rollup by itself, again and again."""
    app = create_app(settings.model_copy(update={"rollup_interval": 0.05}))
    async with infraboot.testing.lifespan(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            kind = new_kind()
            await client.post(f"/events/{kind}")
            deadline = time.monotonic() + 20
            while (await client.get(f"/rollups/{kind}")).json()["count"] != 1:
                assert time.monotonic() < deadline, "the scheduler did not run the rollup within 20 s"
                await asyncio.sleep(0.05)


async def test_an_unreachable_database_fails_the_startup(settings: Settings) -> None:
    """PostgreSQL refusing connections fails the startup, naming the database (retries without waits in tests)."""
    app = create_app(settings.model_copy(update={"database_url": "postgresql+asyncpg://postgres@127.0.0.1:1/test"}))
    with infraboot.set_testing(), pytest.raises(infraboot.StartupError, match="database"):
        async with infraboot.testing.lifespan(app):
            pass
