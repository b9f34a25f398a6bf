"""Stale pooled connections do not fail the next command, and a recovered pool is warm again."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

import infraboot
from infraboot import ComponentState, DatabaseSettings, RedisSettings, SystemInitializer
from infraboot._components._database import DatabaseComponent
from infraboot._components._redis import RedisComponent

from .integrations.conftest import redis_clients
from .servers import RedisServer, TcpProxy, eventually, proxy_to

pytestmark = pytest.mark.real


async def until_state(system: SystemInitializer, name: str, state: ComponentState, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while system.state(name) is not state:
        if time.monotonic() > end:
            return False
        await asyncio.sleep(0.02)
    return True


async def at_least(read: Awaitable[int], floor: int) -> int:
    return min(await read, floor)


async def backends(database_url: str, tag: str, *, terminate: bool = False) -> int:
    """Backends whose application_name is *tag* (terminated first when *terminate*)."""
    probe = create_async_engine(database_url)
    try:
        async with probe.connect() as conn:
            if terminate:
                query = "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = :tag"
            else:
                query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = :tag"
            return int((await conn.execute(text(query), {"tag": tag})).scalar_one())
    finally:
        await probe.dispose()


async def kill_normal_clients(port: int) -> int:
    admin = aioredis.Redis(host="127.0.0.1", port=port)
    try:
        return int(await admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"))
    finally:
        await admin.aclose()


async def test_the_next_session_succeeds_after_every_pooled_backend_was_terminated(
    clean_env: pytest.MonkeyPatch, database_url: str
) -> None:
    """pg_terminate_backend of each pooled backend: the next get_session() queries (all at once) still succeed."""
    tag = f"ib-stale-{uuid.uuid4().hex[:8]}"
    clean_env.setenv("DATABASE_URL", database_url)
    clean_env.setenv("DATABASE_WARMUP_CONNECTIONS", "3")
    clean_env.setenv("DATABASE_APPLICATION_NAME", tag)
    await infraboot.init_database()
    try:
        assert 3 == await backends(database_url, tag, terminate=True)
        assert 0 == await eventually(lambda: backends(database_url, tag), 0)

        async def query(n: int) -> int:
            async with infraboot.get_session() as session:
                return int((await session.execute(text("SELECT CAST(:n AS int)"), {"n": n})).scalar_one())

        assert [0, 1, 2] == await asyncio.gather(*(query(n) for n in range(3)))  # pre-ping replaced each one
    finally:
        await infraboot.close_database()


async def test_the_next_redis_commands_succeed_after_client_kill(redis_server: RedisServer) -> None:
    """CLIENT KILL TYPE normal of every pooled connection: the next commands (all at once) are retried and succeed."""
    system = SystemInitializer([RedisComponent(RedisSettings(url=redis_server.url(), warmup_connections=3))])
    async with system:
        client = system.get("redis")
        assert 3 == await kill_normal_clients(redis_server.port)
        assert [True, True, True] == await asyncio.gather(*(client.ping() for _ in range(3)))
        assert await client.set("k", "v")
        assert b"v" == await client.get("k")


async def incr_with_its_reply_lost(client: aioredis.Redis, proxy: TcpProxy, counter: aioredis.Redis) -> int:
    """INCR "n" through *proxy*: its reply held back until the server has applied it, then the connection cut.

    What a network failure between the write and its answer looks like to the client; the
    value INCR returned (the exception propagates).
    """
    proxy.delay(30.0, drop_existing=False)  # the command goes through, its reply waits in the proxy
    pending = asyncio.ensure_future(client.incr("n"))
    try:
        assert 1 == await eventually(lambda: _int(counter.get("n")), 1)  # the server ran it
        proxy.restore()  # cut the connection under the waiting command; new ones go straight through
        return int(await pending)
    finally:
        pending.cancel()


async def _int(value: Awaitable[bytes | None]) -> int:
    return int(await value or 0)


async def test_a_command_whose_reply_was_lost_is_retried_and_may_apply_twice(redis_server: RedisServer) -> None:
    """The built-in command retry resends an INCR whose reply was lost: it applied twice (the documented trade-off)."""
    counter = aioredis.Redis(host="127.0.0.1", port=redis_server.port)
    with proxy_to(redis_server.port) as proxy:
        settings = RedisSettings(url=f"redis://{proxy.url_host}/0")
        async with SystemInitializer([RedisComponent(settings)]) as system:
            assert 2 == await incr_with_its_reply_lost(system.get("redis"), proxy, counter)
    assert 2 == await _int(counter.get("n"))
    await counter.aclose()


async def test_client_options_retry_replaces_the_command_retry(redis_server: RedisServer) -> None:
    """client_options={"retry": Retry(NoBackoff(), 0)} turns it off: an INCR with its reply lost fails, applied once."""
    counter = aioredis.Redis(host="127.0.0.1", port=redis_server.port)
    with proxy_to(redis_server.port) as proxy:
        settings = RedisSettings(url=f"redis://{proxy.url_host}/0", client_options={"retry": Retry(NoBackoff(), 0)})
        async with SystemInitializer([RedisComponent(settings)]) as system:
            with pytest.raises(aioredis.ConnectionError):
                await incr_with_its_reply_lost(system.get("redis"), proxy, counter)
    assert 1 == await _int(counter.get("n"))
    await counter.aclose()


async def test_a_recovered_redis_has_its_warmup_connections_again(redis_server: RedisServer) -> None:
    """Killed and restarted on the same port, the component recovers and INFO clients shows the warmup count."""
    settings = RedisSettings(url=redis_server.url(), warmup_connections=3, connect_timeout=0.5, check_timeout=1)
    system = SystemInitializer([RedisComponent(settings)], check_interval=0.05)
    async with system:
        assert 3 == await redis_clients(redis_server.port)
        redis_server.kill()
        assert await until_state(system, "redis", ComponentState.UNHEALTHY)
        redis_server.start()
        assert await until_state(system, "redis", ComponentState.READY)
        # At least the warmup: a probe holding a connection while the warmup ran may have added one more.
        assert 3 <= await eventually(lambda: at_least(redis_clients(redis_server.port), 3), 3)
    assert 0 == await eventually(lambda: redis_clients(redis_server.port), 0)


async def test_a_recovered_database_has_its_warmup_connections_again(
    database_proxy: TcpProxy, database_url: str
) -> None:
    """Cut off and back (through a proxy), the database recovers and pg_stat_activity shows the warmup count."""
    tag = f"ib-rewarm-{uuid.uuid4().hex[:8]}"
    url = f"postgresql+asyncpg://postgres@{database_proxy.url_host}/test"
    settings = DatabaseSettings(url=url, warmup_connections=3, application_name=tag, connect_timeout=0.5)
    system = SystemInitializer([DatabaseComponent(settings, check_timeout=1)], check_interval=0.05)
    async with system:
        assert 3 == await backends(database_url, tag)
        database_proxy.refuse()  # drops the pooled connections too
        assert await until_state(system, "database", ComponentState.UNHEALTHY)
        assert 0 == await eventually(lambda: backends(database_url, tag), 0)
        database_proxy.restore()
        assert await until_state(system, "database", ComponentState.READY)
        # At least the warmup: a probe that ran during the warmup may have added one more.
        assert 3 <= await eventually(lambda: at_least(backends(database_url, tag), 3), 3)
    assert 0 == await eventually(lambda: backends(database_url, tag), 0)
