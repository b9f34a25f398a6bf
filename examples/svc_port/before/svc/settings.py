"""The service's own settings, read from the environment (or given in code, as the tests do)."""

from __future__ import annotations

from pydantic_settings import BaseSettings


class Settings(BaseSettings):
    """``DATABASE_URL``, ``REDIS_URL``, ``BULK_POOL_SIZE``, ``ROLLUP_INTERVAL``."""

    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/svc"
    redis_url: str = "redis://127.0.0.1:6379/0"
    bulk_pool_size: int = 4
    rollup_interval: float = 60.0

    @property
    def asyncpg_dsn(self) -> str:
        """The raw asyncpg pool's DSN: the SQLAlchemy URL without its ``+asyncpg`` driver name."""
        return self.database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
