"""The app on the embedded defaults: no Redis or PostgreSQL server, nothing in os.environ."""

from __future__ import annotations

import httpx
import infraboot
import infraboot.fastapi as ib
import infraboot.testing
from fastapi import FastAPI

from port_app.components import AsyncpgPool
from port_app.settings import Settings


async def test_ready_on_the_embedded_defaults(client: httpx.AsyncClient) -> None:
    """Every component starts and readiness passes; the asyncpg pool is disabled on SQLite."""
    response = await client.get("/readyz")
    assert 200 == response.status_code
    assert "pass" == response.json()["status"]


async def test_the_pool_is_disabled_on_sqlite(system: infraboot.SystemInitializer, client: httpx.AsyncClient) -> None:
    """The custom pool component is switched off, not failed, when the database is SQLite."""
    assert infraboot.ComponentState.DISABLED == system.state("pg_pool")
    assert "needs PostgreSQL" in (AsyncpgPool(Settings(database_url="sqlite+aiosqlite://")).configure() or "")


async def test_redis_answers_text(client: httpx.AsyncClient) -> None:
    """decode_responses=True reaches the client: Redis values come back as str, not bytes."""
    await client.post("/visits/ada")
    assert {"visits": 2, "last": "grace"} == (await client.post("/visits/grace")).json()


async def test_each_app_has_a_fresh_redis(client: httpx.AsyncClient) -> None:
    """No key leaks from the previous test: memory:// is private to each app."""
    assert 1 == (await client.post("/visits/ada")).json()["visits"]


async def test_notes_are_committed_and_counted_through_the_cache(client: httpx.AsyncClient) -> None:
    """A note is committed per request; the count is cached in the named cache Redis until the next note."""
    assert {"id": 1, "body": "first"} == (await client.post("/notes", params={"body": "first"})).json()
    assert {"count": 1, "cached": False} == (await client.get("/notes/count")).json()
    assert {"count": 1, "cached": True} == (await client.get("/notes/count")).json()
    await client.post("/notes", params={"body": "second"})
    assert {"count": 2, "cached": False} == (await client.get("/notes/count")).json()


async def test_sessions_take_the_apps_session_options(app: FastAPI, client: httpx.AsyncClient) -> None:
    """The per-request session is built with expire_on_commit=False and autoflush=False."""

    @app.get("/test/session")
    async def session_flags(session: ib.DatabaseSession) -> dict[str, bool]:
        return {"expire_on_commit": session.sync_session.expire_on_commit, "autoflush": session.autoflush}

    assert {"expire_on_commit": False, "autoflush": False} == (await client.get("/test/session")).json()


async def test_bulk_answers_503_without_postgresql(client: httpx.AsyncClient) -> None:
    """With no asyncpg pool the bulk endpoint is a 503 with Retry-After, through exception_handlers."""
    response = await client.post("/notes/bulk", json=["a", "b"])
    assert 503 == response.status_code
    assert "5" == response.headers["retry-after"]
    assert {"detail": "pg_pool is unavailable; try again later"} == response.json()


async def test_bulk_uses_the_pool_it_is_given(system: infraboot.SystemInitializer, client: httpx.AsyncClient) -> None:
    """The pool can be replaced by a stand-in for a test; the endpoint copies every record into it."""

    copied: list[tuple[str]] = []

    class Connection:
        async def __aenter__(self) -> Connection:
            return self

        async def __aexit__(self, *exc: object) -> None:
            return None

        async def copy_records_to_table(self, table: str, *, records: list[tuple[str]], columns: list[str]) -> None:
            copied.extend(records)

    class Pool:
        def acquire(self) -> Connection:
            return Connection()

    with system.override("pg_pool", Pool()):
        assert {"added": 2} == (await client.post("/notes/bulk", json=["a", "b"])).json()
    assert [("a",), ("b",)] == copied


async def test_a_cache_outage_is_a_503_and_readiness_warns(
    system: infraboot.SystemInitializer, client: httpx.AsyncClient
) -> None:
    """While the optional cache is down its endpoints answer 503 and readiness says warn; then all recovers."""
    async with infraboot.testing.outage("cache"):
        assert 503 == (await client.get("/notes/count")).status_code
        assert "warn" == (await client.get("/readyz")).json()["status"]
    assert 200 == (await client.get("/notes/count")).status_code
