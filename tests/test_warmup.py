"""Warmup connections are a group: one fails or the start is cancelled, and none of them stays open."""

from __future__ import annotations

import asyncio
import gc
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis.asyncio as aioredis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

import infraboot
from infraboot import DatabaseSettings, RedisSettings, StartupError, SystemInitializer
from infraboot._components._database import DatabaseComponent
from infraboot._components._redis import RedisComponent

from .integrations.conftest import pg_connections, redis_clients
from .servers import RedisServer, TcpProxy, eventually

pytestmark = pytest.mark.real


def leftovers(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What a leaked connection or an unseen failure leaves behind: warnings at collection, asyncio errors."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        gc.collect()
    found = [str(w.message) for w in seen]
    found += [r.getMessage() for r in caplog.records if r.name == "asyncio" or "non-checked-in" in r.getMessage()]
    return found


# -- PostgreSQL -----------------------------------------------------------------------------------


def with_user(url: str, user: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{user}@{host}"))


@pytest.fixture
async def limited_role(database_url: str) -> AsyncIterator[str]:
    """A login role allowed two connections (CONNECTION LIMIT 2): the third is "too many connections"."""
    role = f"ib_limited_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(database_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 2"))
        yield role
        async with admin.connect() as conn:
            await conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = :r"), {"r": role}
            )
            await conn.execute(text(f"DROP ROLE IF EXISTS {role}"))
    finally:
        await admin.dispose()


def backend_counter(database_url: str, tag: str) -> Callable[[], Awaitable[int]]:
    return lambda: pg_connections(database_url, tag)


async def test_a_warmup_that_hits_the_connection_limit_leaves_no_connection_open(
    database_url: str, limited_role: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Four warmup connections against a role limited to two: the start fails, every retry too, and nothing stays."""
    tag = f"ib-warm-{uuid.uuid4().hex[:8]}"
    count = backend_counter(database_url, tag)
    url = with_user(database_url, f"{limited_role}:s3cr3t-canary")  # trust auth: the password is never asked for
    settings = DatabaseSettings(url=url, warmup_connections=4, application_name=tag, connect_timeout=5)
    system = SystemInitializer([DatabaseComponent(settings)])
    with infraboot.set_testing(attempts=3), pytest.raises(StartupError) as info:
        await system.initialize_all()
    result = info.value.report.components["database"]
    assert ("loading", 3) == (result.error_code, result.attempts)  # TooManyConnectionsError, each attempt
    assert "s3cr3t-canary" not in caplog.text + str(info.value) + repr(info.value.report.to_dict())
    assert 0 == await eventually(count, 0)
    await system.shutdown()
    assert [] == leftovers(caplog)


async def test_a_warmup_within_the_limit_still_opens_every_connection(database_url: str, limited_role: str) -> None:
    """The group changes nothing when all connect: two warmup connections under a limit of two stay pooled."""
    tag = f"ib-warm-{uuid.uuid4().hex[:8]}"
    count = backend_counter(database_url, tag)
    settings = DatabaseSettings(url=with_user(database_url, limited_role), warmup_connections=2, application_name=tag)
    system = SystemInitializer([DatabaseComponent(settings)])
    await system.initialize_all()
    assert 2 == await count()
    await system.shutdown()
    assert 0 == await eventually(count, 0)


async def test_a_startup_cancelled_during_warmup_closes_what_it_opened(
    database_proxy: TcpProxy, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Cancelled while the warmup connects (slowed by a proxy), the start closes every connection it opened."""
    tag = f"ib-cancel-{uuid.uuid4().hex[:8]}"
    count = backend_counter(database_url, tag)
    url = f"postgresql+asyncpg://postgres@{database_proxy.url_host}/test"
    settings = DatabaseSettings(url=url, warmup_connections=6, application_name=tag, connect_timeout=10)
    system = SystemInitializer([DatabaseComponent(settings, timeout=30)])
    database_proxy.delay(0.05)
    task = asyncio.ensure_future(system.initialize_all())
    assert 2 <= await eventually(lambda: count_at_least(count, 2), 2)  # the check's connection and a warm one
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert 0 == await eventually(count, 0)
    await system.shutdown()
    assert [] == leftovers(caplog)


async def count_at_least(count: Callable[[], Awaitable[int]], floor: int) -> int:
    return min(await count(), floor)


# -- Redis ----------------------------------------------------------------------------------------


async def test_a_redis_warmup_past_maxclients_leaves_no_connection_open(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Four warmup connections against maxclients 3: the start fails each attempt and the server is back at zero."""
    admin = aioredis.Redis(host="127.0.0.1", port=redis_server.port)
    await admin.config_set("maxclients", 3)
    await admin.aclose()
    settings = RedisSettings(url=redis_server.url(), warmup_connections=4, connect_timeout=5)
    system = SystemInitializer([RedisComponent(settings)])
    with infraboot.set_testing(attempts=3), pytest.raises(StartupError) as info:
        await system.initialize_all()
    assert 3 == info.value.report.components["redis"].attempts
    assert 0 == await eventually(lambda: redis_clients(redis_server.port), 0)
    await system.shutdown()
    assert [] == leftovers(caplog)
