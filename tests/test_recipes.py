"""The recipes of the docs, run as written against the real servers."""

from __future__ import annotations

import asyncio
import re
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
    """The raw asyncpg pool component of docs/migrating.md: its code and its ``asyncpg_pool`` factory."""
    text = MIGRATING.read_text()
    code = next(b for b in re.findall(r"```py\n(.*?)```", text, re.S) if "def asyncpg_pool(" in b)
    namespace: dict[str, Any] = {
        "asyncpg": driver,
        "infraboot": infraboot,
        "AsyncIterator": AsyncIterator,
        "Settings": object,
    }
    exec(compile(code, str(MIGRATING), "exec"), namespace)  # noqa: S102 - the docs' own code
    return code, namespace["asyncpg_pool"]


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
    component = code[code.index("@infraboot.component") : code.index("return pg_pool")].strip().splitlines()
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
