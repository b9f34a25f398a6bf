"""A FastAPI app for the commit tests: one write endpoint per spelling of the per-request session.

``PATCH /{spelling}/users/{id}?name=...`` renames a user of TABLE, whose names are unique with a
deferred constraint: a duplicate is found at ``COMMIT``, after the handler has returned. An
``IntegrityError`` answers 409.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

import infraboot
import infraboot.fastapi as ib

TABLE = os.environ["TABLE"]
RENAME = text(f"UPDATE {TABLE} SET name = :name WHERE id = :id")


async def conflict(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": "that name is taken"}, status_code=409)


api = FastAPI(
    lifespan=ib.lifespan(["database"]),
    exception_handlers={**ib.exception_handlers, IntegrityError: conflict},
)


async def get_db_yield(session: ib.DatabaseSession) -> AsyncIterator[AsyncSession]:
    """An app's own yield dependency taking the Annotated alias (DependencyScopeError before)."""
    yield session


async def get_db_yield_plain(session: AsyncSession = Depends(ib.database_session)) -> AsyncIterator[AsyncSession]:  # noqa: B008
    """An app's own yield dependency taking the plain dependency."""
    yield session


def get_db_return(session: ib.DatabaseSession) -> AsyncSession:
    """An app's own plain dependency."""
    return session


SPELLINGS: dict[str, Callable[..., Any]] = {
    "alias": ib.database_session,
    "plain": ib.database_session,
    "get-db-yield": get_db_yield,
    "get-db-yield-plain": get_db_yield_plain,
    "get-db-return": get_db_return,
    "named": ib.database_session_for("database"),
    "named-options": ib.database_session_for("database", autoflush=False),
}


def route(spelling: str, dependency: Callable[..., Any]) -> Callable[..., Awaitable[dict[str, Any]]]:
    if spelling == "alias":

        async def rename_alias(id: int, name: str, session: ib.DatabaseSession) -> dict[str, Any]:
            await session.execute(RENAME, {"id": id, "name": name})
            return {"id": id, "name": name}

        return rename_alias

    async def rename(id: int, name: str, session: Annotated[AsyncSession, Depends(dependency)]) -> dict[str, Any]:
        await session.execute(RENAME, {"id": id, "name": name})
        return {"id": id, "name": name}

    return rename


for spelling, dependency in SPELLINGS.items():
    api.add_api_route(f"/{spelling}/users/{{id}}", route(spelling, dependency), methods=["PATCH"])


@api.patch("/get-session/users/{id}")
async def rename_get_session(id: int, name: str) -> dict[str, Any]:
    """The Starlette way (no dependencies): the block commits before the handler returns."""
    async with infraboot.get_session() as session:
        await session.execute(RENAME, {"id": id, "name": name})
    return {"id": id, "name": name}


app = api
