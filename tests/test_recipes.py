"""The recipes of the docs, run as written against the real servers."""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import asyncpg
import pytest

import infraboot
from infraboot import ComponentState, SystemInitializer

from .servers import eventually

pytestmark = pytest.mark.real

MIGRATING = Path(__file__).parent.parent / "docs" / "migrating.md"


def asyncpg_recipe(driver: Any = asyncpg) -> tuple[str, Any]:
    """The raw asyncpg pool component of docs/migrating.md: its code and the component (called with the settings)."""
    text = MIGRATING.read_text()
    code = next(b for b in re.findall(r"```py\n(.*?)```", text, re.S) if "async def pg_pool(" in b)
    namespace: dict[str, Any] = {
        "asyncpg": driver,
        "infraboot": infraboot,
        "AsyncIterator": AsyncIterator,
        "Settings": object,
    }
    exec(compile(code, str(MIGRATING), "exec"), namespace)  # noqa: S102 - the docs' own code
    return code, namespace["pg_pool"]


async def backends(database_url: str, application_name: str) -> int:
    """How many server connections carry *application_name*."""
    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        sql = "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1"
        found: int = await conn.fetchval(sql, application_name)
        return found
    finally:
        await conn.close()


def app_settings(dsn: str) -> SimpleNamespace:
    return SimpleNamespace(asyncpg_dsn=dsn.replace("postgresql+asyncpg://", "postgresql://", 1), bulk_pool_size=2)


async def test_the_asyncpg_pool_recipe_is_a_short_generator_that_starts_checks_and_stops(database_url: str) -> None:
    """The docs' raw asyncpg pool is at most 10 lines of component, answers queries and its probe, and closes."""
    code, asyncpg_pool = asyncpg_recipe()
    component = code[code.index("@infraboot.component") :].strip().splitlines()
    dsn = f"{database_url}?application_name=ib_recipe_ok"
    async with SystemInitializer([asyncpg_pool(app_settings(dsn))]) as system:
        pool = system.get("pg_pool")
        answers = (await pool.fetchval("SELECT 41 + 1"), (await system.readiness()).status)
    assert (42, "pass") == answers
    assert 10 >= len(component)
    assert 0 == await eventually(lambda: backends(database_url, "ib_recipe_ok"), 0)


async def test_the_asyncpg_pool_recipe_leaves_no_connection_when_its_start_is_cancelled(database_url: str) -> None:
    """A start cancelled at its timeout with the pool half open (one connection up, the next stalled) leaves none."""
    opened = 0

    async def connect(*args: Any, **kwargs: Any) -> asyncpg.Connection:
        nonlocal opened
        opened += 1
        if opened > 1:
            await asyncio.Event().wait()  # the second connection never comes: the attempt's timeout cancels it
        return await asyncpg.connect(*args, **kwargs)

    pools: list[asyncpg.Pool] = []  # held here, so that no garbage collection closes what the recipe left open

    def create_pool(dsn: str, **options: Any) -> asyncpg.Pool:
        pools.append(asyncpg.create_pool(dsn, **{**options, "min_size": 2, "connect": connect}))
        return pools[-1]

    _, asyncpg_pool = asyncpg_recipe(SimpleNamespace(create_pool=create_pool, Pool=asyncpg.Pool))
    component = asyncpg_pool(app_settings(f"{database_url}?application_name=ib_recipe_cancelled"))
    component.timeout, component.retries = 1.0, 0
    system = SystemInitializer([component])
    with pytest.raises(infraboot.StartupError):
        await system.ensure_initialized()
    result = system.report.components["pg_pool"]
    assert (ComponentState.FAILED, "timeout", 2, 1) == (result.state, result.error_code, opened, len(pools))
    assert 0 == await eventually(lambda: backends(database_url, "ib_recipe_cancelled"), 0)
    await system.shutdown()


# -- a client that retries by itself and hands back nothing until it is connected (arq) --------------------


class ArqStandIn:
    """arq's create_pool as it behaves (arq pins redis<6, so it cannot be installed beside redis>=8.2 here):
    it builds the pool, pings it, and on a connection error tries again conn_retries more times, conn_retry_delay apart.
    """

    def __init__(self, client_name: str) -> None:
        self.client_name = client_name
        self.tries = 0
        self.made: list[Any] = []
        from redis.asyncio import Redis

        class ArqRedis(Redis):
            pass

        class RedisSettings:
            def __init__(self, host: str, port: int) -> None:
                self.host, self.port = host, port
                self.conn_retries, self.conn_retry_delay = 5, 1.0

            @classmethod
            def from_dsn(cls, dsn: str) -> RedisSettings:
                host, _, port = dsn.removeprefix("redis://").partition("/")[0].partition(":")
                return cls(host, int(port or 6379))

        self.ArqRedis, self.RedisSettings = ArqRedis, RedisSettings

    async def create_pool(self, settings: Any, *, retry: int = 0) -> Any:
        self.tries += 1
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        # redis-py < 6 (what arq runs on) made no command retries of its own; redis-py 8 makes 3 unless told.
        no_retry = Retry(NoBackoff(), 0)
        pool = self.ArqRedis(host=settings.host, port=settings.port, client_name=self.client_name, retry=no_retry)
        try:
            await pool.ping()
        except (ConnectionError, OSError, TimeoutError):
            if retry < settings.conn_retries:
                await asyncio.sleep(settings.conn_retry_delay)
                return await self.create_pool(settings, retry=retry + 1)
            raise
        self.made.append(pool)
        return pool

    def modules(self) -> dict[str, Any]:
        return {
            "arq": SimpleNamespace(create_pool=self.create_pool),
            "arq.connections": SimpleNamespace(ArqRedis=self.ArqRedis, RedisSettings=self.RedisSettings),
        }


def arq_recipe(monkeypatch: pytest.MonkeyPatch, arq: ArqStandIn) -> tuple[str, Any]:
    """docs/migrating.md's arq component: its code and its ``arq_pool`` factory, on the stand-in arq."""
    for name, module in arq.modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    code = next(b for b in re.findall(r"```py\n(.*?)```", MIGRATING.read_text(), re.S) if "def arq_pool(" in b)
    namespace: dict[str, Any] = {"infraboot": infraboot, "AsyncIterator": AsyncIterator, "Settings": object}
    exec(compile(code, str(MIGRATING), "exec"), namespace)  # noqa: S102 - the docs' own code
    return code, namespace["arq_pool"]


async def named_clients(redis_url: str, name: str) -> int:
    from redis.asyncio import Redis

    async with Redis.from_url(redis_url) as admin:
        return sum(1 for c in await admin.client_list() if c.get("name") == name)


async def test_the_arq_recipe_starts_and_closes_its_pool(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> None:
    """The arq component of the docs connects to the real Redis, answers, and leaves no client after shutdown."""
    arq = ArqStandIn(f"ib_recipe_arq_{uuid.uuid4().hex[:8]}")
    _, arq_pool = arq_recipe(monkeypatch, arq)
    host, port = redis_url.removeprefix("redis://").split("/")[0].split(":")
    async with SystemInitializer([arq_pool(SimpleNamespace(arq_url=f"redis://{host}:{port}"))]) as system:
        answers = (await system.get("arq").ping(), await named_clients(redis_url, arq.client_name))
    assert (True, 1) == answers
    assert 0 == await eventually(lambda: named_clients(redis_url, arq.client_name), 0)


async def test_the_arq_recipe_leaves_the_retrying_to_infraboot(
    monkeypatch: pytest.MonkeyPatch, redis_proxy: Any
) -> None:
    """A refused Redis: 4 attempts of one try each (conn_retries=0), failing in well under arq's own 20 s."""
    arq = ArqStandIn("ib_recipe_arq_refused")
    _, arq_pool = arq_recipe(monkeypatch, arq)
    redis_proxy.set_mode("refuse")
    system = SystemInitializer([arq_pool(SimpleNamespace(arq_url=f"redis://{redis_proxy.url_host}"))])
    t0 = time.monotonic()
    with infraboot.set_testing(attempts=4), pytest.raises(infraboot.StartupError, match="'arq'"):
        await system.ensure_initialized()
    elapsed = time.monotonic() - t0
    assert (4, 4) == (arq.tries, system.report.components["arq"].attempts)
    assert elapsed < 5.0
    await system.shutdown()


async def test_the_arq_recipe_closes_what_a_cancelled_constructor_still_returns(
    monkeypatch: pytest.MonkeyPatch, redis_proxy: Any, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The attempt times out inside create_pool; the pool it still returns afterwards is closed, no client left."""
    arq = ArqStandIn(f"ib_recipe_arq_{uuid.uuid4().hex[:8]}")
    _, arq_pool = arq_recipe(monkeypatch, arq)
    redis_proxy.set_mode("delay", delay=1.0)  # every exchange a second late: the 0.3 s attempt cannot finish
    component = arq_pool(SimpleNamespace(arq_url=f"redis://{redis_proxy.url_host}"))
    component.timeout, component.retries = 0.3, 0
    system = SystemInitializer([component])
    caplog.set_level(logging.INFO, logger="infraboot")
    with pytest.raises(infraboot.StartupError):
        await system.ensure_initialized()
    result = system.report.components["arq"]
    deadline = time.monotonic() + 15
    while "cancelled_open_closed" not in caplog.text:
        assert time.monotonic() < deadline, caplog.text[-2000:]
        await asyncio.sleep(0.05)
    assert (ComponentState.FAILED, "timeout", 1) == (result.state, result.error_code, len(arq.made))
    assert 0 == await eventually(lambda: named_clients(redis_url, arq.client_name), 0)
    await system.shutdown()
