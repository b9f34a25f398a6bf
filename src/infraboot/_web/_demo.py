"""The app behind ``infraboot demo``: FastAPI on the embedded defaults (fakeredis, SQLite in memory)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from sqlalchemy import text

import infraboot.fastapi as ib

__all__ = ["create_app"]


def create_app() -> FastAPI:
    """A small service: a counter in Redis, arithmetic in the database, every probe, /metrics."""
    app = FastAPI(title="infraboot demo", lifespan=ib.lifespan(["redis", "database"]))
    app.include_router(ib.health_router(details=True))

    @app.get("/")
    async def index(redis: ib.RedisClient, session: ib.DatabaseSession) -> dict[str, Any]:
        visits = int(await redis.incr("demo:visits"))
        answer = (await session.execute(text("SELECT 6 * 7"))).scalar_one()
        return {"visits": visits, "answer": answer, "probes": ["/livez", "/readyz", "/startupz", "/metrics"]}

    return app
