"""The app the soak runs under uvicorn: optional Redis and database, routes on each, a stats route.

``uvicorn tests.soak.app:app``, configured by the environment like any 12-factor service
(``REDIS_URL``, ``REDIS_REQUIRED=false``, ``DATABASE_URL``, ``INFRABOOT_CHECK_INTERVAL``, ...).
Both components are optional, so an outage degrades the app (503 on the route that needs the
missing piece, readiness ``warn``) instead of stopping it.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from fastapi import FastAPI
from sqlalchemy import text

import infraboot
import infraboot.fastapi as ib

__all__ = ["BACKOFF_MAX", "ErrorJournal", "app", "process_stats"]

#: Longest wait between two recovery attempts (the built-ins' default is 5 s): a restored
#: server is back in service within about this long, which bounds the soak's grace windows.
BACKOFF_MAX = 1.0

# The built-ins, still configured from REDIS_* / DATABASE_*, with a shorter recovery backoff.
infraboot.register(infraboot.RedisComponent(backoff_max=BACKOFF_MAX), replace=True)
infraboot.register(infraboot.DatabaseComponent(backoff_max=BACKOFF_MAX), replace=True)


class ErrorJournal:
    """Writes one line per exception that escapes a handler (a 500), on the clock the soak uses, then re-raises.

    ``soak_error t=<time.monotonic()> path=/soak/redis error=ConnectionError<-ConnectionRefusedError``: the
    monotonic clock is the machine's, so the soak can tell which outage (if any) a 500 belongs to.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await self.app(scope, receive, send)
        except Exception as exc:
            chain: list[str] = []
            cause: BaseException | None = exc
            while cause is not None:
                chain.append(type(cause).__name__)
                cause = cause.__cause__ or cause.__context__
            print(f"soak_error t={time.monotonic():.3f} path={scope.get('path')} error={'<-'.join(chain)}", flush=True)
            raise


app = FastAPI(lifespan=ib.lifespan(["redis", "database"]), exception_handlers=ib.exception_handlers)
app.include_router(ib.health_router())
app.add_middleware(ErrorJournal)


@app.get("/soak/redis")
async def redis_route(redis: ib.RedisClient) -> dict[str, int]:
    """One command on Redis (503 while the component is unavailable)."""
    return {"hits": int(await redis.incr("infraboot-soak:hits"))}


@app.get("/soak/db")
async def database_route(session: ib.DatabaseSession) -> dict[str, int]:
    """One query on the database, in the request's unit of work (503 while unavailable)."""
    return {"pid": int((await session.execute(text("SELECT pg_backend_pid()"))).scalar_one())}


def process_stats() -> dict[str, int]:
    """Tasks of this loop, open file descriptors and resident memory (KiB) of this process."""
    rss = 0
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return {"tasks": len(asyncio.all_tasks()), "fds": len(os.listdir("/proc/self/fd")), "rss_kib": rss}


@app.get("/soak/stats")
async def stats() -> dict[str, Any]:
    """What the soak watches for growth, and each pool's figures (``None`` while its component is down)."""
    pools: dict[str, dict[str, int] | None] = {}
    for name in ("redis", "database"):
        try:
            pools[name] = infraboot.pool_stats(name)
        except (infraboot.ComponentUnavailableError, infraboot.NotInitializedError):
            pools[name] = None
    return {**process_stats(), "pools": pools}
