"""A cache made before its system: ``system=`` a function, looked up when the cache is used."""

from __future__ import annotations

import pytest

from infraboot import ConfigError, NotInitializedError, RedisComponent, RedisSettings, SystemInitializer
from infraboot.cache import Cache, cached

_app: dict[str, SystemInitializer] = {}  # what an app factory fills in, long after the decorators ran


@cached(ttl=60, key="item:{n}", namespace="t-late", system=lambda: _app.get("system"))
async def item(n: int) -> int:
    return n * 10


def _system() -> SystemInitializer:
    return SystemInitializer([RedisComponent(RedisSettings(url="memory://"))], check_interval=None)


async def test_a_cached_function_made_at_import_serves_the_system_built_later() -> None:
    """The decorator ran at import; once the factory built and started the system, values land in its Redis."""
    system = _app["system"] = _system()
    try:
        await system.initialize_all()
        assert 70 == await item(7)
        assert b"" != await system.get("redis").get("t-late:v1:item:7")
        assert "up" == item.cache.stats()["l2_state"]
    finally:
        del _app["system"]
        await system.shutdown()


async def test_used_before_its_system_exists_it_names_the_fix() -> None:
    """Before the factory ran, a call raises NotInitializedError saying what to build; stats still answer."""
    assert "unbound" == item.cache.stats()["l2_state"]
    with pytest.raises(NotInitializedError, match=r"before its system exists.*build the system first"):
        await item(1)
    with pytest.raises(NotInitializedError, match="returned None"):
        await item.cache.delete("item:1")


async def test_the_cache_follows_a_new_system() -> None:
    """A second app (a test building it again) gets its own Redis: nothing of the first one's is served."""
    first, second = _system(), _system()
    cache = Cache("t-late-follow", system=lambda: _app.get("system"))
    for system in (first, second):
        _app["system"] = system
        await system.initialize_all()
        try:
            assert None is await system.get("redis").get("t-late-follow:v1:k")
            cache.reset_local()  # what the pytest plugin does between tests
            assert None is await cache.get("k")
            await cache.set("k", system is first)
            assert b"" != await system.get("redis").get("t-late-follow:v1:k")
        finally:
            del _app["system"]
            await system.shutdown()


def test_a_system_that_is_neither_is_a_config_error() -> None:
    """system= takes a SystemInitializer, a function returning one, or None."""
    with pytest.raises(ConfigError, match="system=42 must be a SystemInitializer, a function returning one"):
        Cache("t-late-bad", system=42)  # type: ignore[arg-type]


async def test_a_function_returning_something_else_is_a_type_error() -> None:
    """A system= function must return the system (or None while there is none)."""
    cache = Cache("t-late-bad", system=lambda: "system")  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match="returned str; it must return a SystemInitializer"):
        await cache.get("k")
