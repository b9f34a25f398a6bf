"""Fixtures: the app on the embedded defaults (an in-process Redis, SQLite in memory), and an HTTP client."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

import httpx
import infraboot
import infraboot.testing
import pytest
from fastapi import FastAPI

from port_app.app import create_app
from port_app.settings import Settings


def embedded_settings() -> Settings:
    """Settings with no server behind them: ``memory://`` is a fresh in-process Redis for each app."""
    return Settings(redis_url="memory://", cache_url="memory://", database_url="sqlite+aiosqlite:///:memory:")


@contextlib.asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on *app* while its lifespan runs, in testing mode (no backoff waits)."""
    with infraboot.set_testing():
        async with infraboot.testing.lifespan(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                yield client


@pytest.fixture
def settings() -> Settings:
    return embedded_settings()


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
def system(app: FastAPI) -> infraboot.SystemInitializer:
    """The default system the app was configured on (a fresh one for every test)."""
    return infraboot.default_system()


@pytest.fixture
def serve_app() -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[httpx.AsyncClient]]:
    """``async with serve_app(app) as client:`` for a test that builds its own app."""
    return serve


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the app of the embedded defaults, its lifespan running."""
    async with serve(app) as client:
        yield client
