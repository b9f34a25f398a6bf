"""pytest-asyncio in strict mode: marked tests get the fixtures in their own loop, whatever its scope."""

from __future__ import annotations

import asyncio

import pytest

import infraboot
import infraboot.testing

LOOPS: list[asyncio.AbstractEventLoop] = []


@pytest.mark.asyncio
async def test_marked_test_gets_a_fake_redis(fake_redis: object) -> None:
    assert await infraboot.get_redis().ping()


def test_sync_test_gets_a_fake_database(fake_database: object) -> None:
    assert infraboot.ComponentState.READY == infraboot.state("database")


@pytest.mark.asyncio(loop_scope="module")
async def test_module_loop_leaves_redis_running(fake_redis: object) -> None:
    LOOPS.append(asyncio.get_running_loop())
    with infraboot.testing.fake_env(database=True):
        await infraboot.ensure_initialized(["database"])  # left running: shut down in this module loop


@pytest.mark.asyncio(loop_scope="module")
async def test_module_loop_is_shared_and_clean() -> None:
    assert [asyncio.get_running_loop()] == LOOPS
    assert infraboot.ComponentState.PENDING == infraboot.state("database")


async def test_unmarked_async_test_is_told_what_to_do(fake_redis: object) -> None:
    pass
