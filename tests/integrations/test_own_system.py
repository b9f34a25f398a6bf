"""infraboot.fastapi with a SystemInitializer of the app's own: the dependencies find it through the request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from fastapi import Depends, FastAPI

import infraboot
import infraboot.fastapi as ib
import infraboot.testing
from tests.test_system_accessors import own_system

pytestmark = pytest.mark.real

Mailer = Annotated[list[str], Depends(ib.resource_for("mailer"))]
Search = Annotated[object, Depends(ib.resource_for("search", optional=True))]


async def test_fastapi_dependencies_find_an_own_system_without_system_of(redis_url: str, database_url: str) -> None:
    """RedisClient, DatabaseSession and resource_for() serve the app's own system; no system_of(request) anywhere."""

    @infraboot.component("mailer", required=False)
    async def mailer(ctx: infraboot.Context) -> AsyncIterator[list[str]]:
        yield ["outbox"]

    system = own_system(redis_url, database_url, autoflush=False)
    system.register(mailer)
    app = FastAPI(lifespan=ib.lifespan(system=system), exception_handlers=ib.exception_handlers)

    @app.get("/all")
    async def everything(redis: ib.RedisClient, session: ib.DatabaseSession, box: Mailer) -> dict[str, Any]:
        return {"redis": await redis.ping(), "autoflush": session.autoflush, "mailer": box}

    @app.get("/optional")
    async def optional(search: Search) -> dict[str, Any]:
        return {"search": search}

    @infraboot.component("search", required=False, retries=0)
    async def search(ctx: infraboot.Context) -> AsyncIterator[str]:
        raise ConnectionRefusedError("search is down")
        yield "never"

    system.register(search)
    async with infraboot.testing.lifespan(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            answers = (await client.get("/all")).json()
            with system.override("mailer", ["stand-in"]):
                overridden = (await client.get("/all")).json()["mailer"]
            app.dependency_overrides[ib.resource_for("mailer")] = lambda: ["by dependency_overrides"]
            by_override = (await client.get("/all")).json()["mailer"]
            optional_answer = (await client.get("/optional")).json()
    assert {"redis": True, "autoflush": False, "mailer": ["outbox"]} == answers
    assert (["stand-in"], ["by dependency_overrides"]) == (overridden, by_override)
    assert {"search": None} == optional_answer
