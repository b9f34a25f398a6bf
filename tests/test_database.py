"""The built-in database component against the real PostgreSQL, pgbouncer, and SQLite."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from sqlalchemy import text

import infraboot
from infraboot import ComponentUnavailableError, DatabaseSettings, StartupError, SystemInitializer
from infraboot._components._database import DatabaseComponent

from .servers import PgBouncer, TcpProxy

pytestmark = pytest.mark.real


async def backend_count(url: str, tag: str) -> int:
    """Server-side connections whose application_name is *tag*."""
    from sqlalchemy.ext.asyncio import create_async_engine

    probe = create_async_engine(url)
    try:
        async with probe.connect() as conn:
            result = await conn.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :tag"), {"tag": tag}
            )
            return int(result.scalar_one())
    finally:
        await probe.dispose()


async def test_session_commits_on_success_and_rolls_back_on_error(
    clean_env: pytest.MonkeyPatch, database_url: str
) -> None:
    """get_session() commits a clean block, rolls back a failing one, and always closes."""
    clean_env.setenv("DATABASE_URL", database_url)
    await infraboot.init_database()
    table = f"t_{uuid.uuid4().hex[:8]}"
    async with infraboot.get_session() as s:
        await s.execute(text(f"CREATE TABLE {table} (v int)"))
    try:
        async with infraboot.get_session() as s:
            await s.execute(text(f"INSERT INTO {table} VALUES (1)"))
        with pytest.raises(ZeroDivisionError):
            async with infraboot.get_session() as s:
                await s.execute(text(f"INSERT INTO {table} VALUES (2)"))
                1 / 0  # noqa: B018
        async with infraboot.get_session() as s:
            rows = (await s.execute(text(f"SELECT v FROM {table}"))).scalars().all()
        assert [1] == rows
        assert 0 == infraboot.pool_stats()["checked_out"]
    finally:
        async with infraboot.get_session() as s:
            await s.execute(text(f"DROP TABLE {table}"))
        await infraboot.close_database()


async def test_warmup_connections_and_shutdown_return_to_baseline(database_url: str) -> None:
    """pg_stat_activity shows the warmup after startup and nothing after shutdown."""
    tag = f"infraboot-{uuid.uuid4().hex[:8]}"
    settings = DatabaseSettings(url=database_url, warmup_connections=3, application_name=tag)
    component = DatabaseComponent(settings)
    system = SystemInitializer([component])
    await system.initialize_all()
    assert 3 == await backend_count(database_url, tag)
    stats = component.pool_stats(system.get("database"))
    assert (5, 0, 3) == (stats["size"], stats["checked_out"], stats["idle"])
    await system.shutdown()
    assert 0 == await backend_count(database_url, tag)


async def test_refused_database_optional_degrades_fast(database_proxy: TcpProxy) -> None:
    """A refused optional database degrades within its connect timeout plus a margin."""
    database_proxy.set_mode("refuse")
    settings = DatabaseSettings(
        url=f"postgresql+asyncpg://postgres@{database_proxy.url_host}/test", required=False, connect_timeout=0.5
    )
    t0 = time.monotonic()
    async with SystemInitializer([DatabaseComponent(settings)]) as system:
        report = system.report
    assert "degraded" == report.status
    assert "refused" == report.components["database"].error_code
    assert time.monotonic() - t0 < 1.0


async def test_blackholed_database_cannot_outlast_the_deadline(database_proxy: TcpProxy) -> None:
    """A silent database is cut at connect_timeout; a required one raises StartupError in the budget."""
    database_proxy.set_mode("blackhole")
    url = f"postgresql+asyncpg://postgres:pg-canary-pw@{database_proxy.url_host}/test"
    settings = DatabaseSettings(url=url, connect_timeout=0.3, max_retries=2)
    t0 = time.monotonic()
    with pytest.raises(StartupError) as info:
        await SystemInitializer([DatabaseComponent(settings)]).initialize_all()
    elapsed = time.monotonic() - t0
    assert elapsed < 3 * 0.3 + 1.0
    assert "timeout" == info.value.report.components["database"].error_code
    assert "pg-canary-pw" not in str(info.value)
    assert "postgresql+asyncpg://postgres:***@" in str(info.value)


async def test_unknown_database_is_not_retried(database_url: str) -> None:
    """A database that does not exist is a configuration problem: one attempt."""
    url = database_url.rsplit("/", 1)[0] + "/no_such_database_xyz"
    with pytest.raises(StartupError) as info:
        await SystemInitializer([DatabaseComponent(DatabaseSettings(url=url, max_retries=4))]).initialize_all()
    result = info.value.report.components["database"]
    assert ("not_found", 1) == (result.error_code, result.attempts)


async def test_pgbouncer_transaction_pooling_has_no_prepared_statement_clashes(pgbouncer: PgBouncer) -> None:
    """Hundreds of queries from concurrent sessions through pgbouncer: zero errors."""
    settings = DatabaseSettings(url=pgbouncer.url(), pgbouncer=True, pool_size=10, max_overflow=10)
    errors: list[BaseException] = []
    async with SystemInitializer([DatabaseComponent(settings)]) as system:
        engine = system.get("database")

        async def worker(n: int) -> None:
            for i in range(20):
                try:
                    async with engine.connect() as conn:
                        value = (
                            await conn.execute(text("SELECT CAST(:a AS int) + CAST(:b AS int)"), {"a": n, "b": i})
                        ).scalar_one()
                        assert n + i == value
                        await conn.execute(text("SELECT relname FROM pg_class WHERE relname = :r"), {"r": f"x{i}"})
                except Exception as exc:
                    errors.append(exc)

        await asyncio.gather(*(worker(n) for n in range(20)))
    assert [] == errors


async def test_sqlite_memory_is_shared_across_sessions(clean_env: pytest.MonkeyPatch) -> None:
    """sqlite+aiosqlite:///:memory: is one database that every session sees."""
    clean_env.setenv("DATABASE_URL", "sqlite+aiosqlite:///:memory:")
    await infraboot.init_database()
    async with infraboot.get_session() as s:
        await s.execute(text("CREATE TABLE t (v int)"))
        await s.execute(text("INSERT INTO t VALUES (7)"))
    async with infraboot.get_session() as s:
        assert 7 == (await s.execute(text("SELECT v FROM t"))).scalar_one()
    await infraboot.shutdown()


async def test_an_optional_database_that_goes_away_degrades_and_recovers(database_proxy: TcpProxy) -> None:
    """Refused connections make readiness warn and get() unavailable; when they are accepted again, sessions work."""
    settings = DatabaseSettings(
        url=f"postgresql+asyncpg://postgres@{database_proxy.url_host}/test", required=False, check_timeout=1.0
    )
    system = SystemInitializer([DatabaseComponent(settings)], check_interval=None, check_ttl=0.01)
    await system.initialize_all()
    database_proxy.set_mode("refuse")
    report = await system.health(fresh=True)
    with pytest.raises(ComponentUnavailableError):
        system.get("database")
    database_proxy.set_mode("forward")
    back = await system.wait_ready(["database"], timeout=15)
    async with system.get("database").connect() as conn:
        one = (await conn.execute(text("SELECT 1"))).scalar()
    await system.shutdown()
    assert ("warn", True, 1) == (report.status, back, one)
