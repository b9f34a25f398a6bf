"""Fixtures: the app on an in-process Redis and SQLite (no server, nothing to empty), and an HTTP client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import infraboot.testing
import pytest
from fastapi import FastAPI

from shop.app import create_app
from shop.settings import Settings


@pytest.fixture
def settings() -> Settings:
    return Settings(
        database_url="sqlite+aiosqlite:///:memory:",
        redis_cache_url="memory://",
        redis_queue_url="memory://",
        redis_rate_limit_url="memory://",
        rate_limit=2,
    )


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The app with its lifespan running (httpx's transport does not run it); memory:// is fresh for each app."""
    app = create_app(settings)
    async with infraboot.testing.lifespan(app):
        yield app


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client
