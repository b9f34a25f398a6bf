"""The test kit: fixtures, fakes, overrides, outages and the lifespan runner."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import infraboot
import infraboot.testing
from infraboot import ComponentState, ComponentUnavailableError

ROOT = Path(__file__).parent.parent


async def test_fake_redis_is_the_default_systems_redis(fake_redis: Any) -> None:
    """Inside the fixture, get_redis() is the fake, and it starts empty."""
    assert [] == await fake_redis.keys("*")
    await infraboot.get_redis().set("k", "v")
    assert b"v" == await fake_redis.get("k")


async def test_fake_redis_is_fresh_for_every_test(fake_redis: Any) -> None:
    """The key written by the previous test is not here."""
    assert None is await fake_redis.get("k")


async def test_fake_database_shares_tables_across_sessions(fake_database: Any) -> None:
    """A table created in one session is there in the next one, all in memory."""
    from sqlalchemy import text

    async with infraboot.get_session() as session:
        await session.execute(text("CREATE TABLE t (x INTEGER)"))
        await session.execute(text("INSERT INTO t VALUES (1)"))
    async with infraboot.get_session() as session:
        assert 1 == (await session.execute(text("SELECT COUNT(*) FROM t"))).scalar_one()


async def test_override_fixture_restores_at_the_end(infraboot_override: Any, fake_redis: Any) -> None:
    """infraboot_override replaces the resource for the test."""
    infraboot_override("redis", "replacement")
    assert "replacement" == infraboot.get("redis")


def test_override_restores_when_the_block_raises() -> None:
    """The original comes back even when the block fails."""

    @infraboot.component("thing")
    async def thing(ctx: infraboot.Context) -> AsyncIterator[str]:
        yield "real"

    infraboot.register(thing)
    with pytest.raises(RuntimeError), infraboot.testing.override("thing", "fake"):
        assert "fake" == infraboot.get("thing")
        raise RuntimeError
    with pytest.raises(infraboot.NotInitializedError):
        infraboot.get("thing")


async def test_outage_takes_an_optional_component_down_and_back(fake_redis: Any, monkeypatch: Any) -> None:
    """Inside outage(): get() raises ComponentUnavailableError and the fake refuses; after it, all works."""
    system = infraboot.default_system()
    system.components["redis"].required = False
    async with infraboot.testing.outage("redis"):
        state = system.state("redis")
        with pytest.raises(ComponentUnavailableError):
            infraboot.get_redis()
        readiness = await infraboot.readiness()
    assert (ComponentState.UNHEALTHY, "warn") == (state, readiness.status)
    assert await infraboot.get_redis().ping()


async def test_outage_of_a_required_component_fails_readiness(fake_redis: Any) -> None:
    """A required component in an outage makes readiness fail; afterwards it passes again."""
    async with infraboot.testing.outage("redis"):
        during = await infraboot.readiness()
    after = await infraboot.health(fresh=True)
    assert ("fail", "pass") == (during.status, after.status)


async def test_lifespan_runner_starts_and_stops_an_asgi_app(
    infraboot_lifespan: infraboot.testing.LifespanRunner,
) -> None:
    """The lifespan fixture runs startup now and shutdown at the end of the test."""
    pytest.importorskip("starlette")
    from starlette.applications import Starlette

    import infraboot.starlette

    @infraboot.component("thing")
    async def thing(ctx: infraboot.Context) -> AsyncIterator[str]:
        yield "T"

    infraboot.register(thing)
    state = await infraboot_lifespan(Starlette(lifespan=infraboot.starlette.lifespan(["thing"])))
    assert "infraboot" in state
    assert "T" == infraboot.get("thing")


async def test_lifespan_runner_raises_on_a_failed_startup() -> None:
    """A required failure in the app's lifespan raises its StartupError (a RuntimeError), not the server's traceback."""
    pytest.importorskip("starlette")
    from starlette.applications import Starlette

    import infraboot.starlette

    @infraboot.component("broken")
    async def broken(ctx: infraboot.Context) -> AsyncIterator[str]:
        raise ConnectionRefusedError("no")
        yield "never"

    infraboot.register(broken)
    with infraboot.set_testing(), pytest.raises(infraboot.StartupError, match="broken") as info:
        async with infraboot.testing.lifespan(Starlette(lifespan=infraboot.starlette.lifespan(["broken"]))):
            pass
    assert "Traceback" not in str(info.value)
    assert "broken" == info.value.component


def test_fake_env_restores_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """fake_env sets the URLs inside the block and puts the old values back."""
    monkeypatch.setenv("REDIS_URL", "redis://elsewhere:6379/0")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with infraboot.testing.fake_env(redis=True, database=True) as values:
        inside = (os.environ["REDIS_URL"], os.environ["DATABASE_URL"])
    assert inside == (values["REDIS_URL"], values["DATABASE_URL"])
    assert ("redis://elsewhere:6379/0", None) == (os.environ["REDIS_URL"], os.environ.get("DATABASE_URL"))


def test_the_plugin_isolates_an_applications_tests(tmp_path: Path) -> None:
    """Run through pytest as a user would: two tests see neither each other's keys nor each other's state."""
    (tmp_path / "test_app.py").write_text(
        "import infraboot\n"
        "async def test_one(fake_redis):\n"
        "    await infraboot.get_redis().set('shared', '1')\n"
        "    infraboot.register(infraboot.Component('extra'))\n"
        "async def test_two(fake_redis):\n"
        "    assert None is await infraboot.get_redis().get('shared')\n"
        "    assert 'extra' not in infraboot.default_system().components\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "DATABASE_"))}
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "asyncio_mode=auto", str(tmp_path)],
        check=False,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert 0 == out.returncode, out.stdout + out.stderr
    assert "2 passed" in out.stdout


def subset_app() -> Any:
    """A Starlette app whose infraboot lifespan starts ``thing`` and ``other``."""
    pytest.importorskip("starlette")
    from starlette.applications import Starlette

    import infraboot.starlette

    for name in ("thing", "other"):

        @infraboot.component(name)
        async def comp(ctx: infraboot.Context) -> AsyncIterator[str]:
            yield ctx.component

        infraboot.register(comp)
    return Starlette(lifespan=infraboot.starlette.lifespan(["thing", "other"]))


async def test_lifespan_starts_only_the_components_named() -> None:
    """lifespan(app, components=[...]) starts those instead of the app's list; later starts are not restricted."""
    async with infraboot.testing.lifespan(subset_app(), components=["thing"]):
        states = (infraboot.state("thing"), infraboot.state("other"))
        await infraboot.ensure_initialized(["other"])
        later = infraboot.state("other")
    assert (ComponentState.READY, ComponentState.PENDING, ComponentState.READY) == (*states, later)


async def test_lifespan_fixture_starts_a_subset(infraboot_lifespan: infraboot.testing.LifespanRunner) -> None:
    """The fixture takes the same components=[...]."""
    await infraboot_lifespan(subset_app(), components=["other"])
    assert (ComponentState.PENDING, "other") == (infraboot.state("thing"), infraboot.get("other"))


async def test_lifespan_without_components_starts_the_apps_list() -> None:
    """Without components, the app's own list is started."""
    async with infraboot.testing.lifespan(subset_app()):
        assert ComponentState.READY == infraboot.state("other")


async def test_lifespan_components_must_be_a_list() -> None:
    """A bare string is a mistake, named with the fix."""
    with pytest.raises(infraboot.ConfigError, match=r"components=\['redis'\]"):
        async with infraboot.testing.lifespan(object(), components="redis"):
            pass


def test_testing_mode_set_in_a_test_is_switched_back_after_it() -> None:
    """A test may leave set_testing() on; the reset switches it back (checked by the next test)."""
    infraboot.set_testing(attempts=7)


def test_testing_mode_is_off_again() -> None:
    """The previous test's set_testing() ended with it."""
    from infraboot._engine._retry import is_testing

    assert not is_testing()


LEFT_OPEN: list[object] = []


def test_an_override_left_open_is_undone_after_the_test() -> None:
    """An override entered and never exited ends with the test."""
    infraboot.register(infraboot.Component("kept"))
    block = infraboot.testing.override("kept", "fake")
    block.__enter__()
    assert "<infraboot.testing.override 'kept' -> 'fake' (open)>" == repr(block)
    LEFT_OPEN.append(block)


def test_the_override_of_the_previous_test_is_closed() -> None:
    """Closed by the reset, so it holds no system of a finished test."""
    block = LEFT_OPEN.pop()
    assert "<infraboot.testing.override 'kept' -> 'fake' (closed)>" == repr(block)
