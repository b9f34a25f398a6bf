"""The async fixtures with no async test runner installed: one clear error."""

from __future__ import annotations


def test_sync_test_with_an_async_fixture(fake_redis: object) -> None:
    pass


async def test_async_test_with_an_async_fixture(fake_redis: object) -> None:
    pass
