"""Fixtures: the app on the real local servers (``TEST_DATABASE_URL``, ``TEST_REDIS_URL``), and an HTTP client."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import httpx
import infraboot.testing
import pytest
from fastapi import FastAPI

from svc.app import create_app
from svc.settings import Settings

DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
def settings() -> Settings:
    return Settings(database_url=DATABASE_URL, redis_url=REDIS_URL, rollup_interval=3600)


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the app while its lifespan runs (httpx's transport does not run it)."""
    async with infraboot.testing.lifespan(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client
