"""The items API, as written before infraboot: three Redis clients and the engine opened and closed by hand.

uvicorn --factory shop.app:create_app
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from . import cache
from .models import Base, Item
from .queue import enqueue_job
from .settings import Settings


def lifespan_for(settings: Settings) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    """Open the engine and the three Redis clients, create the table; close it all at the end."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_async_engine(settings.database_url, pool_pre_ping=True)
        app.state.sessions = async_sessionmaker(engine, expire_on_commit=False)
        cache.client = Redis.from_url(settings.redis_cache_url)
        app.state.queue = Redis.from_url(settings.redis_queue_url, decode_responses=True)
        app.state.rate_limiter = Redis.from_url(settings.redis_rate_limit_url)
        try:
            for client in (cache.client, app.state.queue, app.state.rate_limiter):
                await client.ping()  # no retry, no deadline: a blackholed host hangs the startup
            async with engine.begin() as conn:
                await conn.run_sync(Base.metadata.create_all)
            yield
        finally:  # the first close that fails skips the others
            await app.state.rate_limiter.aclose()
            await app.state.queue.aclose()
            await cache.client.aclose()
            cache.client = None
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


def get_queue(request: Request) -> Redis:
    queue: Redis = request.app.state.queue
    return queue


def get_rate_limiter(request: Request) -> Redis:
    limiter: Redis = request.app.state.rate_limiter
    return limiter


Session = Annotated[AsyncSession, Depends(get_session, scope="function")]  # commit before the response is sent
Queue = Annotated[Redis, Depends(get_queue)]
RateLimitRedis = Annotated[Redis, Depends(get_rate_limiter)]


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app on *settings* (default: ``Settings()``, from the environment)."""
    settings = Settings() if settings is None else settings
    app = FastAPI(lifespan=lifespan_for(settings))

    async def rate_limit(request: Request, limiter: RateLimitRedis) -> None:
        """At most ``rate_limit`` calls per client in each ``rate_period``, counted in the limiter's own Redis."""
        window = int(time.time() // settings.rate_period)
        key = f"cache_port:rate:{request.client.host if request.client else '-'}:{window}"
        count = await limiter.incr(key)
        if count == 1:
            await limiter.expire(key, settings.rate_period)
        if count > settings.rate_limit:
            raise HTTPException(429, "too many requests", headers={"Retry-After": str(settings.rate_period)})

    @app.get("/health")
    async def health(request: Request) -> dict[str, str]:
        try:  # no per-check timeout, no liveness/readiness split, the cause is lost
            for client in (cache.client, request.app.state.queue, request.app.state.rate_limiter):
                await client.ping()
            async with request.app.state.sessions() as session:
                await session.execute(text("SELECT 1"))
        except Exception:
            raise HTTPException(503, "unhealthy") from None
        return {"status": "ok"}

    @app.get("/items/{item_id}")
    @cache.cache("item", resource_id_name="item_id")
    async def read_item(item_id: int, session: Session) -> dict[str, Any]:
        item = await session.get(Item, item_id)
        if item is None:
            raise HTTPException(404, "no such item")
        return {"id": item.id, "name": item.name}

    @app.put("/items/{item_id}")
    async def put_item(item_id: int, name: str, session: Session) -> dict[str, Any]:
        item = await session.get(Item, item_id) or Item(id=item_id)
        item.name = name
        session.add(item)
        await session.commit()  # before the invalidation: a read in between must not cache the old row
        await cache.invalidate("item", item_id)
        return {"id": item_id, "name": name}

    @app.post("/reports", dependencies=[Depends(rate_limit)])
    async def request_report(queue: Queue) -> dict[str, str]:
        report_id = uuid.uuid4().hex
        await enqueue_job(queue, "build_report", report_id)
        return {"report_id": report_id}

    @app.get("/reports/{report_id}")
    async def read_report(report_id: str, queue: Queue) -> dict[str, Any]:
        report = await queue.hgetall(f"cache_port:report:{report_id}")
        if not report:
            raise HTTPException(404, "not built yet")
        return {"items": int(report["items"])}

    return app
