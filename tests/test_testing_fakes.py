"""infraboot.testing's fakes for named instances and an app's own components, and the infraboot_fake fixture."""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI
from sqlalchemy import text

import infraboot
import infraboot.fastapi as ib
import infraboot.testing
from infraboot import ConfigError, UnknownComponentError
from infraboot.testing import Fakes

UNREACHABLE = "redis://:canary-pw-5150@10.255.255.1:6379/0"  # never dialled: the fakes replace the URL


class FakePool:
    async def fetchval(self, query: str) -> int:
        return 1


def _system() -> infraboot.SystemInitializer:
    cache = {"url": UNREACHABLE, "required": False, "client_options": {"decode_responses": True}}
    reports = {
        "url": "postgresql+asyncpg://app:canary-pw-5150@10.255.255.1/app",
        "session_options": {"autoflush": False},
    }

    @infraboot.component("pg_pool", kind="datastore", timeout=0.5, retries=0)
    async def pg_pool(ctx: infraboot.Context) -> AsyncIterator[Any]:
        raise ConnectionRefusedError("a real pool would connect here")
        yield  # pragma: no cover

    return infraboot.SystemInitializer(
        [
            infraboot.RedisComponent("cache", settings=cache),
            infraboot.DatabaseComponent("reports", settings=reports),
            pg_pool,
        ],
        check_interval=None,
    )


async def test_fake_redis_starts_a_named_instance_with_the_apps_client_options() -> None:
    """A named Redis on a fresh fake: the app's decode_responses holds, its URL is never dialled."""
    system = _system()
    async with infraboot.testing.fake_redis("cache", system=system) as cache:
        await cache.set("k", "v")
        assert "v" == await system.get_redis("cache").get("k")  # str: decode_responses=True kept
        assert "ready" == system.state("cache").value
        async with infraboot.testing.fake_redis("cache", system=_system()) as other:
            assert None is await other.get("k")  # a server of its own
    assert "stopped" == system.state("cache").value
    assert UNREACHABLE == system.components["cache"].given_fields()["url"]  # the app's settings are back


async def test_an_outage_of_a_faked_named_redis() -> None:
    """outage() reaches a faked named instance: its commands are refused inside the block."""
    system = _system()
    async with infraboot.testing.fake_redis("cache", system=system) as cache:
        with infraboot.set_testing():
            async with infraboot.testing.outage("cache", system=system):
                with pytest.raises(infraboot.ComponentUnavailableError):
                    system.get_redis("cache")
        assert True is await cache.ping()


async def test_fake_database_keeps_the_apps_session_options() -> None:
    """A named database on SQLite in memory; system.get_session(name) takes the session_options the app gave."""
    system = _system()
    async with infraboot.testing.fake_database("reports", system=system) as engine:
        async with engine.begin() as conn:
            await conn.execute(text("create table t (x int)"))
        async with system.get_session("reports") as session:
            assert session.autoflush is False
            await session.execute(text("insert into t values (1)"))
        async with system.get_session("reports") as session:
            assert 1 == (await session.execute(text("select count(*) from t"))).scalar_one()


async def test_fake_component_stands_in_for_an_apps_own_component() -> None:
    """A start yields the stand-in without I/O, health is ready, get() returns it; after the block the
    component is itself again."""
    system = _system()
    pool = FakePool()
    with infraboot.testing.fake_component("pg_pool", pool, system=system) as given:
        assert given is pool
        await system.ensure_initialized(["pg_pool"])
        assert pool is system.get("pg_pool")
        assert "pass" == (await system.readiness()).status
        await system.stop(["pg_pool"])
    with infraboot.set_testing(), pytest.raises(infraboot.StartupError, match="pg_pool"):
        await system.ensure_initialized(["pg_pool"])


async def test_a_fake_of_the_wrong_kind_names_the_right_one() -> None:
    """fake_redis on a component of the app's own is a ConfigError pointing at fake_component; an unknown
    name is the system's UnknownComponentError with its did-you-mean."""
    system = _system()
    with pytest.raises(ConfigError, match=r"fake_component\('pg_pool', resource\)"):
        async with infraboot.testing.fake_redis("pg_pool", system=system):
            pass
    with (
        pytest.raises(UnknownComponentError, match="pg_pool"),
        infraboot.testing.fake_component("pg_pol", 1, system=system),
    ):
        pass


async def test_fake_database_without_aiosqlite_says_which_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without aiosqlite the fake names the extra to install, where the user meets it."""
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "aiosqlite" else real(name, *a))
    with pytest.raises(ConfigError, match=r'pip install "infraboot\[testing\]"'):
        async with infraboot.testing.fake_database("reports", system=_system()):
            pass


async def test_the_infraboot_fake_fixture(infraboot_fake: Fakes) -> None:
    """The fixture fakes named instances and own components of the default system, undone after the test."""
    infraboot.register(infraboot.RedisComponent("sessions", settings={"url": UNREACHABLE}))
    infraboot.register(infraboot.Component("mailer"))
    client = await infraboot_fake.redis("sessions")
    await client.set("a", "1")
    assert b"1" == await infraboot.get_redis("sessions").get("a")
    outbox = infraboot_fake.component("mailer", ["outbox"])
    await infraboot.ensure_initialized(["mailer"])
    assert outbox is infraboot.get("mailer")


def create_app(cache_url: str) -> FastAPI:
    """An app factory as the ports write it: configures the default system, registers a named Redis."""
    infraboot.configure(redis={"url": UNREACHABLE})
    cache = {"url": cache_url, "client_options": {"decode_responses": True}}
    infraboot.register(infraboot.RedisComponent("cache", settings=cache), replace=True)
    app = FastAPI(lifespan=ib.lifespan(["redis", "cache"]))
    app.include_router(ib.health_router())

    @app.get("/hits")
    async def hits(cache: Annotated[Any, Depends(ib.redis_client_for("cache"))]) -> int:
        return int(await cache.incr("hits"))

    return app


async def test_build_the_app_then_fake_then_run_its_lifespan(infraboot_fake: Fakes, infraboot_lifespan: Any) -> None:
    """The factory's components are faked after it ran; the lifespan starts around the fakes and serves them."""
    import httpx

    app = create_app(UNREACHABLE)
    await infraboot_fake.redis("redis")
    cache = await infraboot_fake.redis("cache")
    await infraboot_lifespan(app)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        assert [1, 2] == [(await client.get("/hits")).json() for _ in range(2)]
        assert 200 == (await client.get("/readyz")).status_code
    assert "2" == await cache.get("hits")
