"""A SystemInitializer of the application's own has the default system's accessors, on real Redis and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text

import infraboot
from infraboot import ComponentUnavailableError, SystemInitializer

pytestmark = pytest.mark.real


def own_system(redis_url: str, database_url: str, **session_options: Any) -> SystemInitializer:
    return SystemInitializer(
        [
            infraboot.RedisComponent(
                "redis", settings={"url": redis_url, "client_options": {"decode_responses": True}}
            ),
            infraboot.RedisComponent("cache", settings={"url": redis_url, "required": False}),
            infraboot.DatabaseComponent("database", settings={"url": database_url, "session_options": session_options}),
        ]
    )


@pytest.fixture
async def system(redis_url: str, database_url: str) -> AsyncIterator[SystemInitializer]:
    async with own_system(redis_url, database_url, autoflush=False, expire_on_commit=True) as started:
        yield started


async def test_get_redis_and_get_engine_hand_out_the_live_clients(system: SystemInitializer) -> None:
    """system.get_redis() is the client with its client_options; a named instance by name; get_engine() the engine."""
    key = f"ib:accessors:{uuid.uuid4().hex}"
    await system.get_redis().set(key, "v", ex=30)
    async with system.get_engine().connect() as conn:
        answer = (await conn.execute(text("SELECT 41 + 1"))).scalar_one()
    assert ("v", b"v", 42) == (await system.get_redis().get(key), await system.get_redis("cache").get(key), answer)
    await system.get_redis().delete(key)


async def test_get_session_takes_the_components_session_options_and_arguments_win(system: SystemInitializer) -> None:
    """session_options reach every session of an own system; keyword arguments given to get_session() beat them."""
    async with system.get_session() as session:
        configured = (session.autoflush, session.sync_session.expire_on_commit)
    async with system.get_session(autoflush=True) as session:
        overridden = session.autoflush
    assert ((False, True), True) == (configured, overridden)


async def test_get_session_commits_on_success_and_rolls_back_on_an_exception(system: SystemInitializer) -> None:
    """The unit of work of an own system: committed when the block ends, rolled back when it raises."""
    table = f"ib_accessors_{uuid.uuid4().hex[:12]}"
    async with system.get_session() as session:
        await session.execute(text(f"CREATE TABLE {table} (v int)"))
    try:
        async with system.get_session() as session:
            await session.execute(text(f"INSERT INTO {table} VALUES (1)"))
        with pytest.raises(RuntimeError, match="boom"):
            async with system.get_session() as session:
                await session.execute(text(f"INSERT INTO {table} VALUES (2)"))
                raise RuntimeError("boom")
        async with system.get_session() as session:
            rows = (await session.execute(text(f"SELECT v FROM {table}"))).scalars().all()
    finally:
        async with system.get_session() as session:
            await session.execute(text(f"DROP TABLE {table}"))
    assert [1] == list(rows)


async def test_pool_stats_of_an_own_system(system: SystemInitializer) -> None:
    """pool_stats() reads the own system's pools, as infraboot.pool_stats() reads the default one's."""
    assert {"size", "checked_out", "idle", "overflow"} <= set(system.pool_stats())
    assert {"in_use", "available", "max"} <= set(system.pool_stats("redis"))


async def test_an_unavailable_component_is_the_same_error_as_on_the_default_system(
    redis_url: str, database_url: str
) -> None:
    """An optional Redis that is down: get_redis() raises ComponentUnavailableError at once, naming it."""
    system = own_system(redis_url, database_url)
    system.component("cache").use(
        {"url": "redis://127.0.0.1:1/0", "required": False, "max_retries": 0, "connect_timeout": 0.2}
    )
    async with system:
        with pytest.raises(ComponentUnavailableError, match="cache"):
            system.get_redis("cache")
