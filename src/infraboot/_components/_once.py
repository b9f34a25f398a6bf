"""Run-once startup tasks: ``@infraboot.once(name, requires=["database"], key=..., timeout=...)``.

A migration, a seed, a cache warm-up that N replicas starting together must run exactly
once per key. The body runs under a PostgreSQL advisory lock held by a transaction on a
connection of its own, outside the database's pool; the completion record is written in
that transaction, so it commits as the lock is released (``infraboot_once``, per (name, key)).
The others wait for the lock, see the record and go on; a process that dies mid-run
ends its session, whose transaction rolls back and releases the lock, and the next one
runs the body. A transaction keeps one server session even behind PgBouncer in
transaction pooling, where a session lock would be taken and kept on whichever server
connection the statement happened to use.

Nothing here imports SQLAlchemy at module level: it loads when the component starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from infraboot._base._log import event
from infraboot._base._redact import scrub
from infraboot._engine._backoff import backoff
from infraboot._engine._component import Component, ComponentOptions, Context
from infraboot._engine._deadlines import shielded
from infraboot.exceptions import ConfigError, OnceLockTimeout

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

__all__ = ["TABLE", "OnceComponent", "OnceLockTimeout", "OnceOptions", "OnceOutcome", "lock_id", "once"]

TABLE = "infraboot_once"
#: Seconds between two tries of the lock: a backoff from POLL_FIRST up to POLL_MAX (no lock-step among waiters).
POLL_FIRST = 0.05
POLL_MAX = 0.25
_TABLE_LOCK = -0x1B0_07_0CE  # serialises CREATE TABLE IF NOT EXISTS, which races on the catalog otherwise
_CREATE = f"""CREATE TABLE IF NOT EXISTS {TABLE} (
    name text NOT NULL,
    key text NOT NULL,
    completed_at timestamptz NOT NULL DEFAULT now(),
    duration_s double precision NOT NULL,
    ran_by text NOT NULL,
    PRIMARY KEY (name, key)
)"""
_DONE = "SELECT 1 FROM infraboot_once WHERE name = :name AND key = :key"
# The lock, and -- while this transaction holds it -- who holds it in pg_stat_activity; no timeout
# of the server's may end the transaction (and the lock) while the body runs.
_TRY_LOCK = (
    "SELECT pg_try_advisory_xact_lock(:id) AND set_config('application_name', :app, true) IS NOT NULL "
    "AND (SELECT count(set_config(name, '0', true)) FROM pg_settings "
    "WHERE name IN ('idle_in_transaction_session_timeout', 'transaction_timeout')) >= 0"
)
# A bigint advisory lock shows in pg_locks as classid (high 32 bits), objid (low 32 bits), objsubid 1.
_HELD = """SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid()
    AND classid = :hi AND objid = :lo AND objsubid = 1)"""
_HOLDER = """SELECT a.pid, a.application_name, host(a.client_addr), a.backend_start,
       extract(epoch FROM now() - a.backend_start), extract(epoch FROM now() - a.xact_start), a.state
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.classid = :hi AND l.objid = :lo AND l.objsubid = 1
LIMIT 1"""
_RECORD = (
    "INSERT INTO infraboot_once (name, key, duration_s, ran_by) VALUES (:name, :key, :took, :by) "
    "ON CONFLICT (name, key) DO NOTHING"
)


class OnceOptions(TypedDict, total=False):
    """The component settings :func:`once` takes besides its own (see :class:`~infraboot.Component`)."""

    required: bool
    retries: int
    backoff_initial: float
    backoff_max: float
    deadline: float | None
    check_timeout: float
    stop_timeout: float
    kind: str


Body = Callable[[Context], Awaitable[object]]
Key = str | Callable[[], str] | None


@dataclass(frozen=True, slots=True)
class OnceOutcome:
    """What a run-once component yields: whether this process ran the body, and the time it spent.

    ``ran`` is ``False`` when another process had run it already (for this key) or ran it
    while this one waited; ``waited`` is the time spent waiting for that other process,
    ``took`` the time the body took here (``0.0`` when it did not run here).
    """

    name: str
    key: str
    ran: bool
    waited: float
    took: float


def lock_id(name: str, key: str) -> int:
    """The advisory lock of (*name*, *key*): a signed 64-bit number, the same in every process."""
    digest = hashlib.blake2b(f"{TABLE}\0{name}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class OnceComponent(Component[OnceOutcome]):
    """A component whose body runs once per key among every process sharing the database (see :func:`once`)."""

    def __init__(self, fn: Body, name: str, *, key: Key, database: str, **options: Unpack[ComponentOptions]) -> None:
        label = f"@infraboot.once({name!r})"
        fn_name = getattr(fn, "__qualname__", repr(fn))
        if inspect.isasyncgenfunction(fn) or inspect.isgeneratorfunction(fn):
            msg = f"{label}: {fn_name} yields; a run-once body is 'async def {fn_name}(ctx): ...' that returns"
            raise ConfigError(msg)
        if not inspect.iscoroutinefunction(fn):
            msg = f"{label} needs an async function: write it as 'async def {fn_name}(ctx): ...'"
            raise ConfigError(msg)
        if not (key is None or callable(key) or (isinstance(key, str) and key.strip())):
            msg = f"{label}: key={key!r} must be a non-empty string or a function returning one, e.g. key='v42'"
            raise ConfigError(msg)
        options.setdefault("requires", (database,))
        options.setdefault("retries", 0)  # a failed body is not run again blindly: fix it and restart
        requires = options["requires"]
        if isinstance(requires, Collection) and not isinstance(requires, str) and database not in requires:
            msg = (
                f"{label}: requires={list(requires)!r} must name the database it locks in, e.g. requires=[{database!r}]"
            )
            raise ConfigError(msg)
        self._fn = fn
        self._key = key
        self.database = database
        self.__doc__ = fn.__doc__
        super().__init__(name, **options)

    def key(self) -> str:
        """The key of this run: the given string, what the key function returns, or ``""``."""
        if self._key is None:
            return ""
        value = self._key() if callable(self._key) else self._key
        if not isinstance(value, str) or not value.strip():
            msg = f"@infraboot.once({self.name!r}): the key function returned {value!r}; return a non-empty string"
            raise ConfigError(msg)
        return value

    async def start(self, ctx: Context) -> OnceOutcome:
        engine: AsyncEngine = ctx.get(self.database)
        key = self.key()
        if engine.dialect.name != "postgresql":
            msg = (
                f"@infraboot.once({self.name!r}) needs PostgreSQL (advisory locks); "
                f"{self.database!r} is {engine.dialect.name}: point it at PostgreSQL or run the task yourself"
            )
            raise ConfigError(msg)
        from ._database import dedicated_engine

        # The lock's connection is outside the database's pool: the body may need every pooled one.
        locks = dedicated_engine(engine)
        try:
            conn = await locks.connect()
        except BaseException:
            await shielded(locks.dispose())
            raise
        try:
            return await self._run(ctx, conn, key)
        finally:
            # Shielded: a cancelled attempt must still end the lock's session, which drops its lock.
            await shielded(_close(conn, locks))

    async def _run(self, ctx: Context, conn: AsyncConnection, key: str) -> OnceOutcome:
        from sqlalchemy import text

        # Each statement its own snapshot: the read of the record, after the lock, must see the
        # commit of the run that released it (a transaction's snapshot taken before the lock would not).
        await conn.execution_options(isolation_level="READ COMMITTED")
        params = {"name": self.name, "key": key}
        lock = lock_id(self.name, key)
        t0 = time.monotonic()
        # Give up (naming who holds the lock) a little before the attempt's deadline cancels us.
        give_up = t0 + self.timeout - min(2.0, 0.2 * self.timeout)
        await _ensure_table(conn)
        first, polls = True, 0
        while True:
            # The lock is a transaction's (pg_try_advisory_xact_lock), held on this one connection
            # from before the body until the record commits: a transaction keeps its server session
            # even behind PgBouncer in transaction pooling, which a session lock does not.
            # The record is read only once the lock is held, by a statement after the one that took
            # it: a read before the lock could miss the record of a run that committed (and let go
            # of the lock) in between, and this process would run the body a second time.
            async with conn.begin():
                if (await conn.execute(text(_TRY_LOCK), {"id": lock, "app": _holder_name(self.name)})).scalar():
                    await self._verify(conn, lock, key)
                    if (await conn.execute(text(_DONE), params)).first() is not None:
                        waited = time.monotonic() - t0
                        if first:
                            event(logging.INFO, "once_already_done", self.name, key=key)
                            return OnceOutcome(self.name, key, ran=False, waited=0.0, took=0.0)
                        event(logging.INFO, "once_done_elsewhere", self.name, key=key, waited=waited)
                        return OnceOutcome(self.name, key, ran=False, waited=waited, took=0.0)
                    waited = time.monotonic() - t0
                    event(logging.INFO, "once_running", self.name, key=key)
                    t1 = time.monotonic()
                    await self._fn(ctx)
                    took = time.monotonic() - t1
                    by = f"{socket.gethostname()}:{os.getpid()}"
                    await conn.execute(text(_RECORD), {**params, "took": took, "by": by})
                    ran = OnceOutcome(self.name, key, ran=True, waited=waited, took=took)
                else:
                    ran = None
            if ran is not None:  # committed: the record is visible and the lock released together
                event(logging.INFO, "once_ran", self.name, key=key, took=ran.took)
                return ran
            if first:
                holder = await _holder(conn, lock)
                event(logging.INFO, "once_waiting", self.name, key=key, holder=holder)
                first = False
            if time.monotonic() >= give_up:
                holder = await _holder(conn, lock)
                msg = (
                    f"@infraboot.once({self.name!r}, key={key!r}): gave up after {time.monotonic() - t0:.1f}s "
                    f"(timeout={self.timeout:g}) waiting for the lock, held by {holder}; if that process is stuck, "
                    "end it (pg_terminate_backend(pid)) and start again, or raise timeout= if the task is just long"
                )
                raise OnceLockTimeout(msg)
            polls += 1
            await asyncio.sleep(backoff(polls, initial=POLL_FIRST, maximum=POLL_MAX, forever=True))

    async def _verify(self, conn: AsyncConnection, lock: int, key: str) -> None:
        """Refuse before the body unless the next statement's session holds the lock just taken.

        The proof that the lock outlives its statement: a later statement of the same
        transaction finds it in ``pg_locks`` under its own ``pg_backend_pid()``. It fails when
        no transaction really spans the two (a pooler switching server connections between
        statements, a forced autocommit): then every process would "win" and run the body.
        """
        from sqlalchemy import text

        held = (await conn.execute(text(_HELD), _lock_keys(lock))).scalar()
        if not held:
            msg = (
                f"@infraboot.once({self.name!r}, key={key!r}): the advisory lock just taken is not held by the "
                "session of the next statement, so it cannot keep other processes out; the connection to "
                f"{self.database!r} does not keep one server session for a transaction (a pooler in statement "
                "mode, or autocommit forced): point it at PostgreSQL itself or at PgBouncer in transaction or "
                "session pooling"
            )
            raise ConfigError(msg)

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f" fn={self._fn.__qualname__}>"


def _holder_name(name: str) -> str:
    # Shown in pg_stat_activity.application_name while the lock is held (PostgreSQL keeps 63 bytes).
    return f"infraboot once {socket.gethostname()}:{os.getpid()} {name}"[:63]


async def _ensure_table(conn: AsyncConnection) -> None:
    from sqlalchemy import text

    async with conn.begin():
        # CREATE TABLE IF NOT EXISTS races on the catalog: serialised by a transaction's lock.
        await conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _TABLE_LOCK})
        await conn.execute(text(_CREATE))


def _lock_keys(lock: int) -> dict[str, int]:
    return {"hi": (lock >> 32) & 0xFFFFFFFF, "lo": lock & 0xFFFFFFFF}


async def _holder(conn: AsyncConnection, lock: int) -> str:
    """Who holds the advisory lock *lock*: pid, application_name, client, since when -- or why it is unknown."""
    from sqlalchemy import text

    try:
        async with conn.begin():
            row = (await conn.execute(text(_HOLDER), _lock_keys(lock))).first()
    except Exception as exc:
        return f"an unknown session ({type(exc).__name__} reading pg_locks)"
    if row is None:
        return "a session that has just let go of it"
    pid, app, client, connected, age, in_xact, state = row
    who = f"pid {pid}" + (f" application_name={app!r}" if app else "") + (f" from {client}" if client else "")
    when = ""
    if connected is not None:
        when = f", connected since {connected.isoformat(timespec='seconds')} ({age:.0f}s)"
    if in_xact is not None:
        when += f", in a transaction for {in_xact:.0f}s"
    if state:
        when += f", {state}"
    return scrub(who + when)


async def _close(conn: AsyncConnection, locks: AsyncEngine) -> None:
    """Close the lock's connection (and its engine): the session ends, and every lock of it with it."""
    try:
        await conn.close()
    except Exception as exc:
        event(logging.DEBUG, "once_release_failed", None, error=type(exc).__name__)
        with contextlib.suppress(Exception):
            await conn.invalidate()
    with contextlib.suppress(Exception):
        await locks.dispose()


def once(
    name: str,
    *,
    requires: Collection[str] = ("database",),
    key: Key = None,
    timeout: float = 300.0,
    database: str = "database",
    **options: Unpack[OnceOptions],
) -> Callable[[Body], OnceComponent]:
    """Turn an async function into a startup task that runs once per *key* among every process.

    The body runs under a PostgreSQL advisory lock of the *database* component (which must
    be in *requires*), on a connection of its own, and its completion is recorded in the
    ``infraboot_once`` table (created on first use). Among N processes starting together
    one runs it; the others wait -- at most *timeout* seconds, the attempt's deadline,
    waiting and running together -- then see the record and go on. A process that crashes
    mid-run releases the lock with its session; the next one runs the body. A body that
    raises records nothing and, by default (``retries=0``), fails the startup.

    *key* is a string (a migration revision, a release) or a function returning one;
    ``None`` means once ever. The component yields an ``OnceOutcome`` (``ran``,
    ``waited``, ``took``). The lock is held by a transaction on a connection outside the
    database's pool (so the body may use the whole pool), which works behind PgBouncer in
    transaction pooling too; a waiter that reaches its timeout fails its start (``timeout``)
    naming the session that holds the lock (pid, application_name, since when). ::

        @infraboot.once("migrate", requires=["database"], key=ALEMBIC_HEAD, timeout=120)
        async def migrate(ctx):
            async with ctx.get("database").begin() as conn:
                await conn.run_sync(metadata.create_all)

        infraboot.register(migrate)
    """
    if callable(name) and not isinstance(name, str):
        msg = "@infraboot.once needs a name: write @infraboot.once('migrate', ...)"
        raise ConfigError(msg)
    given: dict[str, Any] = {"requires": requires, "timeout": timeout, **options}

    def decorate(fn: Body) -> OnceComponent:
        return OnceComponent(fn, name, key=key, database=database, **given)

    return decorate
