"""Shortcuts to the built-in components of the default system.

``get_redis()`` and ``get_engine()`` are on the hot path: one dict lookup when
the component is ready, a precise error when it is not.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from . import _default
from ._report import ShutdownReport

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

__all__ = [
    "close_database",
    "close_redis",
    "get_engine",
    "get_redis",
    "get_session",
    "init_database",
    "init_redis",
    "pool_stats",
    "validate_config",
]


async def init_redis() -> Redis:
    """Start the ``redis`` component of the default system (if needed) and return the client."""
    await _default.ensure_initialized(["redis"])
    return get_redis()


def get_redis() -> Redis:
    """The ``redis.asyncio.Redis`` client of the default system."""
    client: Redis = _default.lookup("redis")
    return client


async def close_redis() -> ShutdownReport:
    """Stop the ``redis`` component (and whatever requires it) of the default system."""
    return await _default.default_system().stop(["redis"])


async def init_database() -> AsyncEngine:
    """Start the ``database`` component of the default system (if needed) and return the engine."""
    await _default.ensure_initialized(["database"])
    return get_engine()


def get_engine() -> AsyncEngine:
    """The SQLAlchemy ``AsyncEngine`` of the default system."""
    engine: AsyncEngine = _default.lookup("database")
    return engine


def get_session(**session_kwargs: Any) -> contextlib.AbstractAsyncContextManager[AsyncSession]:
    """An ``AsyncSession`` that commits on success, rolls back on an exception, and always closes.

    ::

        async with infraboot.get_session() as session:
            session.add(user)
        # committed here; rolled back instead if the block raised
    """
    return session_scope(get_engine(), **session_kwargs)


@contextlib.asynccontextmanager
async def session_scope(engine: AsyncEngine, **session_kwargs: Any) -> AsyncIterator[AsyncSession]:
    """A unit of work on *engine*: commit on success, roll back on an exception, always close."""
    from sqlalchemy.ext.asyncio import AsyncSession

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


async def close_database() -> ShutdownReport:
    """Stop the ``database`` component (and whatever requires it) of the default system."""
    return await _default.default_system().stop(["database"])


def pool_stats(name: str = "database") -> dict[str, int]:
    """Pool figures of a ready built-in component.

    For ``database``: ``size``, ``checked_out``, ``idle``, ``overflow``;
    for ``redis``: ``in_use``, ``available``, ``max``.
    """
    system = _default.default_system()
    resource = system.get(name)
    result = system.components[name].pool_stats(resource)
    if result is None:
        msg = f"component {name!r} has no connection pool"
        raise TypeError(msg)
    return result


def validate_config() -> None:
    """Check ``REDIS_*`` and ``DATABASE_*`` before any network I/O; raise one ConfigError listing every problem."""
    from ._settings import validate_config as _validate

    _validate()
