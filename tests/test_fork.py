"""Fork safety with a live event loop: a child never closes, finalises or unregisters the parent's sockets."""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import os
import threading
import traceback
import uuid
import warnings
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from sqlalchemy import text

import infraboot
from infraboot import DatabaseSettings, RedisSettings, SystemInitializer
from infraboot._components._database import DatabaseComponent
from infraboot._components._redis import RedisComponent

pytestmark = [pytest.mark.real, pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")]

T = TypeVar("T")


class LoopThread:
    """An event loop running in a thread of its own, as in servers that fork from the main thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    lt = LoopThread()
    try:
        yield lt
    finally:
        lt.close()


def fork_and_wait(child: Any) -> int:
    """Fork; the child runs *child()* and leaves with ``os._exit`` (its status), the parent waits for it."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            child()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def collect_in_child() -> None:
    """What a short-lived child does: collect garbage (warnings as in production, not as errors)."""
    warnings.simplefilter("ignore")
    gc.collect()
    gc.collect()


async def select_one(system: SystemInitializer) -> int:
    async with system.get("database").connect() as conn:
        return int((await conn.execute(text("SELECT 1"))).scalar_one())


async def backends(system: SystemInitializer, tag: str) -> int:
    async with system.get("database").connect() as conn:
        result = await conn.execute(
            text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :tag"), {"tag": tag}
        )
        return int(result.scalar_one())


def test_the_parents_database_keeps_working_after_a_child_collects_garbage(
    loop_thread: LoopThread, database_url: str
) -> None:
    """With the loop in a thread and the main thread forking, the parent's pooled connections still answer."""
    tag = f"infraboot-fork-{uuid.uuid4().hex[:8]}"
    settings = DatabaseSettings(url=database_url, warmup_connections=3, application_name=tag)
    system = SystemInitializer([DatabaseComponent(settings)])
    loop_thread.run(system.initialize_all())
    try:
        assert 1 == loop_thread.run(select_one(system))
        before = loop_thread.run(backends(system, tag))
        assert 0 == fork_and_wait(collect_in_child)
        # Before the fix this SELECT never completed: the child unregistered the socket from the shared epoll.
        assert [1, 1, 1, 1] == [loop_thread.run(select_one(system), timeout=10.0) for _ in range(4)]
        assert before == loop_thread.run(backends(system, tag))  # the child closed none of them
    finally:
        loop_thread.run(system.shutdown(), timeout=30.0)


def test_a_child_that_terminates_every_inherited_connection_leaves_the_parent_alone(
    loop_thread: LoopThread, database_url: str
) -> None:
    """Even when the child aborts each inherited asyncpg connection, the parent's epoll keeps their sockets."""
    from infraboot._engine import _fork

    settings = DatabaseSettings(url=database_url, warmup_connections=3)
    system = SystemInitializer([DatabaseComponent(settings)])
    loop_thread.run(system.initialize_all())

    def terminate_everything() -> None:
        warnings.simplefilter("ignore")
        pools = [o for o in _fork.orphans if hasattr(o, "checkedin")]
        records = [r for pool in pools for r in list(pool._pool._queue._queue)]  # the idle ones
        assert records, "the parent's pool went to the orphans"
        for record in records:  # what a finalised connection does: abort its transport
            record.dbapi_connection._connection.terminate()

    try:
        assert 1 == loop_thread.run(select_one(system))
        assert 0 == fork_and_wait(terminate_everything)
        assert [1, 1, 1] == [loop_thread.run(select_one(system), timeout=10.0) for _ in range(3)]
        assert loop_thread.run(asyncio.sleep(0, result=True))  # the loop's own wake-up pipe still registered
    finally:
        loop_thread.run(system.shutdown(), timeout=30.0)


def test_the_parents_redis_keeps_working_after_a_child_collects_garbage(
    loop_thread: LoopThread, redis_url: str
) -> None:
    """The same fork leaves the parent's Redis connections registered and open."""
    system = SystemInitializer([RedisComponent(RedisSettings(url=redis_url, warmup_connections=3))])
    loop_thread.run(system.initialize_all())
    try:
        client = system.get("redis")
        assert loop_thread.run(client.ping())
        assert 0 == fork_and_wait(collect_in_child)
        assert [True, True, True] == [loop_thread.run(client.ping(), timeout=10.0) for _ in range(3)]
    finally:
        loop_thread.run(system.shutdown(), timeout=30.0)


def _pool_worker(n: int) -> tuple[int, bool]:
    warnings.simplefilter("ignore")  # as in production: a finaliser's ResourceWarning does not stop it

    async def work() -> tuple[int, bool]:
        await infraboot.ensure_initialized(["redis", "database"])  # inherited (fresh pools), or started again
        async with infraboot.get_session() as session:
            value = int((await session.execute(text("SELECT CAST(:n AS int)"), {"n": n})).scalar_one())
        pong = bool(await infraboot.get_redis().ping())
        await infraboot.shutdown()  # closes the child's own connections; the parent's are untouched
        gc.collect()
        return value, pong

    return asyncio.run(work())


def test_a_fork_pool_uses_get_session_and_get_redis_and_the_parent_keeps_working(
    loop_thread: LoopThread, clean_env: pytest.MonkeyPatch, database_url: str, redis_url: str
) -> None:
    """multiprocessing fork workers query through get_session()/get_redis(); the parent's pools still answer."""
    tag = f"infraboot-pool-{uuid.uuid4().hex[:8]}"
    clean_env.setenv("DATABASE_URL", database_url)
    clean_env.setenv("DATABASE_WARMUP_CONNECTIONS", "3")
    clean_env.setenv("DATABASE_APPLICATION_NAME", tag)
    clean_env.setenv("REDIS_URL", redis_url)
    clean_env.setenv("REDIS_WARMUP_CONNECTIONS", "3")

    async def parent_query() -> tuple[int, bool]:
        async with infraboot.get_session() as session:
            value = int((await session.execute(text("SELECT 7"))).scalar_one())
        return value, bool(await infraboot.get_redis().ping())

    async def parent_backends() -> int:
        async with infraboot.get_session() as session:
            result = await session.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :tag AND pid <> pg_backend_pid()"),
                {"tag": tag},
            )
            return int(result.scalar_one())

    loop_thread.run(infraboot.ensure_initialized(["redis", "database"]), timeout=30.0)
    try:
        assert (7, True) == loop_thread.run(parent_query())
        before = loop_thread.run(parent_backends())
        with multiprocessing.get_context("fork").Pool(2) as pool:
            results = pool.map(_pool_worker, range(6), chunksize=1)
        assert [(n, True) for n in range(6)] == results
        assert [(7, True)] * 3 == [loop_thread.run(parent_query(), timeout=10.0) for _ in range(3)]
        assert before == loop_thread.run(parent_backends())
    finally:
        loop_thread.run(infraboot.shutdown(), timeout=30.0)
