"""The scheduled job: recount the events per kind into the rollups table, every ``ROLLUP_INTERVAL`` seconds."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import infraboot
from sqlalchemy import delete, func, select

from .models import Event, Rollup

logger = logging.getLogger(__name__)


async def rollup() -> int:
    """Recount the events per kind in one transaction; returns how many kinds there are."""
    async with infraboot.get_session() as session:  # committed at the end of the block
        counts = (await session.execute(select(Event.kind, func.count()).group_by(Event.kind))).all()
        await session.execute(delete(Rollup))
        session.add_all(Rollup(kind=kind, count=count) for kind, count in counts)
    await infraboot.get_redis().incr("svc_port:rollups")
    return len(counts)


@contextlib.asynccontextmanager
async def scheduled(seconds: float, job: Callable[[], Awaitable[object]]) -> AsyncIterator[None]:
    """Run *job* every *seconds* while the block runs; a failed run is logged and the next one goes on."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await job()
            except Exception:
                logger.exception("scheduled job failed")

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
