"""Multi-host PostgreSQL URLs and the database role: checked before I/O, passed to asyncpg, no password shown."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import text

from infraboot import ConfigError, DatabaseComponent, DatabaseSettings, StartupError, SystemInitializer
from infraboot._base._redact import SecretURL
from infraboot._components._settings import load_settings
from infraboot._components._urls import database_driver_url, database_hosts, database_url_problems

from .servers import free_port

CANARY = "s3cr3t-canary"


def problems(url: str) -> list[str]:
    return database_url_problems(SecretURL(url), "DATABASE_URL")


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+asyncpg://u:p@h1:5432,h2:5433/db?target_session_attrs=read-write",
        "postgresql://u:p@db-a.internal,db-b.internal:5433/db",
        "postgres://u@10.0.0.1:5432,10.0.0.2:5432,10.0.0.3:5432/db?target_session_attrs=primary",
        "postgresql+asyncpg://u:p@/db?host=h1:5432&host=h2:5433&target_session_attrs=prefer-standby",
    ],
)
def test_multi_host_urls_pass(url: str) -> None:
    """A host list in the authority, or repeated ?host=HOST:PORT, is a valid database URL."""
    assert [] == problems(url)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql+asyncpg://u@h1:5432,:5433/db", "an empty host in the host list"),
        ("postgresql+asyncpg://u@h1:5432,h2:99999/db", "bad port '99999' for host 'h2'"),
        ("postgresql+asyncpg://u@h1:5432,h2:x/db", "bad port 'x' for host 'h2'"),
        ("postgresql+asyncpg://u@h1:5432,h2:5432/db?port=5432", "?port= cannot go with a host list"),
        ("postgresql+asyncpg://u@h1:5432,h2/db?host=h3:5432", "the hosts are given twice"),
        ("postgresql+asyncpg://u@h1,[::1]:5432/db", "IPv6 addresses cannot be listed"),
        ("postgresql+asyncpg://u@/db?host=h1&host=h2:5432", "?host=h1 is not a unix socket directory nor HOST:PORT"),
        ("postgresql+asyncpg://u@/db?host=/run/pg&host=h2:5432", "mixes unix sockets and HOST:PORT entries"),
        ("postgresql+asyncpg://u@/db?host=h1:5432&port=5432", "?port= cannot go with ?host=HOST:PORT entries"),
    ],
)
def test_bad_multi_host_urls_name_the_problem_and_the_fix(url: str, expected: str) -> None:
    """Each malformed host list gives one line naming the variable, the problem and the fix."""
    found = problems(url)
    assert 1 == len(found), found
    assert expected in found[0]
    assert found[0].startswith("DATABASE_URL=")


def test_the_host_list_reaches_asyncpg_as_host_and_port_lists() -> None:
    """h1,h2:5433 becomes ?host=h1:5432&host=h2:5433, which SQLAlchemy's asyncpg dialect passes as two lists."""
    from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
    from sqlalchemy.engine import make_url

    url = SecretURL(f"postgresql://app:{CANARY}@h1,h2:5433/db?target_session_attrs=read-write")
    driver_url, _ = database_driver_url(url)
    assert [("h1", 5432), ("h2", 5433)] == database_hosts(url) == database_hosts(driver_url)
    _, kwargs = PGDialect_asyncpg().create_connect_args(make_url(driver_url.get_secret_value()))
    assert (["h1", "h2"], [5432, 5433], "read-write", CANARY) == (
        kwargs["host"],
        kwargs["port"],
        kwargs["target_session_attrs"],
        kwargs["password"],
    )
    assert "postgresql+asyncpg://app:***@/db?host=h1:5432&host=h2:5433&target_session_attrs=read-write" == str(
        driver_url
    )


def test_a_multi_host_password_never_prints() -> None:
    """The canary password is in no str, repr, problem line, driver URL text or component target."""
    raw = f"postgresql+asyncpg://app:{CANARY}@h1:5432,h2:99999/db?port=1"
    url = SecretURL(raw)
    driver_url, note = database_driver_url(url)
    with pytest.raises(ConfigError) as settings_error:
        load_settings(DatabaseSettings, {"url": raw})
    shown = [str(url), repr(url), *problems(raw), str(driver_url), repr(driver_url), str(note)]
    shown.append(str(settings_error.value))
    assert [] == [s for s in shown if CANARY in s]
    component = DatabaseComponent(settings={"url": f"postgresql+asyncpg://app:{CANARY}@h1:5432,h2:5433/db"})
    component.configure()
    assert CANARY not in str(component.target)
    assert "app:***@h1:5432,h2:5433/db" in str(component.target)


async def test_a_failed_multi_host_start_shows_no_password(caplog: pytest.LogCaptureFixture) -> None:
    """Both hosts refused: the StartupError, the report, health and the logs name no password."""
    caplog.set_level(logging.DEBUG, logger="infraboot")
    url = f"postgresql+asyncpg://app:{CANARY}@127.0.0.1:{free_port()},127.0.0.1:{free_port()}/db"
    system = SystemInitializer([DatabaseComponent(DatabaseSettings(url=url, connect_timeout=1.0, max_retries=0))])
    with pytest.raises(StartupError) as caught:
        await system.ensure_initialized(["database"])
    health = await system.health(fresh=True)
    shown = [str(caught.value), repr(caught.value), str(health.to_dict(details=True)), caplog.text]
    shown.append(str(system.snapshot()["database"]))
    assert [] == [s[:200] for s in shown if CANARY in s]
    assert "refused" == system.snapshot()["database"].error_code
    await system.shutdown()


@pytest.mark.real
async def test_the_next_host_is_used_when_the_first_is_down(real_database: tuple[str, str, int]) -> None:
    """With the first listed host refusing, the component starts on the second (the real PostgreSQL)."""
    _, host, port = real_database
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()},{host}:{port}/test?target_session_attrs=read-write"
    system = SystemInitializer([DatabaseComponent(DatabaseSettings(url=url, connect_timeout=2.0))])
    await system.ensure_initialized(["database"])
    async with system.get("database").connect() as conn:
        assert port == (await conn.execute(text("SELECT inet_server_port()"))).scalar_one()
    assert "pass" == (await system.health(fresh=True)).status
    await system.shutdown()


@pytest.mark.parametrize(
    ("url", "role", "expected"),
    [
        ("postgresql+asyncpg://u@h/db", None, "primary"),
        ("postgresql+asyncpg://u@h1:5432,h2:5432/db?target_session_attrs=read-write", None, "primary"),
        ("postgresql+asyncpg://u@h1:5432,h2:5432/db?target_session_attrs=prefer-standby", None, "replica"),
        ("postgresql+asyncpg://u@h/db?target_session_attrs=standby", None, "replica"),
        ("postgresql+asyncpg://u@h/db", "any", "any"),
        ("sqlite+aiosqlite:///:memory:", None, "any"),
    ],
)
def test_the_role_follows_target_session_attrs_unless_set(url: str, role: str | None, expected: str) -> None:
    """DATABASE_ROLE wins; unset, standby-like target_session_attrs mean a replica, anything else a primary."""
    assert expected == DatabaseSettings(url=url, role=role).effective_role


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"DATABASE_ROLE": "writer"}, "DATABASE_ROLE='writer': must be one of primary, replica, any"),
        (
            {"DATABASE_ROLE": "primary", "DATABASE_URL": "postgresql+asyncpg://u@h/db?target_session_attrs=standby"},
            "DATABASE_ROLE=primary but DATABASE_URL asks for target_session_attrs=standby",
        ),
        (
            {"DATABASE_ROLE": "replica", "DATABASE_URL": "postgresql+asyncpg://u@h/db?target_session_attrs=read-write"},
            "use target_session_attrs=prefer-standby for a read replica",
        ),
        ({"DATABASE_ROLE": "replica", "DATABASE_URL": "sqlite+aiosqlite://"}, "needs a PostgreSQL URL"),
    ],
)
def test_a_bad_role_is_refused_before_io_naming_the_fix(
    clean_env: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    """A role that is unknown or contradicts the URL is one ConfigError line naming the variable and the fix."""
    clean_env.setenv("DATABASE_URL", "postgresql+asyncpg://u@h/db")
    for key, value in env.items():
        clean_env.setenv(key, value)
    with pytest.raises(ConfigError) as caught:
        DatabaseComponent().configure()
    found = [p for p in caught.value.problems if expected in p]
    assert 1 == len(found), caught.value.problems
    assert found[0].startswith("DATABASE_")
