"""URLs as applications' own Settings classes hold them: pydantic types, any secret type, SQLAlchemy's URL."""

from __future__ import annotations

import pytest
from pydantic import PostgresDsn, RedisDsn, SecretStr
from pydantic_settings import BaseSettings
from sqlalchemy.engine import make_url

from infraboot import DatabaseSettings, RedisSettings

CANARY = "canary-pw-7781"


class AppSettings(BaseSettings):
    """An app's own Settings class, as the ports had it."""

    redis_url: RedisDsn = RedisDsn(f"redis://:{CANARY}@cache:6380/1")
    database_url: PostgresDsn = PostgresDsn(f"postgresql+asyncpg://app:{CANARY}@db-a:5432,db-b:5432/app")
    secret_url: SecretStr = SecretStr(f"redis://:{CANARY}@cache:6380/2")


class VaultSecret:
    """A secret type of another library: only ``get_secret_value()`` in common with pydantic's."""

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __str__(self) -> str:
        return "**********"


def test_an_apps_settings_fields_are_taken_as_they_are(clean_env: pytest.MonkeyPatch) -> None:
    """RedisDsn, a multi-host PostgresDsn and SecretStr go to the settings unconverted, password kept, never shown."""
    app = AppSettings()
    redis = RedisSettings(url=app.redis_url)
    database = DatabaseSettings(url=app.database_url)
    secret = RedisSettings(url=app.secret_url)
    assert f"redis://:{CANARY}@cache:6380/1" == redis.url.get_secret_value()
    assert "db-a:5432,db-b:5432" in database.url.get_secret_value()
    assert f"redis://:{CANARY}@cache:6380/2" == secret.url.get_secret_value()
    assert not any(CANARY in text for text in (repr(redis), str(redis.url), repr(database), str(secret.url)))


def test_a_secret_of_another_library_and_sqlalchemys_url(clean_env: pytest.MonkeyPatch) -> None:
    """Anything with get_secret_value() is revealed for the driver; a SQLAlchemy URL keeps its password
    (its str() would print *** in its place)."""
    vault = RedisSettings(url=VaultSecret(f"redis://:{CANARY}@cache:6380/3"))
    engine_url = make_url(f"postgresql+asyncpg://app:{CANARY}@db:5432/app")
    assert "***" in str(engine_url)  # why str() will not do
    database = DatabaseSettings(url=engine_url)
    assert f"redis://:{CANARY}@cache:6380/3" == vault.url.get_secret_value()
    assert f"postgresql+asyncpg://app:{CANARY}@db:5432/app" == database.url.get_secret_value()
    assert CANARY not in repr(database) + repr(vault)
