"""The events service, as written before infraboot: the lifespan opens, checks and closes everything by hand.

uvicorn --factory svc.app:create_app
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, FastAPI, HTTPException, Request
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from .jobs import rollup, scheduled
from .models import Base, Event, Rollup
from .settings import Settings

logger = logging.getLogger(__name__)

STARTUP_ATTEMPTS = 5
STARTUP_BACKOFF = 1.0  # seconds, doubled after each failed attempt


async def wait_for_servers(redis: Redis, engine: AsyncEngine) -> None:
    """Retry until Redis and PostgreSQL answer: in a deployment they may come up after us."""
    for attempt in range(1, STARTUP_ATTEMPTS + 1):
        try:
            await redis.ping()
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return
        except (OSError, RedisError, SQLAlchemyError) as exc:
            if attempt == STARTUP_ATTEMPTS:
                raise
            logger.warning("servers not ready (attempt %d of %d): %s", attempt, STARTUP_ATTEMPTS, exc)
            await asyncio.sleep(STARTUP_BACKOFF * 2 ** (attempt - 1))


def lifespan_for(settings: Settings) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    """Open the engine, Redis and the asyncpg pool, create the tables, run the scheduler; close it all at the end."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_async_engine(settings.database_url, pool_pre_ping=True)
        redis = Redis.from_url(settings.redis_url, decode_responses=True)
        pool: asyncpg.Pool | None = None
        try:
            await wait_for_servers(redis, engine)
            pool = await asyncpg.create_pool(settings.asyncpg_dsn, min_size=1, max_size=settings.bulk_pool_size)
            async with engine.begin() as conn:
                await conn.run_sync(Base.metadata.create_all)
            sessions = async_sessionmaker(engine, expire_on_commit=False)
            app.state.redis, app.state.pool, app.state.sessions = redis, pool, sessions
            async with scheduled(settings.rollup_interval, lambda: rollup(sessions, redis)):
                yield
        finally:  # the first close that fails skips the others; one that hangs holds the shutdown forever
            if pool is not None:
                await pool.close()
            await redis.aclose()
            await engine.dispose()

    return lifespan


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session per request: committed after the handler, rolled back when it raises."""
    async with request.app.state.sessions() as session:
        try:
            yield session
            await session.commit()
        except Exception:
            await session.rollback()
            raise


def get_redis(request: Request) -> Redis:
    redis: Redis = request.app.state.redis
    return redis


def get_pool(request: Request) -> asyncpg.Pool:
    return request.app.state.pool


Session = Annotated[AsyncSession, Depends(get_session, scope="function")]  # commit before the response is sent
RedisClient = Annotated[Redis, Depends(get_redis)]
Pool = Annotated[asyncpg.Pool, Depends(get_pool)]


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app on *settings* (default: ``Settings()``, from the environment)."""
    settings = Settings() if settings is None else settings
    app = FastAPI(lifespan=lifespan_for(settings))

    @app.get("/health")
    async def health(request: Request) -> dict[str, str]:
        try:  # no per-check timeout, no liveness/readiness split, the cause is lost
            await request.app.state.redis.ping()
            async with request.app.state.sessions() as session:
                await session.execute(text("SELECT 1"))
            await request.app.state.pool.fetchval("SELECT 1")
        except Exception:
            raise HTTPException(503, "unhealthy") from None
        return {"status": "ok"}

    @app.post("/events/{kind}")
    async def add_event(kind: str, session: Session, redis: RedisClient) -> dict[str, Any]:
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
    async def get_rollup(kind: str, session: Session, redis: RedisClient) -> dict[str, Any]:
        rollup = await session.get(Rollup, kind)
        runs = int(await redis.get("svc_port:rollups") or 0)
        return {"kind": kind, "count": 0 if rollup is None else rollup.count, "runs": runs}

    return app
