"""The FastAPI app: ``create_app(settings)`` wires the infrastructure, the routes use it.

uvicorn --factory port_app.app:create_app
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

import asyncpg
import infraboot
import infraboot.fastapi as ib
from fastapi import Depends, FastAPI
from redis.asyncio import Redis
from sqlalchemy import func, select

from .components import AsyncpgPool
from .models import Base, Note
from .settings import Settings

Cache = Annotated[Redis, Depends(ib.redis_client_for("cache"))]


def pg_pool(system: ib.System) -> asyncpg.Pool:
    """The raw asyncpg pool; while it is unavailable, ``exception_handlers`` answer 503."""
    pool: asyncpg.Pool = system.get("pg_pool")
    return pool


Pool = Annotated[asyncpg.Pool, Depends(pg_pool)]


def build_system(settings: Settings) -> infraboot.SystemInitializer:
    """The app's infrastructure, from its own settings.

    What is not given here (``REDIS_MAX_CONNECTIONS``, ``DATABASE_POOL_SIZE``, ...) still comes from the environment.
    """
    return infraboot.SystemInitializer(
        [
            infraboot.RedisComponent(
                "redis", settings={"url": settings.redis_url, "client_options": {"decode_responses": True}}
            ),
            infraboot.RedisComponent(
                "cache",
                settings={"url": settings.cache_url, "required": False, "client_options": {"decode_responses": True}},
            ),
            infraboot.DatabaseComponent(
                "database",
                settings={
                    "url": settings.sqlalchemy_url,
                    "session_options": {"expire_on_commit": False, "autoflush": False},
                },
            ),
            AsyncpgPool(settings),
        ]
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app on *settings* (default: ``Settings()``, from the environment)."""
    settings = Settings() if settings is None else settings
    system = build_system(settings)

    @contextlib.asynccontextmanager
    async def create_tables(app: FastAPI) -> AsyncIterator[None]:
        async with system.get("database").begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        yield

    app = FastAPI(lifespan=ib.lifespan(system=system, inner=create_tables), exception_handlers=ib.exception_handlers)
    app.state.system = system
    app.include_router(ib.health_router(system))

    @app.post("/visits/{visitor}")
    async def visit(visitor: str, redis: ib.RedisClient) -> dict[str, Any]:
        await redis.set("port_app:last_visitor", visitor)
        return {"visits": await redis.incr("port_app:visits"), "last": await redis.get("port_app:last_visitor")}

    @app.post("/notes")
    async def add_note(body: str, session: ib.DatabaseSession, cache: Cache) -> dict[str, Any]:
        note = Note(body=body)
        session.add(note)
        await session.flush()  # autoflush=False: the id exists once flushed
        await cache.delete("port_app:notes:count")
        return {"id": note.id, "body": note.body}

    @app.get("/notes/count")
    async def count_notes(session: ib.DatabaseSession, cache: Cache) -> dict[str, Any]:
        cached = await cache.get("port_app:notes:count")
        if cached is not None:
            return {**json.loads(cached), "cached": True}
        result = {"count": (await session.execute(select(func.count()).select_from(Note))).scalar_one()}
        await cache.set("port_app:notes:count", json.dumps(result), ex=settings.cache_ttl)
        return {**result, "cached": False}

    @app.post("/notes/bulk")
    async def add_notes(bodies: list[str], pool: Pool) -> dict[str, int]:
        """Many notes in one COPY, on the raw asyncpg pool."""
        async with pool.acquire() as conn:
            await conn.copy_records_to_table(Note.__tablename__, records=[(b,) for b in bodies], columns=["body"])
        return {"added": len(bodies)}

    @app.get("/notes/search")
    async def search_notes(prefix: str, pool: Pool) -> list[dict[str, Any]]:
        query = f"SELECT id, body FROM {Note.__tablename__} WHERE body LIKE $1 ORDER BY id"  # noqa: S608 - our table
        rows = await pool.fetch(query, prefix + "%")
        return [dict(row) for row in rows]

    return app
