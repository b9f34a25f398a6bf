"""Fixtures: the app on a real Redis (``TEST_REDIS_URL``, emptied for each test) and SQLite, and an HTTP client."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from shop import cache
from shop.app import create_app
from shop.settings import Settings

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/items.db",
        redis_cache_url=REDIS_URL,
        redis_queue_url=REDIS_URL,
        redis_rate_limit_url=REDIS_URL,
        rate_limit=2,
    )


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The app with its lifespan running (httpx's transport does not run it), on an emptied Redis."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        assert cache.client is not None
        await cache.client.flushdb()  # one real Redis for every test: keys of the last test must not leak
        yield app


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client
