"""FastAPI adapter: lifespan, probe router, dependencies and the probe middleware.

::

    from fastapi import FastAPI
    import infraboot.fastapi as ib

    app = FastAPI(lifespan=ib.lifespan(["redis", "database"]))
    app.include_router(ib.health_router())

    @app.get("/hits")
    async def hits(redis: ib.RedisClient, session: ib.DatabaseSession) -> int:
        return await redis.incr("hits")

``RedisClient`` and ``DatabaseSession`` answer 503 (with ``Retry-After``) while their
component is unavailable, instead of a 500 from deep inside a handler.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, HTTPException
from starlette.routing import BaseRoute

from ._engine._system import SystemInitializer
from ._front._accessors import session_options, session_scope
from ._web._asgi import ProbeMiddleware, lifespan
from .exceptions import ComponentUnavailableError, NotInitializedError, UnknownComponentError
from .starlette import RETRY_AFTER, exception_handlers, health_routes, system_of  # FastAPI is Starlette underneath

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from sqlalchemy.ext.asyncio import AsyncSession

    from ._components._rabbitmq import MessageBroker
else:  # the drivers are optional extras: FastAPI needs no real class for a Depends() alias
    Redis = Any
    AsyncSession = Any
    MessageBroker = Any

__all__ = [
    "RETRY_AFTER",
    "Broker",
    "DatabaseSession",
    "ProbeMiddleware",
    "RedisClient",
    "System",
    "database_session",
    "database_session_for",
    "exception_handlers",
    "health_router",
    "lifespan",
    "message_broker",
    "redis_client",
    "redis_client_for",
    "resource_for",
    "system_of",
]


System = Annotated[SystemInitializer, Depends(system_of)]
"""The serving system, as a dependency: ``async def handler(system: System)``."""


def _resource(system: SystemInitializer, name: str) -> Any:
    try:
        return system.get(name)
    except UnknownComponentError:
        raise  # a wrong name is a bug in the application: a 500 with the message, not a 503
    except (ComponentUnavailableError, NotInitializedError):
        raise HTTPException(
            status_code=503, detail=f"{name} is unavailable; try again later", headers={"Retry-After": RETRY_AFTER}
        ) from None


def redis_client(system: System) -> Redis:
    """The Redis client of the serving system (503 while it is unavailable)."""
    client: Redis = _resource(system, "redis")
    return client


def _unit_of_work(
    name: str, options: tuple[tuple[str, Any], ...] = ()
) -> Callable[[SystemInitializer], AsyncIterator[AsyncSession]]:
    """The session of one request, as a dependency that must run with ``scope="function"``."""

    async def unit_of_work(system: System) -> AsyncIterator[AsyncSession]:
        engine = _resource(system, name)
        async with session_scope(engine, **{**session_options(system, name), **dict(options)}) as session:
            yield session

    unit_of_work.__name__ = f"unit_of_work_{name}"
    return unit_of_work


# FastAPI < 0.118 has no scope= and already ends a yield dependency before the response (0.118-0.120 are excluded).
_BEFORE_RESPONSE: dict[str, Any] = {"scope": "function"} if "scope" in inspect.signature(Depends).parameters else {}
_DatabaseUnit = Annotated[AsyncSession, Depends(_unit_of_work("database"), **_BEFORE_RESPONSE)]


# Why two functions: FastAPI ends a dependency with yield after the response is sent (scope="request", the
# default) unless the caller writes scope="function", and refuses a yield dependency of the app's own that
# takes a function-scoped one (DependencyScopeError). The scope is fixed here, on a sub-dependency, and the
# dependency apps name is a plain function: every spelling commits before the response.
async def database_session(session: _DatabaseUnit) -> AsyncSession:
    """A per-request ``AsyncSession``: committed when the handler returns, rolled back when it raises, always closed.

    The commit happens before the response is sent, however the dependency is spelled
    (``DatabaseSession``, ``Depends(database_session)``, an app's own ``get_db`` taking either,
    with or without ``yield``): a failed commit (a unique violation found at ``COMMIT``) is the
    response -- your exception handler's status, or 500 -- never a 200 for a write that was lost.
    It takes the component's ``session_options``.
    """
    return session


@functools.cache
def resource_for(name: str, *, optional: bool = False) -> Callable[[SystemInitializer], Any]:
    """The dependency handing out the resource of component *name* of the serving system (503 while unavailable).

    For a component of your own (a raw asyncpg pool, an arq pool): no ``system_of(request)`` in
    the handler, the system is found through the request. With ``optional=True`` it hands out
    ``None`` instead of answering 503, for a handler with a degraded path. The same callable for
    the same arguments, so it is also the key for ``app.dependency_overrides``::

        Pool = Annotated[asyncpg.Pool, Depends(ib.resource_for("pg_pool"))]

        @app.post("/notes/bulk")
        async def add_notes(bodies: list[str], pool: Pool) -> dict[str, int]: ...
    """

    def dependency(system: System) -> Any:
        if optional:
            try:
                return system.get(name)
            except UnknownComponentError:
                raise
            except (ComponentUnavailableError, NotInitializedError):
                return None
        return _resource(system, name)

    dependency.__name__ = f"resource_{name}"
    return dependency


def redis_client_for(name: str, *, optional: bool = False) -> Callable[[SystemInitializer], Redis]:
    """The dependency handing out the client of the Redis component *name* (503 while unavailable).

    :func:`resource_for` typed for Redis: with ``optional=True`` it hands out ``None`` instead of
    answering 503, for a handler with a degraded path (a cache it can do without). The same
    callable for the same arguments, so it is also the key for ``app.dependency_overrides``::

        CacheRedis = Annotated[Redis | None, Depends(ib.redis_client_for("cache", optional=True))]
    """
    if name == "redis" and not optional:
        return redis_client
    return resource_for(name, optional=optional)


def database_session_for(name: str, **options: Any) -> Callable[..., Awaitable[AsyncSession]]:
    """The dependency handing out a per-request session of the database component *name*.

    *options* beat the component's ``session_options``. Committed before the response, as
    :func:`database_session`. The same callable for the same arguments (the
    ``app.dependency_overrides`` key)::

        ReplicaSession = Annotated[AsyncSession, Depends(ib.database_session_for("replica"))]
    """
    return _session_dependency(name, tuple(sorted(options.items())))


@functools.cache
def _session_dependency(name: str, options: tuple[tuple[str, Any], ...]) -> Callable[..., Awaitable[AsyncSession]]:
    if name == "database" and not options:
        return database_session
    unit = Depends(_unit_of_work(name, options), **_BEFORE_RESPONSE)

    async def dependency(session: AsyncSession = unit) -> AsyncSession:
        return session

    dependency.__name__ = f"database_session_{name}"
    return dependency


def message_broker(system: System) -> MessageBroker:
    """The :class:`~infraboot.MessageBroker` of the serving system's ``rabbitmq`` component (503 while unavailable).

    For a broker of another name: ``Depends(ib.resource_for("events"))``.
    """
    broker: MessageBroker = _resource(system, "rabbitmq")
    return broker


Broker = Annotated[MessageBroker, Depends(message_broker)]
"""``async def handler(broker: Broker)``: the ``rabbitmq`` component's :class:`~infraboot.MessageBroker`."""

RedisClient = Annotated[Redis, Depends(redis_client)]
"""``async def handler(redis: RedisClient)``: the ``redis.asyncio.Redis`` client."""

# No scope needed (database_session fixes its own), so an app's own yield dependency may take it.
DatabaseSession = Annotated[AsyncSession, Depends(database_session)]
"""``async def handler(session: DatabaseSession)``: a unit of work per request."""


def health_router(
    system: SystemInitializer | None = None,
    *,
    details: bool = False,
    metrics: bool | None = None,
    registry: Any = None,
    prefix: str = "",
    drain: bool = True,
) -> APIRouter:
    """``GET /livez``, ``/readyz``, ``/startupz``, ``/health``, ``/ready``, ``/metrics`` and ``/drainz``.

    Bodies are ``application/health+json`` with 200 (pass, warn) or 503 (fail);
    ``details=True`` adds latency and error codes (never secrets). ``/metrics``: by default
    served when ``prometheus_client`` is installed and left out when it is not; ``metrics=True``
    asks for it (without the ``metrics`` extra: a 501 naming the install command),
    ``metrics=False`` leaves it out; pass your *registry* to serve your own metrics beside ours.
    ``POST /drainz`` (a ``preStop`` hook; loopback callers only unless ``drain_token`` is set;
    ``DELETE`` undoes it; ``drain=False`` leaves it out) turns readiness off, keeps serving and
    answers after ``drain_delay``. ``GET /readyz/<group>`` answers a health group (``health_groups``).
    The routes stay out of the OpenAPI schema.
    """
    routes: list[BaseRoute] = [*health_routes(system, details=details, metrics=metrics, registry=registry, drain=drain)]
    return APIRouter(prefix=prefix, routes=routes)
