"""Shortcuts to the built-in components of the default system.

``get_redis()`` and ``get_engine()`` are on the hot path: one dict lookup when
the component is ready, a precise error when it is not.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any, Unpack

from infraboot._engine._report import ShutdownReport
from infraboot._engine._system_settings import SystemSettings, settings_problems
from infraboot.exceptions import ConfigError

from . import _default

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

    from infraboot._components._rabbitmq import MessageBroker
    from infraboot._components._settings import DatabaseSettings, RedisSettings
    from infraboot._engine._system import SystemInitializer

__all__ = [
    "close_database",
    "close_redis",
    "configure",
    "get_engine",
    "get_message_broker",
    "get_redis",
    "get_session",
    "init_database",
    "init_redis",
    "pool_stats",
    "use_session",
    "validate_config",
]

# (sync engine, session) pairs lent by use_session(), innermost first: a test kit's seam into session_scope().
_lent: ContextVar[tuple[tuple[Any, AsyncSession], ...]] = ContextVar("infraboot_lent_sessions", default=())

# Components a test kit fixture started and holds for the test (infraboot_db_session's "database"), per
# system: configure() hands their settings to the fixture's callback instead of refusing them.
_held: weakref.WeakKeyDictionary[Any, dict[str, Callable[[Any], None]]] = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def held_by_kit(system: Any, name: str, take: Callable[[Any], None]) -> Iterator[None]:
    """While the block runs, ``configure(**{name: settings})`` calls *take(settings)* (checked first).

    For a test kit fixture that started component *name* on a test's own server: an app
    factory that configures it afterwards must not fail because the fixture came first.
    """
    held = _held.setdefault(system, {})
    held[name] = take
    try:
        yield
    finally:
        if held.get(name) is take:
            del held[name]


async def init_redis(name: str = "redis") -> Redis:
    """Start the *name* Redis component of the default system (if needed) and return the client."""
    await _default.ensure_initialized([name])
    return get_redis(name)


def get_redis(name: str = "redis") -> Redis:
    """The ``redis.asyncio.Redis`` client of the default system's *name* component (``redis``, or a named one)."""
    client: Redis = _default.lookup(name)
    return client


def get_message_broker(name: str = "rabbitmq") -> MessageBroker:
    """The :class:`~infraboot.MessageBroker` of the default system's *name* component (``rabbitmq``, or a named one).

    The component is not registered by default: ``infraboot.register(infraboot.RabbitMQComponent())`` first.
    """
    broker: MessageBroker = _default.lookup(name)
    return broker


async def close_redis(name: str = "redis") -> ShutdownReport:
    """Stop the *name* Redis component (and whatever requires it) of the default system."""
    return await _default.default_system().stop([name])


async def init_database(name: str = "database") -> AsyncEngine:
    """Start the *name* database component of the default system (if needed) and return the engine."""
    await _default.ensure_initialized([name])
    return get_engine(name)


def get_engine(name: str = "database") -> AsyncEngine:
    """The SQLAlchemy ``AsyncEngine`` of the default system's *name* component (``database``, or a named one)."""
    engine: AsyncEngine = _default.lookup(name)
    return engine


def get_session(name: str = "database", **options: Any) -> contextlib.AbstractAsyncContextManager[AsyncSession]:
    """An ``AsyncSession`` that commits on success, rolls back on an exception, and always closes.

    The session takes the component's ``session_options`` (``DatabaseSettings``); keyword
    arguments given here win. ``expire_on_commit`` defaults to ``False``::

        async with infraboot.get_session() as session:
            session.add(user)
        # committed here; rolled back instead if the block raised
    """
    return _default.default_system().get_session(name, **options)


def session_options(system: SystemInitializer, name: str) -> dict[str, Any]:
    """The ``session_options`` of the database component *name* of *system* (none for other kinds)."""
    found: dict[str, Any] = getattr(system.component(name), "session_options", {})
    return found


@contextlib.contextmanager
def use_session(session: AsyncSession) -> Iterator[AsyncSession]:
    """Inside the block, every unit of work on *session*'s engine hands out *session* itself.

    ``get_session()`` and the framework dependencies (``DatabaseSession``,
    ``database_session_for(...)``) yield *session* instead of opening their own; they still
    ``commit()`` it on success and ``rollback()`` it on an exception, but never close it, and
    the options given to them are ignored. Only this context (and tasks started from it)
    sees the loan. Units of work from several tasks (a request and a background job) take
    turns: one waits until the other's block ends, as they share one connection; the code
    holding *session* itself should read through ``get_session()`` too while such a job runs.
    The test kit builds its transactional session on this: bound to a connection in an outer
    transaction with ``join_transaction_mode="create_savepoint"``,
    a commit only releases a savepoint::

        with use_session(session):
            await handler()   # its get_session() blocks write through `session`
    """
    bind = session.bind
    if bind is None:
        msg = "use_session() needs a session bound to an engine or a connection: AsyncSession(bind=connection)"
        raise ValueError(msg)
    engine = getattr(bind, "engine", bind)  # a connection's engine, or the engine itself
    previous = _lent.get()
    _lent.set(((getattr(engine, "sync_engine", engine), session), *previous))
    try:
        yield session
    finally:
        # Set back, not reset by token: a test runner may end the block in another context than it began.
        _lent.set(tuple(pair for pair in _lent.get() if pair[1] is not session))


class _Turn:
    """Whose unit of work a lent session is serving: one task at a time, re-entered freely by that task."""

    __slots__ = ("_lock", "_owner")

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._owner: asyncio.Task[Any] | None = None

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        task = asyncio.current_task()
        if task is not None and self._owner is task:  # a unit of work inside one of the same task: nested
            yield
            return
        async with self._lock:
            self._owner = task
            try:
                yield
            finally:
                self._owner = None


def _turn(session: AsyncSession) -> contextlib.AbstractAsyncContextManager[None]:
    """The lent *session*'s turn: a unit of work waits for another task's to end (one connection underneath)."""
    turn = session.info.get("infraboot_turn")
    if not isinstance(turn, _Turn):
        turn = session.info["infraboot_turn"] = _Turn()
    return turn.hold()


@contextlib.asynccontextmanager
async def session_scope(engine: AsyncEngine, **session_kwargs: Any) -> AsyncIterator[AsyncSession]:
    """A unit of work on *engine*: commit on success, roll back on an exception, always close.

    Inside :func:`use_session` on the same engine, the lent session is the unit of work
    (committed or rolled back, never closed) and *session_kwargs* are ignored.
    """
    from sqlalchemy.ext.asyncio import AsyncSession

    key = getattr(engine, "sync_engine", engine)
    lent = next((s for k, s in _lent.get() if k is key), None)
    if lent is not None:
        async with _turn(lent):  # one unit of work at a time on the one connection (a background job, a request)
            try:
                yield lent
                await lent.commit()
            except BaseException:
                await lent.rollback()
                raise
        return
    session_kwargs.setdefault("expire_on_commit", False)
    session = AsyncSession(engine, **session_kwargs)
    try:
        yield session
        await session.commit()
    except BaseException:
        await session.rollback()
        raise
    finally:
        await session.close()


async def close_database(name: str = "database") -> ShutdownReport:
    """Stop the *name* database component (and whatever requires it) of the default system."""
    return await _default.default_system().stop([name])


def pool_stats(name: str = "database") -> dict[str, int]:
    """Pool figures of a ready built-in component.

    For a database: ``size``, ``checked_out``, ``idle``, ``overflow``;
    for Redis: ``in_use``, ``available``, ``max``.
    """
    return _default.default_system().pool_stats(name)


def configure(
    *,
    redis: RedisSettings | Mapping[str, Any] | None = None,
    database: DatabaseSettings | Mapping[str, Any] | None = None,
    env_file: str | Path | None = None,
    components: Mapping[str, Any] | None = None,
    **system_settings: Unpack[SystemSettings],
) -> None:
    """Give the default system its settings in code, before startup.

    ``redis`` / ``database`` take a :class:`~infraboot.RedisSettings` /
    :class:`~infraboot.DatabaseSettings` (used as they are) or a mapping of their fields
    (each beats the environment). ``components`` does the same for named instances
    (``{"cache": {"url": ...}}``), and creates the ones not registered yet when their URL (or
    settings class) tells the kind: ``redis://``/``rediss://``/``memory://`` a
    :class:`~infraboot.RedisComponent`, ``postgresql+...``/``sqlite+...`` a
    :class:`~infraboot.DatabaseComponent`; ``env_file`` is read below the environment for every
    component configured here; the other keywords are the system's own settings
    (``startup_timeout``, ``check_ttl``, ...). Precedence: code, then environment
    variables, then the env file, then defaults. Everything is checked first (the settings
    of each component named here with the environment as it is now, and the system's own);
    one :class:`ConfigError` lists every problem and nothing is applied. After startup it
    is an error::

        infraboot.configure(
            redis={"url": settings.redis_url, "client_options": {"decode_responses": True}},
            database={"url": settings.database_url, "session_options": {"expire_on_commit": False}},
        )
    """
    system = _default.default_system()
    given: dict[str, Any] = dict(components or {})
    if redis is not None:
        given["redis"] = redis
    if database is not None:
        given["database"] = database
    if env_file is not None:
        for name in system.components:
            if name not in given and hasattr(system.component(name), "use"):
                given[name] = None
    file = None if env_file is None else str(env_file)
    # All or nothing: every value is checked before any is applied.
    problems = settings_problems(dict(system_settings))
    held = _held.get(system, {})
    made: dict[str, Any] = {}  # named instances configure() creates: unknown names whose URL says the kind
    for name, settings in list(given.items()):
        if name not in system.components and name not in held:
            instance = _instance_for(name, settings)
            if instance is None:
                problems.append(
                    f"components[{name!r}]: no component {name!r} is registered, and its kind cannot be told from "
                    f"its settings; give its url (redis://..., postgresql+asyncpg://...), or register it first: "
                    f"infraboot.register(infraboot.RedisComponent({name!r}))"
                )
                del given[name]
            else:
                made[name] = instance
    for name, settings in given.items():
        # A line about a variable names it (REDIS_CONNECT_TIMEOUT=...); one about a value given here
        # (connect_timeout=-1) gets the component's name, or redis' and database's would read alike.
        if name in held or name in made:  # held by a test kit fixture, or new: checked on the component itself
            component = made[name] if name in made else system.component(name)
            check = getattr(component, "settings_problems", None)
            lines = [] if check is None else list(check(settings, env_file=file))
        else:
            lines = system.settings_problems(name, settings, env_file=file)
        for problem in lines:
            problems.append(problem if problem[:1].isupper() else f"{name}: {problem}")
    if problems:
        raise ConfigError.from_problems(problems)
    for name, settings in given.items():
        if name in held:
            held[name](settings)
        else:
            if name in made:
                system.register(made[name])
            system.use(name, settings, env_file=file)
    if system_settings:
        system.configure(**system_settings)


_REDIS_SCHEMES = frozenset({"redis", "rediss", "unix", "memory", "valkey", "valkeys"})
_DATABASE_SCHEMES = frozenset({"postgresql", "postgres", "sqlite"})


def _instance_for(name: str, settings: Any) -> Any:
    """A new built-in component named *name* for *settings*: the kind told by its class or its URL's scheme."""
    from infraboot._components._database import DatabaseComponent
    from infraboot._components._redis import RedisComponent

    kind = type(settings).__name__
    if kind.startswith("RedisSettings"):
        return RedisComponent(name)
    if kind.startswith("DatabaseSettings"):
        return DatabaseComponent(name)
    url = settings.get("url") if isinstance(settings, Mapping) else getattr(settings, "url", None)
    reveal = getattr(url, "get_secret_value", None)
    text = str(reveal() if callable(reveal) else url or "")
    scheme = text.split("://", 1)[0].split("+", 1)[0].lower() if "://" in text else ""
    if scheme in _REDIS_SCHEMES:
        return RedisComponent(name)
    if scheme in _DATABASE_SCHEMES:
        return DatabaseComponent(name)
    return None


def validate_config() -> None:
    """Check ``REDIS_*`` and ``DATABASE_*`` before any network I/O; raise one ConfigError listing every problem."""
    from infraboot._components._settings import validate_config as _validate

    _validate()
