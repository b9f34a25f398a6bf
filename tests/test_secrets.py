"""A password in a URL never appears in logs, reprs, exceptions, reports: checked with a canary."""

from __future__ import annotations

import json
import logging

import pytest

import infraboot
from infraboot import ConfigError, StartupError

from .servers import TcpProxy

CANARY = "Ca@n:a/r%y#42"
ENCODED = "Ca%40n%3Aa%2Fr%25y%2342"

pytestmark = pytest.mark.real


def leaks(text: str) -> bool:
    return CANARY in text or ENCODED in text or "Ca@n" in text


def exception_texts(exc: BaseException) -> list[str]:
    """str and repr of the exception and of every link of its cause/context chain."""
    out, seen = [], set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        out += [str(cur), repr(cur), repr(cur.args)]
        cur = cur.__cause__ or cur.__context__
    return out


async def test_canary_survives_no_path_of_a_failed_startup(
    clean_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, redis_proxy: TcpProxy, database_proxy: TcpProxy
) -> None:
    """Failed required startup: logs, exception chain, report, reprs all stay clean."""
    redis_proxy.set_mode("reset")
    database_proxy.set_mode("refuse")
    clean_env.setenv("REDIS_URL", f"redis://user:{ENCODED}@{redis_proxy.url_host}/0")
    clean_env.setenv("REDIS_REQUIRED", "false")
    clean_env.setenv("REDIS_CONNECT_TIMEOUT", "0.5")
    clean_env.setenv(
        "DATABASE_URL", f"postgresql+asyncpg://app:{ENCODED}@{database_proxy.url_host}/test?password={ENCODED}"
    )
    clean_env.setenv("DATABASE_CONNECT_TIMEOUT", "0.5")
    clean_env.setenv("DATABASE_MAX_RETRIES", "1")
    with caplog.at_level(logging.DEBUG), pytest.raises(StartupError) as info:
        await infraboot.ensure_initialized(["redis", "database"])

    system = infraboot.default_system()
    texts = [
        caplog.text,
        *(repr(r.__dict__) for r in caplog.records),
        *exception_texts(info.value),
        info.value.report.render(),
        json.dumps(info.value.report.to_dict()),
        repr(info.value.report),
        repr(system),
        repr(system.components),
        *(repr(getattr(c, "settings", None)) for c in system.components.values()),
        *(str(c.target) for c in system.components.values()),
        json.dumps(system.report.to_dict()),
    ]
    assert [] == [t for t in texts if leaks(t)]
    assert "***" in str(info.value)


async def test_canary_survives_a_wrong_password(
    clean_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, redis_server: object
) -> None:
    """An authentication failure from a real server does not echo the password."""
    from .servers import RedisServer

    assert isinstance(redis_server, RedisServer)
    redis_server.kill()
    redis_server.password = "the-right-one"
    redis_server.start()
    clean_env.setenv("REDIS_URL", f"redis://default:{ENCODED}@127.0.0.1:{redis_server.port}/0")
    with caplog.at_level(logging.DEBUG), pytest.raises(StartupError) as info:
        await infraboot.ensure_initialized(["redis"])
    assert "auth" == info.value.report.components["redis"].error_code
    assert [] == [t for t in [caplog.text, *exception_texts(info.value), info.value.report.render()] if leaks(t)]


def test_canary_survives_config_errors(clean_env: pytest.MonkeyPatch) -> None:
    """A configuration error that shows the URL shows it redacted."""
    clean_env.setenv("REDIS_URL", f"redis://u:{ENCODED}@:0/0")
    clean_env.setenv("DATABASE_URL", f"oracle://u:{ENCODED}@db/x")
    clean_env.setenv("DATABASE_POOL_SIZE", "many")
    with pytest.raises(ConfigError) as info:
        infraboot.validate_config()
    assert [] == [t for t in [*exception_texts(info.value), repr(info.value.problems)] if leaks(t)]
    assert "DATABASE_POOL_SIZE" in str(info.value)


def test_canary_survives_settings_reprs(clean_env: pytest.MonkeyPatch) -> None:
    """Settings objects print their URL redacted."""
    s = infraboot.RedisSettings(url=f"rediss://u:{CANARY}@cache:6380/0")
    d = infraboot.DatabaseSettings(url=f"postgresql+asyncpg://u:{ENCODED}@db/x")
    for text in (repr(s), str(s), repr(d), str(d), repr(s.model_dump()), repr(d.model_dump())):
        assert not leaks(text), text


async def test_canary_survives_health_output_and_metrics(
    clean_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, redis_server: object
) -> None:
    """Health reports (with details) and a metrics scrape, before and after an outage, never carry the password."""
    from prometheus_client import CollectorRegistry, generate_latest

    from infraboot.metrics import register_metrics

    from .servers import RedisServer

    assert isinstance(redis_server, RedisServer)
    redis_server.kill()
    redis_server.password = CANARY
    redis_server.start()
    clean_env.setenv("REDIS_URL", f"redis://default:{ENCODED}@127.0.0.1:{redis_server.port}/0")
    clean_env.setenv("REDIS_REQUIRED", "false")
    registry = CollectorRegistry()
    register_metrics(registry)
    texts: list[str] = []
    with caplog.at_level(logging.DEBUG):
        await infraboot.ensure_initialized(["redis"])
        texts.append(json.dumps((await infraboot.health(fresh=True)).to_dict(details=True)))
        redis_server.kill()
        down = await infraboot.health(fresh=True)
        texts += [json.dumps(down.to_dict(details=True)), repr(down), generate_latest(registry).decode()]
        await infraboot.shutdown()
    texts.append(caplog.text)
    assert "warn" == down.status
    assert [] == [t for t in texts if leaks(t)]


def test_canary_survives_a_secretstr_and_a_dsn_given_as_the_url(clean_env: pytest.MonkeyPatch) -> None:
    """A password inside a SecretStr or a pydantic Dsn is redacted in settings reprs and configuration errors."""
    from pydantic import PostgresDsn, RedisDsn, SecretStr

    r = infraboot.RedisSettings(url=SecretStr(f"rediss://u:{ENCODED}@cache:6380/0"))
    d = infraboot.DatabaseSettings(url=PostgresDsn(f"postgresql+asyncpg://u:{ENCODED}@db/x"))
    texts = [repr(r), str(r), repr(d), str(d), repr(r.model_dump()), repr(d.model_dump())]
    with pytest.raises(ConfigError) as info:
        infraboot.configure(redis={"url": RedisDsn(f"redis://u:{ENCODED}@cache:6380/0"), "max_connections": 0})
    texts += [*exception_texts(info.value), repr(info.value.problems)]
    with pytest.raises(ConfigError) as bad_scheme:
        infraboot.configure(database={"url": SecretStr(f"oracle://u:{ENCODED}@db/x")})
    texts += [*exception_texts(bad_scheme.value), repr(bad_scheme.value.problems)]
    assert [] == [t for t in texts if leaks(t)]
    assert "***" in str(r.url)
