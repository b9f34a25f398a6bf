"""The application's own settings: the same environment variables it had before infraboot."""

from __future__ import annotations

from urllib.parse import quote

from pydantic import SecretStr
from pydantic_settings import BaseSettings


class Settings(BaseSettings):
    """``POSTGRES_HOST``, ``POSTGRES_USER``, ... and ``REDIS_URL``, read from the environment (or given in code).

    ``DATABASE_URL``, when set, replaces the ``POSTGRES_*`` parts (``sqlite+aiosqlite:///:memory:``
    runs the app with no server at all, as its tests do).
    """

    postgres_host: str = "127.0.0.1"
    postgres_port: int = 5432
    postgres_user: str = "postgres"
    postgres_password: SecretStr = SecretStr("")
    postgres_db: str = "app"
    database_url: str | None = None
    redis_url: str = "redis://127.0.0.1:6379/0"
    cache_url: str = "redis://127.0.0.1:6379/1"
    cache_ttl: int = 60
    bulk_pool_size: int = 4

    @property
    def sqlalchemy_url(self) -> str:
        """The URL SQLAlchemy connects to: ``DATABASE_URL``, else built from the ``POSTGRES_*`` parts."""
        if self.database_url is not None:
            return self.database_url
        return "postgresql+asyncpg://" + self._postgres_location()

    @property
    def asyncpg_dsn(self) -> str | None:
        """The DSN of the raw asyncpg pool, or ``None`` when the database is not PostgreSQL."""
        if self.database_url is None:
            return "postgresql://" + self._postgres_location()
        scheme, _, rest = self.database_url.partition("://")
        if not scheme.startswith("postgresql"):
            return None
        return "postgresql://" + rest

    def _postgres_location(self) -> str:
        password = self.postgres_password.get_secret_value()
        auth = quote(self.postgres_user, safe="") + (":" + quote(password, safe="") if password else "")
        return f"{auth}@{self.postgres_host}:{self.postgres_port}/{quote(self.postgres_db, safe='')}"
