"""A background worker with no web framework: infraboot.asyncio.run.

    python examples/worker.py --once   # queue three jobs, process them, shut down
    python examples/worker.py          # process jobs until SIGTERM / Ctrl-C, then shut down cleanly

SIGINT and SIGTERM stop the loop and close every connection in reverse order; a required
component that cannot start exits with status 2 and one clear line on stderr.
Embedded defaults (fakeredis, SQLite) unless REDIS_URL / DATABASE_URL are set.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("REDIS_URL", "memory://")
os.environ.setdefault("DATABASE_URL", "sqlite+aiosqlite:///:memory:")

from sqlalchemy import text

import infraboot
import infraboot.asyncio

QUEUE = "example:jobs"


async def main(system: infraboot.SystemInitializer) -> int:
    print(system.report.render())
    redis = system.get("redis")
    once = "--once" in sys.argv
    if once:
        await redis.rpush(QUEUE, "2", "3", "4")
    print("worker ready; waiting for jobs", flush=True)
    done = 0
    while True:
        item = await redis.blpop([QUEUE], timeout=0.1 if once else 1)
        if item is None:
            if once:
                return done
            continue
        async with infraboot.get_session() as session:
            query = text("SELECT CAST(:n AS integer) * CAST(:n AS integer)")
            square = (await session.execute(query, {"n": int(item[1])})).scalar_one()
        print(f"job {int(item[1])} -> {square}", flush=True)
        done += 1


if __name__ == "__main__":
    processed = infraboot.asyncio.run(main, components=["redis", "database"])
    print(f"processed {processed or 0} jobs; shut down cleanly", flush=True)
