"""The FastAPI app: ``create_app(settings)`` gives infraboot the app's settings, the routes use the resources.

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
Pool = Annotated[asyncpg.Pool, Depends(ib.resource_for("pg_pool"))]  # unavailable: a 503 by exception_handlers


def configure_infrastructure(settings: Settings) -> None:
    """Give infraboot's default system the app's settings: what is not given here still comes from the environment.

    ``replace=True``: a test may build its app again (the test kit hands every test a fresh default system).
    """
    infraboot.configure(
        redis={"url": settings.redis_url, "client_options": {"decode_responses": True}},
        database={"url": settings.sqlalchemy_url, "session_options": {"expire_on_commit": False, "autoflush": False}},
    )
    cache = {"url": settings.cache_url, "required": False, "client_options": {"decode_responses": True}}
    infraboot.register(infraboot.RedisComponent("cache", settings=cache), replace=True)
    infraboot.register(AsyncpgPool(settings), replace=True)


@contextlib.asynccontextmanager
async def create_tables(app: FastAPI) -> AsyncIterator[None]:
    """The app's own startup work: runs inside infraboot's lifespan, every component up."""
    async with infraboot.get_engine().begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    yield


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app on *settings* (default: ``Settings()``, from the environment)."""
    settings = Settings() if settings is None else settings
    configure_infrastructure(settings)
    app = FastAPI(lifespan=ib.lifespan(inner=create_tables), exception_handlers=ib.exception_handlers)
    app.include_router(ib.health_router())

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
