"""The database component on MySQL / MariaDB (asyncmy, aiomysql), against the real MariaDB through TcpProxy."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from infraboot import ConfigError, DatabaseComponent, DatabaseSettings, StartupError, SystemInitializer
from infraboot._front._accessors import session_scope, use_session

from .conftest import _server_or_skip
from .servers import TcpProxy

pytestmark = pytest.mark.real

CANARY = "canary-pw-mysql-3e8"


@pytest.fixture(scope="session")
def real_mysql() -> tuple[str, str, int]:
    return _server_or_skip("INFRABOOT_TEST_MYSQL_URL", "mysql+asyncmy://root@127.0.0.1:3306/test", 3306, "MySQL")


@pytest.fixture
def mysql_proxy(real_mysql: tuple[str, str, int]) -> Iterator[TcpProxy]:
    proxy = TcpProxy(real_mysql[2], target_host=real_mysql[1])
    try:
        yield proxy
    finally:
        proxy.close()


def database(url: str, **settings: object) -> DatabaseComponent:
    return DatabaseComponent(settings=DatabaseSettings(url=url, **settings))  # type: ignore[arg-type]


@pytest.mark.parametrize("scheme", ["mysql+asyncmy", "mysql+aiomysql", "mariadb+asyncmy", "mysql"])
async def test_sessions_commit_and_roll_back_on_mariadb(mysql_proxy: TcpProxy, scheme: str) -> None:
    """Each driver: start checks with SELECT 1; a session commits on success and rolls back on an exception."""
    url = f"{scheme}://root@{mysql_proxy.url_host}/test"
    async with SystemInitializer([database(url, warmup_connections=2)]) as system:
        engine = system.get("database")
        async with session_scope(engine) as session:
            await session.execute(text("CREATE TABLE IF NOT EXISTS infraboot_kv (k VARCHAR(40) PRIMARY KEY, v INT)"))
            await session.execute(text("DELETE FROM infraboot_kv WHERE k = :k"), {"k": scheme})
        async with session_scope(engine) as session:
            await session.execute(text("INSERT INTO infraboot_kv VALUES (:k, 1)"), {"k": scheme})
        with pytest.raises(RuntimeError):
            async with session_scope(engine) as session:
                await session.execute(text("UPDATE infraboot_kv SET v = 2 WHERE k = :k"), {"k": scheme})
                raise RuntimeError
        async with session_scope(engine) as session:
            value = (await session.execute(text("SELECT v FROM infraboot_kv WHERE k = :k"), {"k": scheme})).scalar()
        assert 1 == value
        assert 2 <= system.pool_stats("database")["idle"]


async def test_a_lent_session_is_rolled_back_as_in_the_test_kit(mysql_proxy: TcpProxy) -> None:
    """use_session() on a connection in an outer transaction (savepoints): nothing the block commits stays."""
    from sqlalchemy.ext.asyncio import AsyncSession

    async with SystemInitializer([database(f"mysql+asyncmy://root@{mysql_proxy.url_host}/test")]) as system:
        engine = system.get("database")
        async with session_scope(engine) as session:
            await session.execute(text("CREATE TABLE IF NOT EXISTS infraboot_kv (k VARCHAR(40) PRIMARY KEY, v INT)"))
            await session.execute(text("DELETE FROM infraboot_kv WHERE k = 'lent'"))
        async with engine.connect() as conn:
            outer = await conn.begin()
            lent = AsyncSession(bind=conn, join_transaction_mode="create_savepoint")
            with use_session(lent):
                async with session_scope(engine) as session:
                    await session.execute(text("INSERT INTO infraboot_kv VALUES ('lent', 1)"))
            await lent.close()
            await outer.rollback()
        async with session_scope(engine) as session:
            count = (await session.execute(text("SELECT COUNT(*) FROM infraboot_kv WHERE k = 'lent'"))).scalar()
    assert 0 == count


def test_url_rules_name_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    """Missing database, a 3-byte charset, an owned or unknown parameter: one line each; no password."""
    problems = DatabaseComponent().settings_problems(
        {"url": f"mysql+asyncmy://app:{CANARY}@db:3306/?charset=utf8&connect_timeout=3&sslmode=require"}
    )
    text_ = "\n".join(problems)
    assert "missing database name; write it as mysql+asyncmy://USER:PASSWORD@HOST:3306/DBNAME" in text_
    assert "charset=utf8 stores no 4-byte characters (emoji); use charset=utf8mb4" in text_
    assert "connect_timeout is set by infraboot; remove it from the URL and set " in text_
    assert "unknown query parameter 'sslmode'" in text_
    assert CANARY not in text_
    pg_only = DatabaseComponent().settings_problems({"url": "mysql://app@db/app", "pgbouncer": True, "role": "replica"})
    assert 2 == len(pg_only)
    assert all("needs a PostgreSQL URL" in p for p in pg_only)


async def test_a_pool_recycle_the_server_would_beat_is_refused_with_the_value_to_use(
    mysql_proxy: TcpProxy,
) -> None:
    """DATABASE_POOL_RECYCLE=-1 against wait_timeout: a config error naming a value below it."""
    settings = {"pool_recycle": -1, "max_retries": 2}
    with pytest.raises(StartupError) as info:
        await SystemInitializer([database(f"mysql://root@{mysql_proxy.url_host}/test", **settings)]).initialize_all()
    result = info.value.report.components["database"]
    assert ("config", 1) == (result.error_code, result.attempts)
    assert "(@@wait_timeout): a pooled connection would be found dead; set pool_recycle=" in str(info.value)


@pytest.mark.parametrize(
    ("mode", "codes"),
    # A reset during the TCP handshake reads as refused (asyncmy's 2003 with errno 111), now and then.
    [("refuse", {"refused"}), ("blackhole", {"timeout"}), ("reset", {"reset", "refused"})],
)
async def test_an_unreachable_optional_mysql_degrades_in_time(
    mysql_proxy: TcpProxy, mode: str, codes: set[str]
) -> None:
    """Refused, silent or reset: the optional database degrades with its code within the connect timeout (0.5 s)."""
    mysql_proxy.set_mode(mode)  # type: ignore[arg-type]
    settings = {"required": False, "connect_timeout": 0.5, "max_retries": 0}
    system = SystemInitializer([database(f"mysql+asyncmy://root@{mysql_proxy.url_host}/test", **settings)])
    t0 = time.monotonic()
    report = await system.initialize_all()
    elapsed = time.monotonic() - t0
    await system.shutdown()
    assert "degraded" == report.status
    assert report.components["database"].error_code in codes
    assert elapsed < 0.5 + 1.0


async def test_a_wrong_password_is_one_attempt_and_never_printed(
    mysql_proxy: TcpProxy, caplog: pytest.LogCaptureFixture
) -> None:
    """Access denied (1045): code 'auth', one attempt, the canary nowhere."""
    caplog.set_level(logging.DEBUG)
    url = f"mysql+asyncmy://root:{CANARY}@{mysql_proxy.url_host}/test"
    with pytest.raises(StartupError) as info:
        await SystemInitializer([database(url, max_retries=3)]).initialize_all()
    result = info.value.report.components["database"]
    assert ("auth", 1) == (result.error_code, result.attempts)
    assert CANARY not in str(info.value)
    assert CANARY not in caplog.text


async def test_an_unknown_database_is_not_found(mysql_proxy: TcpProxy) -> None:
    """Unknown database (1049): code 'not_found', not retried."""
    url = f"mysql+aiomysql://root@{mysql_proxy.url_host}/infraboot_no_such_db"
    with pytest.raises(StartupError) as info:
        await SystemInitializer([database(url, max_retries=3)]).initialize_all()
    assert ("not_found", 1) == (
        info.value.report.components["database"].error_code,
        info.value.report.components["database"].attempts,
    )


async def test_pre_ping_replaces_connections_the_server_dropped(mysql_proxy: TcpProxy) -> None:
    """A restart, as the pool sees it: every pooled connection cut; the next session works on a fresh one."""
    url = f"mysql+asyncmy://root@{mysql_proxy.url_host}/test"
    async with SystemInitializer([database(url, warmup_connections=3)], check_interval=None) as system:
        engine = system.get("database")
        accepted = mysql_proxy.accepted
        mysql_proxy.drop_connections()
        t0 = time.monotonic()
        async with session_scope(engine) as session:
            assert 1 == (await session.execute(text("SELECT 1"))).scalar()
        back_after = time.monotonic() - t0
        assert mysql_proxy.accepted > accepted
    assert back_after < 2.0


def test_mysql_settings_refuse_a_bad_value_before_io() -> None:
    """A bad value given in code is a ConfigError at configure(), before any connection."""
    with pytest.raises(ConfigError, match="missing database name"):
        DatabaseComponent(settings={"url": "mysql://root@127.0.0.1:3306"}).configure()
