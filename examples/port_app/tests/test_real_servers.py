"""The same app against the real local servers: Redis on 127.0.0.1:6379, PostgreSQL postgres@127.0.0.1:5432/test.

Runs when both answer, skips with a reason when they do not; ``PORT_APP_REAL=1`` makes an
unreachable server a failure instead (CI).
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from fastapi import FastAPI

from port_app.app import create_app
from port_app.settings import Settings

SERVERS = {"Redis": ("127.0.0.1", 6379), "PostgreSQL": ("127.0.0.1", 5432)}


def unreachable() -> list[str]:
    down = []
    for name, (host, port) in SERVERS.items():
        try:
            socket.create_connection((host, port), timeout=1).close()
        except OSError as exc:
            down.append(f"{name} on {host}:{port} ({exc})")
    return down


@pytest.fixture
async def real_client(
    serve_app: Callable[[FastAPI], contextlib.AbstractAsyncContextManager[httpx.AsyncClient]],
) -> AsyncIterator[httpx.AsyncClient]:
    """A client on the app served by the real servers; skips (or fails under PORT_APP_REAL=1) when they are down."""
    down = unreachable()
    if down:
        reason = "no real server: " + ", ".join(down)
        if os.environ.get("PORT_APP_REAL") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    settings = Settings(
        postgres_host="127.0.0.1",
        postgres_user="postgres",
        postgres_db="test",
        database_url=None,
        redis_url="redis://127.0.0.1:6379/0",
        cache_url="redis://127.0.0.1:6379/1",
    )
    async with serve_app(create_app(settings)) as client:
        yield client


async def test_ready_with_every_component(real_client: httpx.AsyncClient) -> None:
    """Redis, the cache, the database and the asyncpg pool all pass readiness."""
    response = await real_client.get("/readyz")
    assert 200 == response.status_code
    assert "pass" == response.json()["status"]


async def test_redis_answers_text(real_client: httpx.AsyncClient) -> None:
    """decode_responses=True holds on a real Redis too."""
    visitor = f"ada-{uuid.uuid4().hex}"
    assert visitor == (await real_client.post(f"/visits/{visitor}")).json()["last"]


async def test_bulk_copy_through_the_pool_is_seen_by_sqlalchemy(real_client: httpx.AsyncClient) -> None:
    """Notes copied in bulk on the asyncpg pool are found by the pool and counted by SQLAlchemy."""
    prefix = f"bulk-{uuid.uuid4().hex}-"
    before = (await real_client.get("/notes/count")).json()["count"]
    bodies = [f"{prefix}{n}" for n in range(100)]
    assert {"added": 100} == (await real_client.post("/notes/bulk", json=bodies)).json()
    found = (await real_client.get("/notes/search", params={"prefix": prefix})).json()
    assert bodies == [row["body"] for row in found]
    await real_client.post("/notes", params={"body": prefix + "one more"})  # also clears the cached count
    assert before + 101 <= (await real_client.get("/notes/count")).json()["count"]
