"""The worker, ``python -m shop.worker``: it runs the jobs the API enqueues, as an arq worker would."""

from __future__ import annotations

from typing import Any

import infraboot
import infraboot.asyncio
from sqlalchemy import func, select

from .app import configure_infrastructure
from .models import Item
from .queue import run_worker
from .settings import Settings


async def build_report(ctx: dict[str, Any], report_id: str) -> None:
    """Count the items; the report is kept an hour on the queue's Redis."""
    async with infraboot.get_session() as session:
        count = (await session.execute(select(func.count()).select_from(Item))).scalar_one()
    key = f"cache_port:report:{report_id}"
    await infraboot.get_redis("queue").hset(key, mapping={"items": count})
    await infraboot.get_redis("queue").expire(key, 3600)


FUNCTIONS = {"build_report": build_report}


async def work(*, burst: bool = False) -> int:
    """Run the jobs; *burst*: until the queue is empty. Returns how many ran."""
    return await run_worker(infraboot.get_redis("queue"), FUNCTIONS, {}, burst=burst)


if __name__ == "__main__":
    configure_infrastructure(Settings())
    infraboot.asyncio.run(work, components=["database", "queue"])  # bounded start, SIGTERM drains, exit 2 on failure
