"""The events service on infraboot: ``create_app(settings)`` configures the default system, the routes use it.

uvicorn --factory svc.app:create_app
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

import asyncpg
import infraboot
import infraboot.fastapi as ib
from fastapi import Depends, FastAPI

from .jobs import rollup, scheduled
from .models import Base, Event, Rollup
from .settings import Settings

Pool = Annotated[asyncpg.Pool, Depends(ib.resource_for("pg_pool"))]


def asyncpg_pool(settings: Settings) -> infraboot.Component[asyncpg.Pool]:
    """The raw asyncpg pool of the reporting path, as a component of the app's own."""

    @infraboot.component("pg_pool", timeout=5.0, check=lambda pool: pool.fetchval("SELECT 1"))
    async def pg_pool(ctx: infraboot.Context) -> AsyncIterator[asyncpg.Pool]:
        make = asyncpg.create_pool(settings.asyncpg_dsn, min_size=1, max_size=settings.bulk_pool_size)
        pool = await ctx.open(make, close=asyncpg.Pool.close)  # a cancelled attempt leaves nothing open
        yield pool
        await pool.close()

    return pg_pool


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app on *settings* (default: ``Settings()``, from the environment)."""
    settings = Settings() if settings is None else settings
    infraboot.configure(
        redis={"url": settings.redis_url, "client_options": {"decode_responses": True}},
        database={"url": settings.database_url, "session_options": {"expire_on_commit": False}},
    )
    infraboot.register(asyncpg_pool(settings), replace=True)

    @contextlib.asynccontextmanager
    async def startup(app: FastAPI) -> AsyncIterator[None]:
        """The app's own startup work, every component up: the tables, then the scheduler."""
        async with infraboot.get_engine().begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        async with scheduled(settings.rollup_interval, rollup):
            yield

    app = FastAPI(lifespan=ib.lifespan(inner=startup), exception_handlers=ib.exception_handlers)
    app.include_router(ib.health_router())  # /livez /readyz /startupz /health ...

    @app.post("/events/{kind}")
    async def add_event(kind: str, session: ib.DatabaseSession, redis: ib.RedisClient) -> dict[str, Any]:
        event = Event(kind=kind)
        session.add(event)
        await session.flush()
        return {"id": event.id, "seen": await redis.incr(f"svc_port:seen:{kind}")}

    @app.get("/events/{kind}/count")
    async def count_events(kind: str, pool: Pool) -> dict[str, Any]:
        """Counted on the raw asyncpg pool: the reporting path skips the ORM."""
        query = f"SELECT count(*) FROM {Event.__tablename__} WHERE kind = $1"  # noqa: S608 - our own table
        return {"kind": kind, "count": await pool.fetchval(query, kind)}

    @app.get("/rollups/{kind}")
    async def get_rollup(kind: str, session: ib.DatabaseSession, redis: ib.RedisClient) -> dict[str, Any]:
        rollup = await session.get(Rollup, kind)
        runs = int(await redis.get("svc_port:rollups") or 0)
        return {"kind": kind, "count": 0 if rollup is None else rollup.count, "runs": runs}

    return app
