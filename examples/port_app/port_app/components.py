"""The raw asyncpg pool the bulk endpoints use, as an infraboot component of the app's own."""

from __future__ import annotations

import asyncpg
import infraboot

from .settings import Settings


class AsyncpgPool(infraboot.Component["asyncpg.Pool"]):
    """An ``asyncpg`` pool on the app's database, beside SQLAlchemy's engine (it requires nothing).

    Disabled when the database is not PostgreSQL (SQLite in the tests): ``get("pg_pool")``
    then raises ``ComponentUnavailableError``, which the app answers with a 503.
    """

    kind = "datastore"

    def __init__(self, settings: Settings, name: str = "pg_pool") -> None:
        self.app_settings = settings
        super().__init__(name, timeout=5.0, retries=3)

    def configure(self) -> str | None:
        if self.app_settings.asyncpg_dsn is None:
            return "the asyncpg pool needs PostgreSQL; DATABASE_URL is not a postgresql:// URL"
        return None

    async def start(self, ctx: infraboot.Context) -> asyncpg.Pool:
        pool = asyncpg.create_pool(self.app_settings.asyncpg_dsn, min_size=1, max_size=self.app_settings.bulk_pool_size)
        try:
            await pool
        except BaseException:
            pool.terminate()  # cancelled at infraboot's deadline, or failed: close what this attempt opened
            raise
        return pool

    async def check(self, pool: asyncpg.Pool) -> None:
        await pool.fetchval("SELECT 1")

    async def stop(self, pool: asyncpg.Pool) -> None:
        await pool.close()
