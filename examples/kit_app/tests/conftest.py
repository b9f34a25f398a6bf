"""The service's test setup: anyio, a throwaway PostgreSQL, and a real Redis behind a fault-injecting proxy."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from kit_app.app import app

import infraboot
import infraboot.testing
from infraboot.testing import TcpProxy

REDIS = os.environ.get("INFRABOOT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def redis_proxy() -> Iterator[TcpProxy]:
    """A proxy in front of the real Redis, so a test can take Redis down and bring it back."""
    host, port = "127.0.0.1", 6379
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError:
        pytest.skip(f"no Redis at {host}:{port}")
    with TcpProxy(REDIS) as proxy:
        yield proxy


@pytest.fixture
async def client(infraboot_db_session: object, redis_proxy: TcpProxy) -> AsyncIterator[httpx.AsyncClient]:
    """The app through its lifespan: PostgreSQL is the throwaway database, Redis (optional) the proxy."""
    infraboot.configure(redis={"url": redis_proxy.url_for(REDIS), "required": False, "check_timeout": 0.3})
    with infraboot.set_testing():
        async with infraboot.testing.lifespan(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                yield http
