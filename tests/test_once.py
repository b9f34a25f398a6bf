"""Run-once startup tasks against the real PostgreSQL: once per key among processes, a crash hands over."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

import infraboot
from infraboot import ConfigError, DatabaseComponent, DatabaseSettings, StartupError, SystemInitializer
from infraboot._components._once import OnceOutcome, lock_id

from .servers import AppProcess, PgBouncer

pytestmark = pytest.mark.real

# One process of a service starting: the database, then the run-once task, then it reports and stops.
SCRIPT = """
import asyncio, logging, os, sys
import infraboot
from sqlalchemy import text

NAME, KEY, TABLE = sys.argv[1:4]
logging.basicConfig(level=logging.INFO, format="%(message)s")

@infraboot.once(NAME, key=KEY, timeout=60)
async def task(ctx):
    async with ctx.get("database").begin() as conn:
        await conn.execute(text(f"INSERT INTO {TABLE} VALUES (:pid, 'started')"), {"pid": os.getpid()})
    if os.environ.get("ONCE_HANG"):
        print("body hangs", flush=True)
        await asyncio.Event().wait()  # stands for a migration that never ends: the test kills it here
    await asyncio.sleep(0.5)  # the work itself: long enough for the other processes to find the lock taken
    async with ctx.get("database").begin() as conn:
        await conn.execute(text(f"INSERT INTO {TABLE} VALUES (:pid, 'done')"), {"pid": os.getpid()})

infraboot.register(task)

async def main():
    await infraboot.ensure_initialized(["database", NAME])
    outcome = infraboot.get(NAME)
    print(f"outcome ran={outcome.ran} waited={outcome.waited:.3f}", flush=True)
    await infraboot.shutdown()

asyncio.run(main())
"""


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    e = create_async_engine(database_url)
    try:
        yield e
    finally:
        await e.dispose()


@pytest.fixture
async def journal(engine: AsyncEngine) -> AsyncIterator[str]:
    """A table where the bodies write (pid, 'started' | 'done'); dropped after, with the test's once records."""
    table = f"once_journal_{uuid.uuid4().hex[:8]}"
    async with engine.begin() as conn:
        await conn.execute(text(f"CREATE TABLE {table} (pid int, what text)"))
    try:
        yield table
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f"DROP TABLE {table}"))
            await conn.execute(text("DELETE FROM infraboot_once WHERE name LIKE :n"), {"n": f"{table}%"})


@pytest.fixture
def spawn(tmp_path: Path, database_url: str) -> Iterator[object]:
    script = tmp_path / "service.py"
    script.write_text(SCRIPT)
    started: list[AppProcess] = []
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "DATABASE_"))}
    env.update(DATABASE_URL=database_url, REDIS_ENABLED="false")

    def run(name: str, key: str, table: str, **extra: str) -> AppProcess:
        proc = AppProcess([sys.executable, str(script), name, key, table], env={**env, **extra}, workdir=tmp_path)
        started.append(proc)
        return proc

    try:
        yield run
    finally:
        for proc in started:
            proc.close()


async def rows(engine: AsyncEngine, table: str) -> list[tuple[int, str]]:
    async with engine.connect() as conn:
        return [(r[0], r[1]) for r in await conn.execute(text(f"SELECT pid, what FROM {table}"))]


async def poll(condition: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.05)
    msg = f"condition not met within {timeout}s"
    raise AssertionError(msg)


async def test_five_processes_starting_at_once_run_the_body_once_per_key(
    engine: AsyncEngine, journal: str, spawn: object
) -> None:
    """Five processes started together: one runs the body, four wait and go on; a new key runs it once more."""
    procs = [spawn(journal, "v1", journal) for _ in range(5)]  # type: ignore[operator]
    codes = [p.wait(60) for p in procs]
    assert [0] * 5 == codes, [p.output[-1500:] for p in procs]
    outcomes = sorted("ran=True" in p.output for p in procs)
    assert [False, False, False, False, True] == outcomes
    ran = [r for r in await rows(engine, journal) if r[1] == "done"]
    assert 1 == len(ran)
    others = [p.output for p in procs if "ran=False" in p.output]
    assert 4 == sum("once_done_elsewhere" in o or "once_already_done" in o for o in others)

    later = [spawn(journal, "v1", journal), spawn(journal, "v2", journal)]  # type: ignore[operator]
    assert [0, 0] == [p.wait(60) for p in later]
    assert "once_already_done" in later[0].output
    assert "ran=True" in later[1].output
    assert 2 == len([r for r in await rows(engine, journal) if r[1] == "done"])


async def test_behind_pgbouncer_in_transaction_pooling_five_processes_run_the_body_once(
    engine: AsyncEngine, journal: str, spawn: object, pgbouncer: PgBouncer
) -> None:
    """Through PgBouncer in transaction pooling (DATABASE_PGBOUNCER=true) the body still runs in one process of five."""
    bounced = {"DATABASE_URL": pgbouncer.url(), "DATABASE_PGBOUNCER": "true"}
    procs = [spawn(journal, "v1", journal, **bounced) for _ in range(5)]  # type: ignore[operator]
    codes = [p.wait(60) for p in procs]
    assert [0] * 5 == codes, [p.output[-1500:] for p in procs]
    assert [False, False, False, False, True] == sorted("ran=True" in p.output for p in procs)
    assert 1 == len([r for r in await rows(engine, journal) if r[1] == "done"])


@pytest.mark.parametrize("via", ["direct", "pgbouncer"])
async def test_a_process_killed_mid_body_hands_the_task_to_the_next(
    engine: AsyncEngine, journal: str, spawn: object, via: str, request: pytest.FixtureRequest
) -> None:
    """SIGKILL mid-body releases the lock with the session (direct or through PgBouncer); the waiter then runs it."""
    extra: dict[str, str] = {}
    if via == "pgbouncer":
        bouncer: PgBouncer = request.getfixturevalue("pgbouncer")
        extra = {"DATABASE_URL": bouncer.url(), "DATABASE_PGBOUNCER": "true"}
    first = spawn(journal, "v1", journal, ONCE_HANG="1", **extra)  # type: ignore[operator]
    first.wait_for_output("body hangs", timeout=30)
    second = spawn(journal, "v1", journal, **extra)  # type: ignore[operator]
    second.wait_for_output("once_waiting", timeout=30)
    assert None is second.proc.poll()  # waiting, not done
    first.proc.send_signal(signal.SIGKILL)
    assert 0 == second.wait(60), second.output[-2000:]
    assert "ran=True" in second.output
    journal_rows = await rows(engine, journal)
    assert {(first.proc.pid, "started"), (second.proc.pid, "started"), (second.proc.pid, "done")} == set(journal_rows)


def db_component(database_url: str) -> DatabaseComponent:
    return DatabaseComponent(DatabaseSettings(url=database_url, connect_timeout=5.0))


async def test_a_body_that_raises_records_nothing_and_runs_again_next_time(database_url: str, journal: str) -> None:
    """A failing body fails the startup and leaves no record: the next start runs it again, and then never."""
    calls: list[str] = []

    def task(fail: bool) -> infraboot.Component[OnceOutcome]:
        @infraboot.once(journal, key="k")
        async def body(ctx: infraboot.Context) -> None:
            calls.append("run")
            if fail:
                raise RuntimeError("migration 42 failed")

        return body

    for fail in (True, False, False):
        system = SystemInitializer([db_component(database_url), task(fail)])
        try:
            if fail:
                with pytest.raises(StartupError):
                    await system.ensure_initialized()
            else:
                await system.ensure_initialized()
        finally:
            await system.shutdown()
    assert ["run", "run"] == calls


async def test_a_waiter_gives_up_at_its_timeout_and_leaks_no_lock(database_url: str, journal: str) -> None:
    """While another session holds the lock, the start fails at its timeout; the lock is free once the holder leaves."""
    holder = create_async_engine(database_url)
    try:
        async with holder.connect() as conn:
            await conn.execute(text("SELECT pg_advisory_lock(:id)"), {"id": lock_id(journal, "k")})
            comp = infraboot.once(journal, key="k", timeout=0.5)(_noop)
            system = SystemInitializer([db_component(database_url), comp])
            t0 = time.monotonic()
            with pytest.raises(StartupError):
                await system.ensure_initialized()
            assert time.monotonic() - t0 < 5.0
            assert "timeout" == system.snapshot()[journal].error_code
            await system.shutdown()
            await conn.execute(text("SELECT pg_advisory_unlock_all()"))
            await conn.commit()
        system = SystemInitializer([db_component(database_url), infraboot.once(journal, key="k", timeout=5)(_noop)])
        await system.ensure_initialized()
        assert system.get(journal).ran
        await system.shutdown()
    finally:
        await holder.dispose()


async def test_a_waiter_polls_the_lock_without_backoff_under_set_testing(
    database_url: str, journal: str, pauses: list[float]
) -> None:
    """Under set_testing the lock is polled at the short testing pause (no growing backoff) until the timeout."""
    from infraboot._engine._backoff import TESTING_FOREVER_WAIT

    holder = create_async_engine(database_url)
    try:
        async with holder.connect() as conn:
            await conn.execute(text("SELECT pg_advisory_lock(:id)"), {"id": lock_id(journal, "k")})
            system = SystemInitializer(
                [db_component(database_url), infraboot.once(journal, key="k", timeout=1.0)(_noop)]
            )
            with infraboot.set_testing(), pytest.raises(StartupError):
                await system.ensure_initialized()
            await system.shutdown()
            await conn.execute(text("SELECT pg_advisory_unlock_all()"))
            await conn.commit()
    finally:
        await holder.dispose()
    assert len(pauses) >= 5
    assert {TESTING_FOREVER_WAIT} == set(pauses)


async def test_the_documented_body_runs_with_a_pool_of_one_connection(database_url: str, journal: str) -> None:
    """With pool_size=1 and max_overflow=0 the body's begin() gets the one pooled connection: the lock has its own."""

    @infraboot.once(journal, key="k", timeout=20)
    async def migrate(ctx: infraboot.Context) -> None:
        async with ctx.get("database").begin() as conn:
            await conn.execute(text(f"INSERT INTO {journal} VALUES (1, 'done')"))

    settings = DatabaseSettings(url=database_url, pool_size=1, max_overflow=0, pool_timeout=20)
    system = SystemInitializer([DatabaseComponent(settings), migrate])
    t0 = time.monotonic()
    try:
        await system.ensure_initialized()
        took = time.monotonic() - t0
        assert True is system.get(journal).ran
    finally:
        await system.shutdown()
    assert took < 10.0


async def test_a_stuck_lock_holder_is_named_in_the_error(database_url: str, journal: str) -> None:
    """A waiter that reaches its timeout says which session holds the lock: pid, application_name, since when."""
    holder = create_async_engine(database_url, connect_args={"server_settings": {"application_name": "stuck-migrator"}})
    try:
        async with holder.connect() as conn:
            pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar()
            await conn.execute(text("SELECT pg_advisory_lock(:id)"), {"id": lock_id(journal, "k")})
            await conn.commit()
            system = SystemInitializer([db_component(database_url), infraboot.once(journal, key="k", timeout=2)(_noop)])
            with pytest.raises(StartupError) as caught:
                await system.ensure_initialized()
            await system.shutdown()
            await conn.execute(text("SELECT pg_advisory_unlock_all()"))
            await conn.commit()
    finally:
        await holder.dispose()
    message = str(caught.value)
    assert "timeout" == system.snapshot()[journal].error_code
    assert f"held by pid {pid} application_name='stuck-migrator'" in message, message
    assert "since " in message


async def test_a_lock_that_does_not_outlive_its_statement_is_refused_before_the_body(
    database_url: str, journal: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the next statement's session does not hold the lock (no real transaction), the body never runs."""
    # Stands for a connection that loses its session between statements: the lock is let go at once.
    monkeypatch.setattr(
        "infraboot._components._once._TRY_LOCK",
        "SELECT pg_try_advisory_lock(:id) AND pg_advisory_unlock(:id) AND :app <> ''",
    )
    calls: list[str] = []

    @infraboot.once(journal, key="k", timeout=10)
    async def body(ctx: infraboot.Context) -> None:
        calls.append("ran")

    system = SystemInitializer([db_component(database_url), body])
    with pytest.raises(StartupError) as caught:
        await system.ensure_initialized()
    await system.shutdown()
    assert ([], "config") == (calls, system.snapshot()[journal].error_code)
    assert "is not held by the session of the next statement" in str(caught.value)


async def test_a_run_that_commits_just_before_the_lock_is_taken_is_seen_and_not_repeated(
    database_url: str, journal: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process commits its record and lets go of the lock just before this one takes it: no second run.

    The interleaving that made the body run twice under load: the record was read before the
    lock was taken, so a run committing in between went unseen. Here the other run commits
    exactly then, from a hook on the statement that takes the lock.
    """
    from sqlalchemy import event
    from sqlalchemy.util import await_only

    from infraboot._components import _database
    from infraboot._components._once import _CREATE

    other_engine = create_async_engine(database_url)
    other = await other_engine.connect()
    other_tx = await other.begin()
    await other.execute(text(_CREATE))
    await other.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": lock_id(journal, "k")})
    await other.execute(
        text("INSERT INTO infraboot_once (name, key, duration_s, ran_by) VALUES (:n, 'k', 0.1, 'other')"),
        {"n": journal},
    )
    real = _database.dedicated_engine

    def dedicated(engine: AsyncEngine) -> AsyncEngine:
        made = real(engine)

        @event.listens_for(made.sync_engine, "before_cursor_execute")
        def commit_the_other_run(*args: object) -> None:
            if other_tx.is_active and "pg_try_advisory_xact_lock" in str(args[2]):
                await_only(other_tx.commit())  # the other run ends: record visible, lock free

        return made

    monkeypatch.setattr(_database, "dedicated_engine", dedicated)
    calls: list[str] = []

    @infraboot.once(journal, key="k", timeout=10)
    async def body(ctx: infraboot.Context) -> None:
        calls.append("ran")

    system = SystemInitializer([db_component(database_url), body])
    try:
        await system.ensure_initialized()
        assert not other_tx.is_active, "the hook did not run"
        assert ([], False) == (calls, system.get(journal).ran)
    finally:
        await system.shutdown()
        await other.close()
        await other_engine.dispose()


async def _noop(ctx: infraboot.Context) -> None:
    return None


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (
            lambda: infraboot.once("m", requires=["redis"])(_noop),
            "must name the database it locks in",
        ),
        (lambda: infraboot.once("m", key="")(_noop), "key='' must be a non-empty string"),
        (lambda: infraboot.once("m")(lambda ctx: None), "needs an async function"),
        (lambda: infraboot.once("m", timeout=-1)(_noop), "timeout=-1"),
        (lambda: infraboot.once(_noop), "needs a name"),  # type: ignore[arg-type]
    ],
)
def test_a_bad_definition_is_refused_naming_the_fix(make: object, expected: str) -> None:
    """Definition errors are ConfigErrors at decoration time, each naming the fix."""
    with pytest.raises(ConfigError) as caught:
        make()  # type: ignore[operator]
    assert expected in str(caught.value)


async def test_a_generator_body_is_refused() -> None:
    """A body that yields is refused: a run-once body runs and returns."""

    async def gen(ctx: infraboot.Context) -> AsyncIterator[None]:
        yield None

    with pytest.raises(ConfigError, match="a run-once body is 'async def"):
        infraboot.once("m")(gen)  # type: ignore[arg-type]


async def test_sqlite_is_refused_with_the_fix() -> None:
    """On SQLite there is no advisory lock: the start fails with a ConfigError naming PostgreSQL."""
    system = SystemInitializer(
        [DatabaseComponent(DatabaseSettings(url="sqlite+aiosqlite:///:memory:")), infraboot.once("m")(_noop)]
    )
    with pytest.raises(StartupError) as caught:
        await system.ensure_initialized()
    assert "needs PostgreSQL (advisory locks)" in str(caught.value)
    await system.shutdown()
