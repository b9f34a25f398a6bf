"""The worker, ``python -m shop.worker``: it runs the jobs the API enqueues, as an arq worker would."""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from .models import Item
from .queue import run_worker
from .settings import Settings


async def build_report(ctx: dict[str, Any], report_id: str) -> None:
    """Count the items; the report is kept an hour on the queue's Redis."""
    async with ctx["sessions"]() as session:
        count = (await session.execute(select(func.count()).select_from(Item))).scalar_one()
    key = f"cache_port:report:{report_id}"
    await ctx["queue"].hset(key, mapping={"items": count})
    await ctx["queue"].expire(key, 3600)


FUNCTIONS = {"build_report": build_report}


async def main(settings: Settings, *, burst: bool = False) -> int:
    """Connect (retrying as arq does: 5 more times, 1 s apart), run the jobs, close everything."""
    engine = create_async_engine(settings.database_url, pool_pre_ping=True)
    queue = Redis.from_url(settings.redis_queue_url, decode_responses=True)
    ctx = {"sessions": async_sessionmaker(engine, expire_on_commit=False), "queue": queue}
    try:
        for attempt in range(6):
            try:
                await queue.ping()
                break
            except (OSError, RedisError):
                if attempt == 5:
                    raise
                await asyncio.sleep(1)
        return await run_worker(queue, FUNCTIONS, ctx, burst=burst)
    finally:
        await queue.aclose()
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main(Settings()))
