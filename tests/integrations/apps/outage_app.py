"""A FastAPI app for the outage tests: Redis and PostgreSQL (each behind the test's proxy), one route each.

Configured by the environment as in production: REDIS_URL, DATABASE_URL and their timeouts,
INFRABOOT_FAILURE_THRESHOLD, INFRABOOT_CHECK_INTERVAL.
"""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy import text

import infraboot.fastapi as ib

api = FastAPI(lifespan=ib.lifespan(["redis", "database"]), exception_handlers=ib.exception_handlers)


@api.get("/redis")
async def read_redis(redis: ib.RedisClient) -> dict[str, object]:
    return {"value": await redis.get("ib-outage-key")}


@api.get("/db")
async def read_db(session: ib.DatabaseSession) -> dict[str, object]:
    return {"value": (await session.execute(text("SELECT 1"))).scalar_one()}


app = ib.ProbeMiddleware(api)
