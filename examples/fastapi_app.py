"""A FastAPI service on infraboot: lifespan, probes, metrics and per-request dependencies.

    python examples/fastapi_app.py --once    # start, call a few endpoints, shut down (no server needed)
    python examples/fastapi_app.py           # serve on http://127.0.0.1:8000 until Ctrl-C
    uvicorn --app-dir examples fastapi_app:app --workers 2

With no REDIS_URL / DATABASE_URL it runs on the embedded defaults (fakeredis, SQLite in
memory); set them to use real servers, e.g. REDIS_URL=redis://127.0.0.1:6379/0 and
DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

os.environ.setdefault("REDIS_URL", "memory://")
os.environ.setdefault("DATABASE_URL", "sqlite+aiosqlite:///:memory:")

from fastapi import FastAPI, HTTPException
from sqlalchemy import text

import infraboot
import infraboot.fastapi as ib


@contextlib.asynccontextmanager
async def create_tables(app: FastAPI) -> AsyncIterator[None]:
    """Your own lifespan runs inside infraboot's: the database is up for all of it."""
    with contextlib.suppress(Exception):  # another worker may be creating it at the same moment
        async with infraboot.get_session() as session:
            await session.execute(text("CREATE TABLE IF NOT EXISTS example_notes (body TEXT NOT NULL)"))
    yield


app = FastAPI(lifespan=ib.lifespan(["redis", "database"], inner=create_tables))
app.include_router(ib.health_router())


@app.get("/hits")
async def hits(redis: ib.RedisClient) -> dict[str, int]:
    return {"hits": int(await redis.incr("example:hits"))}


@app.post("/notes")
async def add_note(session: ib.DatabaseSession, body: str, fail: bool = False) -> dict[str, Any]:
    """Inserts a note; with fail=true the handler raises afterwards and the insert is rolled back."""
    await session.execute(text("INSERT INTO example_notes (body) VALUES (:body)"), {"body": body})
    if fail:
        raise HTTPException(status_code=409, detail="failed on purpose; the insert is rolled back")
    return {"added": body}


@app.get("/notes/count")
async def count_notes(session: ib.DatabaseSession) -> dict[str, int]:
    return {"count": (await session.execute(text("SELECT COUNT(*) FROM example_notes"))).scalar_one()}


async def once() -> None:
    import httpx

    async with app.router.lifespan_context(app):
        print(infraboot.default_system().report.render())
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://example") as client:
            await client.post("/notes", params={"body": "kept"})
            await client.post("/notes", params={"body": "dropped", "fail": "true"})
            for path in ("/readyz", "/hits", "/notes/count"):
                response = await client.get(path)
                print(f"GET {path} -> {response.status_code} {response.text}")


if __name__ == "__main__":
    if "--once" in sys.argv:
        asyncio.run(once())
    else:
        import uvicorn

        uvicorn.run(app, host="127.0.0.1", port=8000)
