"""The items API on infraboot: ``create_app(settings)`` configures the default system, the routes use it.

uvicorn --factory shop.app:create_app
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

import infraboot
import infraboot.fastapi as ib
from fastapi import Depends, FastAPI, HTTPException, Request
from infraboot.cache import cached
from redis.asyncio import Redis

from .models import Base, Item
from .queue import enqueue_job
from .settings import Settings

Queue = Annotated[Redis, Depends(ib.redis_client_for("queue"))]
RateLimitRedis = Annotated[Redis, Depends(ib.redis_client_for("rate_limit"))]


def configure_infrastructure(settings: Settings) -> None:
    """The database and three Redis: ``redis`` (the cache), ``queue`` and ``rate_limit``; the API and the worker."""
    infraboot.configure(
        redis={"url": settings.redis_cache_url},
        database={"url": settings.database_url, "session_options": {"expire_on_commit": False}},
    )
    queue = {"url": settings.redis_queue_url, "client_options": {"decode_responses": True}}
    infraboot.register(infraboot.RedisComponent("queue", settings=queue), replace=True)
    limiter = {"url": settings.redis_rate_limit_url}
    infraboot.register(infraboot.RedisComponent("rate_limit", settings=limiter), replace=True)


@cached(ttl=60, key="item:{item_id}")
async def load_item(item_id: int) -> dict[str, Any] | None:
    async with infraboot.get_session() as session:
        item = await session.get(Item, item_id)
    return None if item is None else {"id": item.id, "name": item.name}


@contextlib.asynccontextmanager
async def create_tables(app: FastAPI) -> AsyncIterator[None]:
    async with infraboot.get_engine().begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    yield


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app on *settings* (default: ``Settings()``, from the environment)."""
    settings = Settings() if settings is None else settings
    configure_infrastructure(settings)
    app = FastAPI(lifespan=ib.lifespan(inner=create_tables), exception_handlers=ib.exception_handlers)
    app.include_router(ib.health_router())  # /livez /readyz /startupz /health ...

    async def rate_limit(request: Request, limiter: RateLimitRedis) -> None:
        """At most ``rate_limit`` calls per client in each ``rate_period``, counted in the limiter's own Redis."""
        window = int(time.time() // settings.rate_period)
        key = f"cache_port:rate:{request.client.host if request.client else '-'}:{window}"
        count = await limiter.incr(key)
        if count == 1:
            await limiter.expire(key, settings.rate_period)
        if count > settings.rate_limit:
            raise HTTPException(429, "too many requests", headers={"Retry-After": str(settings.rate_period)})

    @app.get("/items/{item_id}")
    async def read_item(item_id: int) -> dict[str, Any]:
        item = await load_item(item_id)
        if item is None:
            raise HTTPException(404, "no such item")
        return item

    @app.put("/items/{item_id}")
    async def put_item(item_id: int, name: str, session: ib.DatabaseSession) -> dict[str, Any]:
        item = await session.get(Item, item_id) or Item(id=item_id)
        item.name = name
        session.add(item)
        await session.commit()  # before the invalidation: a read in between must not cache the old row
        await load_item.invalidate(item_id)
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
