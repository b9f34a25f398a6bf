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

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, HTTPException
from starlette.routing import BaseRoute

from ._accessors import session_scope
from ._asgi import ProbeMiddleware, lifespan
from ._system import SystemInitializer
from .exceptions import ComponentUnavailableError, NotInitializedError
from .starlette import health_routes, system_of  # FastAPI is Starlette underneath: the same routes

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from sqlalchemy.ext.asyncio import AsyncSession
else:  # the drivers are optional extras: FastAPI needs no real class for a Depends() alias
    Redis = Any
    AsyncSession = Any

__all__ = [
    "DatabaseSession",
    "ProbeMiddleware",
    "RedisClient",
    "System",
    "database_session",
    "health_router",
    "lifespan",
    "redis_client",
    "system_of",
]


System = Annotated[SystemInitializer, Depends(system_of)]
"""The serving system, as a dependency: ``async def handler(system: System)``."""


def _resource(system: SystemInitializer, name: str) -> Any:
    try:
        return system.get(name)
    except (ComponentUnavailableError, NotInitializedError):
        raise HTTPException(
            status_code=503, detail=f"{name} is unavailable; try again later", headers={"Retry-After": "5"}
        ) from None


def redis_client(system: System) -> Redis:
    """The Redis client of the serving system (503 while it is unavailable)."""
    client: Redis = _resource(system, "redis")
    return client


async def database_session(system: System) -> AsyncIterator[AsyncSession]:
    """A per-request ``AsyncSession``: committed when the handler returns, rolled back when it raises, always closed."""
    engine = _resource(system, "database")
    async with session_scope(engine) as session:
        yield session


RedisClient = Annotated[Redis, Depends(redis_client)]
"""``async def handler(redis: RedisClient)``: the ``redis.asyncio.Redis`` client."""

# scope="function": commit (or roll back) before the response is sent, so a failed commit is a 500, not a lie.
DatabaseSession = Annotated[AsyncSession, Depends(database_session, scope="function")]
"""``async def handler(session: DatabaseSession)``: a unit of work per request."""


def health_router(
    system: SystemInitializer | None = None,
    *,
    details: bool = False,
    metrics: bool = True,
    registry: Any = None,
    prefix: str = "",
) -> APIRouter:
    """``GET /livez``, ``/readyz``, ``/startupz``, ``/health``, ``/ready`` and ``/metrics``.

    Bodies are ``application/health+json`` with 200 (pass, warn) or 503 (fail);
    ``details=True`` adds latency and error codes (never secrets). ``/metrics`` is served
    when ``prometheus_client`` is installed and *metrics* is true; pass your *registry*
    to serve your own metrics beside ours. The routes stay out of the OpenAPI schema.
    """
    routes: list[BaseRoute] = [*health_routes(system, details=details, metrics=metrics, registry=registry)]
    return APIRouter(prefix=prefix, routes=routes)
