"""Rotating the password on the real servers while traffic runs: no failed request, no restart.

Redis: a user of its own on the shared server (``ACL SETUSER``, deleted after). PostgreSQL:
the shared server trusts every local connection, so a password would never be checked;
the test starts a server of its own that asks for one (``scram-sha-256``) and drops it after.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import infraboot
from infraboot import Credentials, FileCredentials, SystemInitializer

from .pg_cluster import PgServer, pg_binaries
from .servers import free_port

pytestmark = pytest.mark.real

CANARY = "canary"


def write(path: Path, text: str) -> None:
    """Replace *path* at once (write, then rename), as a secret mount or a Vault agent does."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def password() -> str:
    return f"{CANARY}-{secrets.token_hex(8)}"


async def traffic(work: object, seconds: float, workers: int = 8) -> tuple[int, list[BaseException]]:
    """Run *work* (an async callable) from *workers* tasks for *seconds*; the count and the failures."""
    done = 0
    failures: list[BaseException] = []
    end = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal done
        while time.monotonic() < end:
            try:
                await work()  # type: ignore[operator]
            except Exception as exc:
                failures.append(exc)
            done += 1

    await asyncio.gather(*(worker() for _ in range(workers)))
    return done, failures


# -- Redis -----------------------------------------------------------------------------------------


@pytest.fixture
async def redis_user(redis_url: str) -> AsyncIterator[tuple[str, str]]:
    """A Redis ACL user of this test's own (name, first password); deleted after."""
    import redis.asyncio as redis

    admin = redis.Redis.from_url(redis_url)
    name, first = f"ib-rotation-{secrets.token_hex(4)}", password()
    await admin.execute_command("ACL", "SETUSER", name, "on", f">{first}", "~*", "&*", "+@all")
    try:
        yield name, first
    finally:
        await admin.execute_command("ACL", "DELUSER", name)
        await admin.aclose()


async def test_redis_password_rotated_while_traffic_runs(
    redis_url: str, redis_user: tuple[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """ACL SETUSER resetpass, the connections killed, the file updated late: every command still succeeds."""
    import redis.asyncio as redis

    caplog.set_level(logging.DEBUG, logger="infraboot")
    name, current = redis_user
    path = tmp_path / "redis.json"
    write(path, f'{{"username": "{name}", "password": "{current}"}}')
    comp = infraboot.RedisComponent(settings={"url": redis_url, "credentials": FileCredentials(path, poll=0.05)})
    admin = redis.Redis.from_url(redis_url)
    used: list[str] = [current]
    async with SystemInitializer([comp], check_interval=None) as system:
        client = system.get_redis()

        async def work() -> None:
            await client.set("ib-rotation", "x")
            assert b"x" == await client.get("ib-rotation")

        async def rotate() -> None:
            for _ in range(3):
                await asyncio.sleep(0.8)  # rotations hours apart in production; here apart more than a login lasts
                new = password()
                await admin.execute_command("ACL", "SETUSER", name, "resetpass", f">{new}")
                await admin.execute_command("CLIENT", "KILL", "USER", name)  # new connections now need the new one
                await asyncio.sleep(0.05)  # the file lags behind the server, as a secret sync does
                write(path, f'{{"username": "{name}", "password": "{new}"}}')
                used.append(new)

        rotation = asyncio.ensure_future(rotate())
        done, failures = await traffic(work, 3.2)
        await rotation
        assert [] == failures
        assert done > 100
        assert 3 == caplog.text.count("credentials_rotated")
        health = await system.health(fresh=True)
        assert "pass" == health.status
        shown = [repr(system), repr(comp), str(health.to_dict(details=True)), system.report.render(), caplog.text]
        assert [] == [p for p in used if any(p in text for text in shown)]
    await admin.aclose()


async def test_redis_connections_roll_over_before_the_credentials_expire(
    redis_url: str, redis_user: tuple[str, str]
) -> None:
    """Credentials valid two seconds: pooled connections are reconnected before then, none fails."""
    name, current = redis_user

    async def short_lived() -> Credentials:
        return Credentials(name, current, time.time() + 2.0)

    comp = infraboot.RedisComponent(settings={"url": redis_url, "credentials": short_lived})
    async with SystemInitializer([comp], check_interval=None) as system:
        client = system.get_redis()
        ids: list[tuple[float, int]] = []
        t0 = time.monotonic()

        async def work() -> None:
            ids.append((time.monotonic() - t0, int(await client.execute_command("CLIENT", "ID"))))

        _, failures = await traffic(work, 4.0, workers=3)
        assert [] == failures
        early = {i for at, i in ids if at < 1.0}
        late = {i for at, i in ids if at > 3.0}
        assert early and late
        assert set() == early & late


# -- PostgreSQL ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def password_server() -> Iterator[PgServer]:
    """A PostgreSQL server of this module's own that checks passwords over TCP (scram-sha-256)."""
    bin_dir = pg_binaries()
    if bin_dir is None or (os.geteuid() == 0 and shutil.which("runuser") is None):
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL server tools (initdb, pg_ctl) are required under CI=true")
        pytest.skip("PostgreSQL server tools (initdb, pg_ctl) are not installed")
    workdir = Path(tempfile.mkdtemp(prefix="infraboot-rotation-"))
    workdir.chmod(0o777)
    server = PgServer(bin_dir, workdir / "data", free_port())
    try:
        server._run("initdb", "-D", str(server.data), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8")
        with (server.data / "postgresql.conf").open("a") as f:
            f.write(
                f"port = {server.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{workdir}'\n"
                "fsync = off\nsynchronous_commit = off\nshared_buffers = 16MB\nmax_connections = 60\n"
                "password_encryption = 'scram-sha-256'\n"
            )
        with (server.data / "pg_hba.conf").open("w") as f:  # truncated, not replaced: postgres keeps owning it
            f.write(
                "local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
            )
        server.start()
        yield server
    finally:
        with contextlib.suppress(Exception):
            server.stop("immediate")
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
async def pg_role(password_server: PgServer) -> AsyncIterator[tuple[str, str, object]]:
    """A login role of this test's own (name, first password, superuser connection); dropped after."""
    import asyncpg

    admin = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{password_server.port}/postgres")
    name, first = f"ib_rotation_{secrets.token_hex(4)}", password()
    await admin.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{first}'")
    try:
        yield name, first, admin
    finally:
        await admin.execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{name}'")
        await admin.execute(f"DROP ROLE IF EXISTS {name}")
        await admin.close()


async def test_database_password_rotated_while_traffic_runs(
    password_server: PgServer, pg_role: tuple[str, str, object], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """ALTER ROLE ... PASSWORD, the secret file updated late, new connections all the time: every query succeeds."""
    from sqlalchemy import text

    caplog.set_level(logging.DEBUG, logger="infraboot")
    name, current, admin = pg_role
    (tmp_path / "username").write_text(name)
    write(tmp_path / "password", current)
    url = f"postgresql+asyncpg://127.0.0.1:{password_server.port}/postgres"
    settings = {
        "url": url,
        "credentials": FileCredentials(tmp_path, poll=0.05),
        "pool_size": 4,
        "pool_recycle": 0.5,  # below a second: every checkout opens a new connection, so each one logs in
    }
    comp = infraboot.DatabaseComponent(settings=settings)
    used: list[str] = [current]
    async with SystemInitializer([comp], check_interval=None) as system:
        engine = system.get_engine()

        async def work() -> None:
            async with engine.connect() as conn:
                assert name == (await conn.execute(text("SELECT current_user"))).scalar()

        async def rotate() -> None:
            for _ in range(3):
                await asyncio.sleep(0.8)  # rotations hours apart in production; here apart more than a login lasts
                new = password()
                await admin.execute(f"ALTER ROLE {name} PASSWORD '{new}'")  # type: ignore[attr-defined]
                await asyncio.sleep(0.05)  # the file lags behind the server, as a secret sync does
                write(tmp_path / "password", new)
                used.append(new)

        rotation = asyncio.ensure_future(rotate())
        done, failures = await traffic(work, 3.2, workers=4)
        await rotation
        assert [] == failures
        assert done > 30
        assert 3 == caplog.text.count("credentials_rotated")
        health = await system.health(fresh=True)
        assert "pass" == health.status
        shown = [repr(system), repr(comp), str(health.to_dict(details=True)), system.report.render(), caplog.text]
        assert [] == [p for p in used if any(p in t for t in shown)]


async def test_database_connections_roll_over_before_the_credentials_expire(
    password_server: PgServer, pg_role: tuple[str, str, object]
) -> None:
    """Credentials valid two seconds: pooled connections are replaced before then, none fails."""
    from sqlalchemy import text

    name, current, _ = pg_role
    fetches = 0

    async def short_lived() -> Credentials:
        nonlocal fetches
        fetches += 1
        return Credentials(name, current, time.time() + 2.0)

    url = f"postgresql+asyncpg://127.0.0.1:{password_server.port}/postgres"
    comp = infraboot.DatabaseComponent(settings={"url": url, "credentials": short_lived, "pool_size": 3})
    async with SystemInitializer([comp], check_interval=None) as system:
        engine = system.get_engine()
        pids: list[tuple[float, int]] = []
        t0 = time.monotonic()

        async def work() -> None:
            async with engine.connect() as conn:
                pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar()
                pids.append((time.monotonic() - t0, int(pid or 0)))

        _, failures = await traffic(work, 4.0, workers=3)
        assert [] == failures
        early = {pid for at, pid in pids if at < 1.0}
        late = {pid for at, pid in pids if at > 3.0}
        assert early and late
        assert set() == early & late  # every connection of the first second was replaced
        assert fetches >= 2


async def test_rds_iam_tokens_reach_the_database_as_the_password(
    password_server: PgServer, pg_role: tuple[str, str, object]
) -> None:
    """RdsIamCredentials (a stub signer standing in for boto3) logs every new connection in."""
    from sqlalchemy import text

    name, current, _ = pg_role
    signed: list[str] = []

    def signer(host: str, port: int, user: str, region: str | None) -> str:
        signed.append(f"{host}:{port}:{user}")
        return current  # the server's password stands in for the token AWS would check

    source = infraboot.RdsIamCredentials("127.0.0.1", password_server.port, name, signer=signer)
    url = f"postgresql+asyncpg://127.0.0.1:{password_server.port}/postgres"
    comp = infraboot.DatabaseComponent(settings={"url": url, "credentials": source})
    async with SystemInitializer([comp], check_interval=None) as system, system.get_engine().connect() as conn:
        assert name == (await conn.execute(text("SELECT current_user"))).scalar()
    assert [f"127.0.0.1:{password_server.port}:{name}"] == signed
