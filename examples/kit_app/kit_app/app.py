"""Notes and a visit counter: PostgreSQL for the notes, an optional Redis for the counter.

The components are registered on the default system at import time (infraboot's README pattern);
the settings come from the environment (``REDIS_URL``, ``DATABASE_URL``, ``REDIS_REQUIRED=false``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

import infraboot
import infraboot.fastapi as ib


class Audit:
    """Writes one row per note, on the application's database."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def record(self, what: str) -> None:
        async with infraboot.get_session() as session:
            await session.execute(text("INSERT INTO kit_audit (what) VALUES (:w)"), {"w": what})


@infraboot.component("audit", requires=["database"])
async def audit(ctx: infraboot.Context) -> AsyncIterator[Audit]:
    yield Audit(ctx.get("database"))


infraboot.register(audit)

Counter = Annotated[Any, Depends(ib.redis_client_for("redis", optional=True))]

app = FastAPI(lifespan=ib.lifespan(["redis", "database", "audit"]), exception_handlers=ib.exception_handlers)
app.include_router(ib.health_router())


async def create_schema(engine: AsyncEngine) -> None:
    """The schema of the service (what migrations would create)."""
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE kit_notes (id serial PRIMARY KEY, body text NOT NULL)"))
        await conn.execute(text("CREATE TABLE kit_audit (id serial PRIMARY KEY, what text NOT NULL)"))


@app.post("/notes")
async def add_note(body: str, session: ib.DatabaseSession) -> dict[str, int]:
    row = await session.execute(text("INSERT INTO kit_notes (body) VALUES (:b) RETURNING id"), {"b": body})
    await session.commit()  # the application commits; under the test kit it only releases a savepoint
    await infraboot.get("audit").record(f"note {body}")
    return {"id": int(row.scalar_one())}


@app.get("/notes/count")
async def count_notes(session: ib.DatabaseSession) -> dict[str, int]:
    notes = (await session.execute(text("SELECT count(*) FROM kit_notes"))).scalar_one()
    audits = (await session.execute(text("SELECT count(*) FROM kit_audit"))).scalar_one()
    return {"notes": int(notes), "audits": int(audits)}


@app.get("/visits")
async def visits(redis: Counter) -> dict[str, int | None]:
    """The degraded path: without Redis the page still answers, without a count."""
    if redis is None:
        return {"visits": None}
    return {"visits": int(await redis.incr("kit:visits"))}
