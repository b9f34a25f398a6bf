"""Run-once startup tasks: ``@infraboot.once(name, requires=["database"], key=..., timeout=...)``.

A migration, a seed, a cache warm-up that N replicas starting together must run exactly
once per key. The body runs under a PostgreSQL advisory lock held by the session of a
connection of its own; completion is recorded per (name, key) in ``infraboot_once``.
The others wait for the lock, see the record and go on; a process that dies mid-run
ends its session, which releases the lock, and the next one runs the body.

Nothing here imports SQLAlchemy at module level: it loads when the component starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import logging
import os
import random
import socket
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from ._component import Component, ComponentOptions, Context
from ._log import event
from .exceptions import ConfigError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

__all__ = ["TABLE", "OnceComponent", "OnceOptions", "OnceOutcome", "lock_id", "once"]

TABLE = "infraboot_once"
#: Seconds between two tries of the lock, drawn at random up to this (no lock-step among waiters).
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
        from sqlalchemy import text

        params = {"name": self.name, "key": key}
        conn = await engine.connect()
        try:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await _ensure_table(conn)
            if (await conn.execute(text(_DONE), params)).first() is not None:
                event(logging.INFO, "once_already_done", self.name, key=key)
                return OnceOutcome(self.name, key, ran=False, waited=0.0, took=0.0)
            t0 = time.monotonic()
            lock = lock_id(self.name, key)
            told = False
            while not (await conn.execute(text("SELECT pg_try_advisory_lock(:id)"), {"id": lock})).scalar():
                if not told:
                    event(logging.INFO, "once_waiting", self.name, key=key)
                    told = True
                await asyncio.sleep(random.uniform(0.02, POLL_MAX))
            waited = time.monotonic() - t0
            if (await conn.execute(text(_DONE), params)).first() is not None:
                event(logging.INFO, "once_done_elsewhere", self.name, key=key, waited=waited)
                return OnceOutcome(self.name, key, ran=False, waited=waited, took=0.0)
            event(logging.INFO, "once_running", self.name, key=key)
            t1 = time.monotonic()
            await self._fn(ctx)
            took = time.monotonic() - t1
            await conn.execute(text(_RECORD), {**params, "took": took, "by": f"{socket.gethostname()}:{os.getpid()}"})
            event(logging.INFO, "once_ran", self.name, key=key, took=took)
            return OnceOutcome(self.name, key, ran=True, waited=waited, took=took)
        finally:
            # Shielded: a cancelled attempt must still let go of the lock (or end the session holding it).
            await asyncio.shield(_release(conn))

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f" fn={self._fn.__qualname__}>"


async def _ensure_table(conn: AsyncConnection) -> None:
    from sqlalchemy import text

    await conn.execute(text("SELECT pg_advisory_lock(:id)"), {"id": _TABLE_LOCK})
    try:
        await conn.execute(text(_CREATE))
    finally:
        await conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": _TABLE_LOCK})


async def _release(conn: AsyncConnection) -> None:
    """Unlock and give the connection back; on any doubt close it instead: its session's locks end with it."""
    from sqlalchemy import text

    try:
        # Every session lock of this connection: the task's, and the table's if a cancel came in between.
        await conn.execute(text("SELECT pg_advisory_unlock_all()"))
        await conn.close()
    except Exception as exc:
        event(logging.DEBUG, "once_release_failed", None, error=type(exc).__name__)
        with contextlib.suppress(Exception):
            await conn.invalidate()
        with contextlib.suppress(Exception):
            await conn.close()


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
    ``waited``, ``took``). Not behind PgBouncer in transaction pooling: a session lock
    needs a session. ::

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
