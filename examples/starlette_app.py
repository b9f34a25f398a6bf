"""A Starlette service on infraboot: lifespan and probe routes (Starlette 1.x has only the lifespan hook).

    python examples/starlette_app.py --once  # start, call the endpoints, shut down (no server needed)
    python examples/starlette_app.py         # serve on http://127.0.0.1:8000 until Ctrl-C

Embedded defaults (fakeredis, SQLite) unless REDIS_URL / DATABASE_URL are set.
"""

from __future__ import annotations

import asyncio
import os
import sys

os.environ.setdefault("REDIS_URL", "memory://")
os.environ.setdefault("DATABASE_URL", "sqlite+aiosqlite:///:memory:")

from sqlalchemy import text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import infraboot
import infraboot.starlette as ib


async def hits(request: Request) -> JSONResponse:
    redis = ib.system_of(request).get("redis")
    return JSONResponse({"hits": int(await redis.incr("example:hits"))})


async def answer(request: Request) -> JSONResponse:
    async with infraboot.get_session() as session:
        return JSONResponse({"answer": (await session.execute(text("SELECT 6 * 7"))).scalar_one()})


app = Starlette(
    lifespan=ib.lifespan(["redis", "database"]),
    routes=[Route("/hits", hits), Route("/answer", answer), *ib.health_routes()],
)


async def once() -> None:
    import httpx

    async with app.router.lifespan_context(app):
        print(infraboot.default_system().report.render())
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://example") as client:
            for path in ("/readyz", "/hits", "/answer"):
                response = await client.get(path)
                print(f"GET {path} -> {response.status_code} {response.text}")


if __name__ == "__main__":
    if "--once" in sys.argv:
        asyncio.run(once())
    else:
        import uvicorn

        uvicorn.run(app, host="127.0.0.1", port=8000)
