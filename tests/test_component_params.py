"""A generator component that takes parameters after ctx: called with them, it is the component to register."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

import infraboot
from infraboot import ConfigError, SystemInitializer


@dataclass
class Settings:
    dsn: str
    size: int = 2


@infraboot.component("pool", kind="datastore", timeout=3.0, required=False)
async def pool(ctx: infraboot.Context, settings: Settings, *, label: str = "bulk") -> AsyncIterator[str]:
    yield f"{label}:{settings.dsn}:{settings.size}"


async def test_the_component_called_with_settings_hands_them_to_the_generator() -> None:
    """pool(settings) starts with those settings; the name and the component's options are the decorator's."""
    bound = pool(Settings("db-a"), label="reports")
    async with SystemInitializer([bound]) as system:
        assert "reports:db-a:2" == system.get("pool")
    assert ("pool", "datastore", 3.0, False) == (bound.name, bound.kind, bound.timeout, bound.required)


async def test_each_call_is_a_component_of_its_own() -> None:
    """Two apps built with different settings get their own components; the decorated one stays unbound."""
    first, second = pool(Settings("db-a")), pool(Settings("db-b", size=5))
    async with SystemInitializer([second]) as system:
        assert "bulk:db-b:5" == system.get("pool")
    assert first is not second and first is not pool


async def test_registered_without_its_settings_it_names_the_call_to_write() -> None:
    """The unbound component fails before any I/O with a ConfigError that shows infraboot.register(pool(settings))."""
    system = SystemInitializer([pool])
    with pytest.raises(ConfigError, match=r"takes settings beside ctx.*infraboot\.register\(pool\(settings\)\)"):
        await system.ensure_initialized()
    await system.shutdown()


def test_wrong_arguments_are_refused_at_the_call() -> None:
    """Arguments the generator cannot take are a ConfigError naming the component, when it is called."""
    with pytest.raises(ConfigError, match=r"component 'pool': pool\(ctx, \.\.\.\) cannot take these arguments"):
        pool(Settings("db-a"), colour="red")
    with pytest.raises(ConfigError, match="missing a required argument: 'settings'"):
        pool()


async def test_a_generator_of_ctx_alone_is_registered_as_before() -> None:
    """The ordinary form is unchanged: the decorated generator is the component."""

    @infraboot.component("plain")
    async def plain(ctx: infraboot.Context, greeting: str = "hi") -> AsyncIterator[str]:
        yield greeting

    async with SystemInitializer([plain]) as system:
        assert "hi" == system.get("plain")


async def test_the_operators_switches_apply_to_a_bound_component(monkeypatch: pytest.MonkeyPatch) -> None:
    """POOL_ENABLED=false disables the bound component as it does any other."""
    monkeypatch.setenv("POOL_ENABLED", "false")
    async with SystemInitializer([pool(Settings("db-a"))]) as system:
        assert infraboot.ComponentState.DISABLED == system.state("pool")


async def test_a_generator_whose_ctx_has_a_default_is_registered_as_it_is() -> None:
    """``async def f(ctx=None)`` can be called with ctx alone: it starts (it used to be refused as taking
    parameters "beside ctx", with an empty list of them)."""

    @infraboot.component("defaulted")
    async def defaulted(ctx: infraboot.Context | None = None) -> AsyncIterator[str]:
        yield "up" if ctx is not None else "no ctx"

    async with SystemInitializer([defaulted]) as system:
        assert "up" == system.get("defaulted")
