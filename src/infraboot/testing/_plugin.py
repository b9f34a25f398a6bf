"""The pytest plugin (entry point ``pytest11``): fixtures for testing applications that use infraboot.

Loaded automatically wherever infraboot is installed. Every test gets a fresh default
system (autouse ``infraboot_reset``); the async fixtures need pytest-asyncio.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from infraboot._default import default_system, reset_default_system
from infraboot._retry import set_testing

from ._kit import fake_env, lifespan
from ._override import override

__all__ = [
    "fake_database",
    "fake_redis",
    "infraboot_lifespan",
    "infraboot_override",
    "infraboot_reset",
    "infraboot_system",
]


@pytest.fixture(autouse=True)
def infraboot_reset() -> Iterator[None]:
    """Give every test a fresh default system and put the previous one back afterwards.

    Components a test started and did not shut down are forgotten (their event loop is
    gone by now), so no state, override or loop-bound object reaches the next test.
    """
    previous = reset_default_system(None)
    try:
        yield
    finally:
        leftover = reset_default_system(previous)
        if leftover is not None:
            leftover.forget()


@pytest.fixture
def infraboot_override() -> Iterator[Callable[..., Any]]:
    """``infraboot_override("redis", fake)``: replace a resource until the end of the test."""
    with contextlib.ExitStack() as stack:

        def apply(name: str, resource: Any, **kwargs: Any) -> Any:
            return stack.enter_context(override(name, resource, **kwargs))

        yield apply


try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - the async fixtures need pytest-asyncio
    pass
else:

    @pytest_asyncio.fixture
    async def infraboot_system() -> AsyncIterator[Any]:
        """The default system of this test, in testing mode (no backoff), shut down at the end."""
        system = default_system()
        with set_testing(attempts=1):
            try:
                yield system
            finally:
                await system.shutdown()

    @pytest_asyncio.fixture
    async def fake_redis(infraboot_system: Any) -> AsyncIterator[Any]:
        """A started ``redis`` component on a fresh fakeredis server: no keys shared with any other test.

        ``infraboot.get_redis()`` returns this client for the whole test.
        """
        with fake_env(redis=True):
            await infraboot_system.ensure_initialized(["redis"])
            yield infraboot_system.get("redis")
            await infraboot_system.stop(["redis"])

    @pytest_asyncio.fixture
    async def fake_database(infraboot_system: Any) -> AsyncIterator[Any]:
        """A started ``database`` component on SQLite in memory; tables are shared across the test's sessions.

        Yields the ``AsyncEngine``; ``infraboot.get_session()`` works for the whole test.
        """
        with fake_env(database=True):
            await infraboot_system.ensure_initialized(["database"])
            yield infraboot_system.get("database")
            await infraboot_system.stop(["database"])

    @pytest_asyncio.fixture
    async def infraboot_lifespan() -> AsyncIterator[Callable[[Any], Any]]:
        """``state = await infraboot_lifespan(app)``: run an ASGI app's lifespan until the end of the test."""
        async with contextlib.AsyncExitStack() as stack:

            async def run(app: Any) -> Any:
                return await stack.enter_async_context(lifespan(app))

            yield run
