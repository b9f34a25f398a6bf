"""PostgreSQL failover against a real primary and a streaming replica that each test starts (pg_basebackup -R)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

import infraboot
from infraboot import DatabaseComponent, DatabaseSettings, StartupError, SystemInitializer
from infraboot._components import _pg_failover
from infraboot._components._pg_failover import lost_primary_reason

from .pg_cluster import PgCluster, pg_cluster_or_skip

pytestmark = [pytest.mark.real, pytest.mark.topology]

T = TypeVar("T")
CHECK_INTERVAL = 0.5
BOUND = 10.0  # generous: the benchmark measures the real figure (about 2 s + the check interval at most)


@pytest.fixture
def cluster() -> Iterator[PgCluster]:
    with pg_cluster_or_skip() as c:
        yield c


async def eventually(fn: Callable[[], Awaitable[T]], timeout: float = BOUND) -> tuple[T, float]:
    """The first result of *fn* that does not raise, and how long it took; fails after *timeout*."""
    t0 = time.monotonic()
    last: Exception | None = None
    while time.monotonic() - t0 < timeout:
        try:
            return await fn(), time.monotonic() - t0
        except Exception as exc:  # still failing over: try again
            last = exc
            await asyncio.sleep(0.05)
    msg = f"still failing after {timeout}s: {last!r}"
    raise AssertionError(msg)


async def write(value: int) -> int:
    """Insert *value* through get_session(); the port of the server that took it."""
    async with infraboot.get_session() as s:
        await s.execute(text("INSERT INTO t VALUES (:v)"), {"v": value})
        port: int = (await s.execute(text("SELECT inet_server_port()"))).scalar_one()
    return port


async def readiness_status() -> str:
    return (await infraboot.health(fresh=True)).status


async def test_writes_follow_the_promoted_replica_without_a_restart(cluster: PgCluster) -> None:
    """Primary stopped, replica promoted: readiness fails meanwhile, then writes land on the new primary in time."""
    url = cluster.url(query="target_session_attrs=read-write")
    infraboot.configure(database={"url": url, "connect_timeout": 1.0}, check_interval=CHECK_INTERVAL)
    await infraboot.ensure_initialized(["database"])
    async with infraboot.get_session() as s:
        await s.execute(text("CREATE TABLE t (v int)"))
    assert cluster.primary.port == await write(1)
    assert "pass" == await readiness_status()
    await eventually(lambda: _replicated(cluster))

    cluster.primary.stop("immediate")
    assert "fail" == await readiness_status()  # no writable server: readiness says so, at once

    t0 = time.monotonic()
    cluster.replica.promote()
    port, _ = await eventually(lambda: write(2))
    elapsed = time.monotonic() - t0
    assert cluster.replica.port == port
    assert elapsed < BOUND
    status, _ = await eventually(lambda: _expect("pass", readiness_status))
    assert "pass" == status
    async with infraboot.get_session() as s:
        assert [1, 2] == (await s.execute(text("SELECT v FROM t ORDER BY v"))).scalars().all()
    await infraboot.shutdown()


async def _expect(wanted: str, fn: Callable[[], Awaitable[str]]) -> str:
    got = await fn()
    if got != wanted:
        msg = f"{got} is not {wanted}"
        raise RuntimeError(msg)
    return got


async def test_a_demoted_primary_that_still_answers_is_left_for_the_new_one(cluster: PgCluster) -> None:
    """A write that meets 25006 on a demoted primary drops the pool; the next one reaches the new primary."""
    url = cluster.url(query="target_session_attrs=read-write")
    infraboot.configure(database={"url": url, "connect_timeout": 1.0}, check_interval=None)
    await infraboot.ensure_initialized(["database"])
    async with infraboot.get_session() as s:
        await s.execute(text("CREATE TABLE t (v int)"))
    assert cluster.primary.port == await write(1)
    await eventually(lambda: _replicated(cluster))

    cluster.replica.promote()
    # The old primary stays up but read-only, as a switchover leaves it: SELECT 1 still passes there.
    engine = infraboot.get_engine()
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))  # the pooled connection to the old primary is alive
    await _sql(cluster.primary.port, "ALTER SYSTEM SET default_transaction_read_only = on", "SELECT pg_reload_conf()")
    await eventually(lambda: _read_only(cluster.primary.port))

    with pytest.raises(DBAPIError) as caught:
        await write(2)
    assert "read_only" == lost_primary_reason(caught.value)
    assert cluster.replica.port == await write(3)  # not stuck on the demoted primary
    assert "pass" == await readiness_status()
    await infraboot.shutdown()


async def test_readiness_of_a_writable_database_fails_on_a_standby(cluster: PgCluster) -> None:
    """A primary-role database pointed at a standby fails its check with not_primary and a message naming the fix."""
    settings = DatabaseSettings(url=cluster.url(cluster.replica), connect_timeout=2.0, max_retries=0)
    system = SystemInitializer([DatabaseComponent(settings)])
    with pytest.raises(StartupError) as caught:
        await system.ensure_initialized(["database"])
    text_ = str(caught.value)
    assert "not_primary" == system.snapshot()["database"].error_code
    assert "pg_is_in_recovery() is true" in text_
    assert "DATABASE_ROLE=replica" in text_ or "role=replica" in text_
    await system.shutdown()


async def test_a_replica_instance_gets_read_only_sessions(cluster: PgCluster) -> None:
    """A replica named instance connects to the standby with read-only sessions and reports ready."""
    await _sql(cluster.primary.port, "CREATE TABLE r (v int)", "INSERT INTO r VALUES (7)")
    await eventually(lambda: _replicated(cluster, "r"))
    replica = DatabaseComponent(
        "replica",
        env_prefix="REPLICA_DATABASE_",
        settings={"url": cluster.url(cluster.replica, cluster.primary, query="target_session_attrs=prefer-standby")},
    )
    system = SystemInitializer([replica])
    await system.ensure_initialized(["replica"])
    assert "replica" == replica.settings.effective_role  # type: ignore[union-attr]
    engine = system.get("replica")
    async with engine.connect() as conn:
        row = (await conn.execute(text("SELECT inet_server_port(), current_setting('transaction_read_only')"))).one()
        assert (cluster.replica.port, "on") == tuple(row)
        assert [7] == (await conn.execute(text("SELECT v FROM r"))).scalars().all()
    assert "pass" == (await system.health(fresh=True)).status
    await system.shutdown()


async def _replicated(cluster: PgCluster, table: str = "t") -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(cluster.url(cluster.replica))
    try:
        async with engine.connect() as conn:
            if not (await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one():
                msg = "not replicated yet"
                raise RuntimeError(msg)
    finally:
        await engine.dispose()


async def _sql(port: int, *statements: str) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(
        f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres", isolation_level="AUTOCOMMIT"
    )
    try:
        async with engine.connect() as conn:
            for statement in statements:
                await conn.execute(text(statement))
    finally:
        await engine.dispose()


async def _read_only(port: int) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres")
    try:
        async with engine.connect() as conn:
            if (await conn.execute(text("SHOW default_transaction_read_only"))).scalar_one() != "on":
                msg = "not read-only yet"
                raise RuntimeError(msg)
    finally:
        await engine.dispose()


async def read_only_writes(database_url: str, count: int = 20) -> tuple[list[str | None], set[int]]:
    """*count* times SET TRANSACTION READ ONLY then a write: each error's reason, and the backends that served them."""
    system = SystemInitializer([DatabaseComponent(DatabaseSettings(url=database_url))], check_interval=None)
    await system.initialize_all()
    engine = system.get("database")
    backends: set[int] = set()
    reasons: list[str | None] = []
    try:
        for _ in range(count):
            async with engine.connect() as conn:
                backends.add(await conn.scalar(text("SELECT pg_backend_pid()")))
                await conn.execute(text("SET TRANSACTION READ ONLY"))
                with pytest.raises(DBAPIError) as caught:
                    await conn.execute(text("CREATE TABLE infraboot_read_only_probe (v int)"))
                reasons.append(lost_primary_reason(caught.value))
    finally:
        await system.shutdown()
    return reasons, backends


async def test_the_applications_own_read_only_transactions_keep_the_pool_of_a_healthy_primary(
    database_url: str,
) -> None:
    """SET TRANSACTION READ ONLY then a write, twenty times on a writable primary: every error is 25006 and the
    pool keeps its one backend."""
    reasons, backends = await read_only_writes(database_url)

    assert ["read_only"] * 20 == reasons
    assert 1 == len(backends)


async def test_a_server_that_does_not_report_its_role_has_its_pool_dropped_at_most_once_per_interval(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the role is not reported, twenty read-only errors in a row drop the pool once, not twenty times."""
    monkeypatch.setattr(_pg_failover, "server_is_read_only", lambda driver_connection: None)
    reasons, backends = await read_only_writes(database_url)

    assert ["read_only"] * 20 == reasons
    assert 2 == len(backends)
