"""Settings of the built-in components: read from the environment, validated before any I/O."""

from __future__ import annotations

import pytest

import infraboot
from infraboot import ConfigError, DatabaseSettings, RedisSettings


def test_settings_read_the_12_factor_variables(clean_env: pytest.MonkeyPatch) -> None:
    """REDIS_* and DATABASE_* variables fill the settings."""
    clean_env.setenv("REDIS_URL", "redis://cache:6380/1")
    clean_env.setenv("REDIS_CONNECT_TIMEOUT", "1.5")
    clean_env.setenv("REDIS_REQUIRED", "false")
    clean_env.setenv("DATABASE_URL", "postgresql+asyncpg://u@db/app")
    clean_env.setenv("DATABASE_POOL_SIZE", "7")
    clean_env.setenv("DATABASE_PGBOUNCER", "true")
    r, d = RedisSettings(), DatabaseSettings()
    assert ("cache", 6380, 1.5, False) == (r.url.host, r.url.port, r.connect_timeout, r.required)  # type: ignore[union-attr]
    assert (7, True) == (d.pool_size, d.pgbouncer)


def test_settings_can_be_built_in_code(clean_env: pytest.MonkeyPatch) -> None:
    """Keyword arguments work as well as the environment."""
    s = RedisSettings(url="memory://", warmup_connections=0)
    assert ("memory", 0) == (s.url.scheme, s.warmup_connections)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"REDIS_URL": "http://x:1"}, "REDIS_URL=http://x:1: unknown scheme 'http'; use one of redis://"),
        ({"REDIS_URL": "redis://:6379/0"}, "missing host"),
        ({"REDIS_URL": "redis://h:99999/0"}, "bad port '99999'"),
        ({"REDIS_URL": "redis://h:abc/0"}, "bad port 'abc'"),
        ({"REDIS_URL": "redis://h", "REDIS_CONNECT_TIMEOUT": "nan"}, "REDIS_CONNECT_TIMEOUT=nan: must be a finite"),
        ({"REDIS_URL": "redis://h", "REDIS_SOCKET_TIMEOUT": "-1"}, "REDIS_SOCKET_TIMEOUT=-1.0"),
        ({"REDIS_URL": "redis://h", "REDIS_CONNECT_TIMEOUT": "inf"}, "REDIS_CONNECT_TIMEOUT=inf"),
        ({"REDIS_URL": "redis://h", "REDIS_MAX_RETRIES": "-2"}, "REDIS_MAX_RETRIES=-2: must be a whole number >= 0"),
        ({"REDIS_URL": "redis://h", "REDIS_MAX_CONNECTIONS": "0"}, "REDIS_MAX_CONNECTIONS=0"),
        ({"REDIS_URL": "redis://h", "REDIS_TLS_VERIFY": "false"}, "only applies to rediss://"),
        (
            {"REDIS_URL": "redis://h", "REDIS_CONNECT_TIMEOUT": "soon"},
            "REDIS_CONNECT_TIMEOUT='soon': must be a number",
        ),
        ({"DATABASE_URL": "oracle://h/db"}, "unknown scheme 'oracle'; use one of postgresql+asyncpg://"),
        (
            {"DATABASE_URL": "postgresql+asyncpg://h/db", "DATABASE_POOL_SIZE": "0"},
            "DATABASE_POOL_SIZE=0: must be a whole number >= 1",
        ),
        ({"DATABASE_URL": "postgresql+asyncpg://h/db?sslmode=sometimes"}, "unknown sslmode 'sometimes'"),
        (
            {"DATABASE_URL": "sqlite+aiosqlite://", "DATABASE_PGBOUNCER": "1"},
            "DATABASE_PGBOUNCER=true needs a PostgreSQL URL",
        ),
        (
            {"DATABASE_URL": "postgresql+asyncpg://h/db", "DATABASE_WARMUP_CONNECTIONS": "50"},
            "exceeds DATABASE_POOL_SIZE",
        ),
        ({"DATABASE_URL": "postgresql+asyncpg://h/db", "DATABASE_POOL_RECYCLE": "0"}, "-1 to never recycle"),
    ],
)
def test_validate_config_names_the_field_and_the_fix(
    clean_env: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    """Each bad value is reported with its variable name and how to fix it."""
    for k, v in env.items():
        clean_env.setenv(k, v)
    with pytest.raises(ConfigError) as info:
        infraboot.validate_config()
    assert expected in str(info.value)


def test_every_problem_is_listed_at_once(clean_env: pytest.MonkeyPatch) -> None:
    """Problems of both components come in one error, one line each."""
    clean_env.setenv("REDIS_URL", "redis://h")
    clean_env.setenv("REDIS_MAX_RETRIES", "-1")
    clean_env.setenv("REDIS_CONNECT_TIMEOUT", "0")
    clean_env.setenv("DATABASE_URL", "oracle://h/db")
    with pytest.raises(ConfigError) as info:
        infraboot.validate_config()
    assert 3 == len(info.value.problems)


def test_a_required_component_without_a_url_fails_closed(clean_env: pytest.MonkeyPatch) -> None:
    """An unset (or empty) URL on a required component is a ConfigError naming the three ways out."""
    clean_env.setenv("DATABASE_URL", "")
    with pytest.raises(ConfigError) as info:
        infraboot.validate_config()
    clean_env.setenv("REDIS_URL", "rediss://cache.internal:6380/0")
    clean_env.setenv("DATABASE_URL", "postgresql+asyncpg://u:p@db/app?sslmode=verify-full")
    infraboot.validate_config()

    assert 2 == len(info.value.problems)
    redis = info.value.problems[0]
    assert redis.startswith("REDIS_URL is not set and 'redis' is required")
    assert all(way in redis for way in ("set REDIS_URL", "REDIS_ENABLED=false", "REDIS_REQUIRED=false"))


async def test_a_required_component_without_a_url_fails_startup_before_any_io(clean_env: pytest.MonkeyPatch) -> None:
    """ensure_initialized() refuses to report ok for a required component nobody configured."""
    with pytest.raises(ConfigError, match="REDIS_URL is not set and 'redis' is required"):
        await infraboot.ensure_initialized(["redis", "database"])
    assert infraboot.ComponentState.PENDING == infraboot.state("redis")


async def test_an_optional_component_without_a_url_is_not_configured(clean_env: pytest.MonkeyPatch) -> None:
    """Optional and unset: degraded, health 'warn' with 'not_configured', get() raises, nothing retried."""
    clean_env.setenv("REDIS_REQUIRED", "false")
    clean_env.setenv("DATABASE_ENABLED", "false")
    report = await infraboot.ensure_initialized(["redis", "database"])
    health = await infraboot.health()
    with pytest.raises(infraboot.ComponentUnavailableError, match="REDIS_URL is not set"):
        infraboot.get_redis()
    await infraboot.shutdown()

    assert ("degraded", infraboot.ComponentState.FAILED) == (report.status, report.components["redis"].state)
    assert ("warn", "not_configured") == (health.status, health.components["redis"].error_code)
    assert (infraboot.ComponentState.DISABLED, "DATABASE_ENABLED=false") == (
        report.components["database"].state,
        report.components["database"].reason,
    )


async def test_enabled_false_disables(clean_env: pytest.MonkeyPatch) -> None:
    """REDIS_ENABLED=false wins over a URL."""
    clean_env.setenv("REDIS_URL", "memory://")
    clean_env.setenv("REDIS_ENABLED", "false")
    report = await infraboot.ensure_initialized(["redis"])
    assert "REDIS_ENABLED=false" == report.components["redis"].reason


async def test_bad_configuration_fails_before_any_io(clean_env: pytest.MonkeyPatch) -> None:
    """ensure_initialized raises ConfigError, not StartupError, for a bad setting."""
    clean_env.setenv("REDIS_URL", "redis://h:0/0")
    with pytest.raises(ConfigError, match="bad port"):
        await infraboot.ensure_initialized(["redis"])
    assert infraboot.ComponentState.PENDING == infraboot.state("redis")


def test_pydantic_url_types_are_accepted_as_the_url(clean_env: pytest.MonkeyPatch) -> None:
    """A RedisDsn, PostgresDsn, AnyUrl or SecretStr (what an app's own Settings hold) is read as the URL string."""
    from pydantic import AnyUrl, PostgresDsn, RedisDsn, SecretStr

    given = [
        RedisSettings(url=RedisDsn("redis://cache:6380/1")).url,
        RedisSettings(url=AnyUrl("redis://cache:6380/1")).url,
        RedisSettings(url=SecretStr("redis://cache:6380/1")).url,
        DatabaseSettings(url=PostgresDsn("postgresql+asyncpg://u@db:5432/app")).url,
    ]
    expected = ["redis://cache:6380/1"] * 3 + ["postgresql+asyncpg://u@db:5432/app"]
    assert expected == [str(url) for url in given]


def test_a_url_of_a_wrong_type_names_the_types_accepted(clean_env: pytest.MonkeyPatch) -> None:
    """A URL that is no string, pydantic URL or SecretStr is refused with the types that would do."""
    with pytest.raises(ConfigError) as info:
        RedisSettings(url=6379)
    assert "url=***: must be a URL: a str, a pydantic URL (RedisDsn, PostgresDsn, AnyUrl), a SecretStr" in str(
        info.value
    )


async def test_configure_takes_the_dsn_an_app_settings_class_holds(
    clean_env: pytest.MonkeyPatch, redis_url: str, database_url: str
) -> None:
    """configure(redis={"url": SecretStr(...)}) and a PostgresDsn for the database start against the real servers."""
    from pydantic import PostgresDsn, SecretStr

    infraboot.configure(redis={"url": SecretStr(redis_url)}, database={"url": PostgresDsn(database_url)})
    await infraboot.ensure_initialized(["redis", "database"])
    assert True is await infraboot.get_redis().ping()
