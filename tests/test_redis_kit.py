"""The Redis test kit: a Redis database of its own per test, flushed, the default ``redis`` pointed at it."""

from __future__ import annotations

import pytest

import infraboot
from infraboot.testing._redis_db import _db_of

pytestmark = pytest.mark.real


@pytest.fixture
def infraboot_redis_dbs(real_redis: tuple[str, str, int], monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """This suite's Redis (skipped when unreachable, its database only); the kit reads INFRABOOT_TEST_REDIS_URL."""
    monkeypatch.setenv("INFRABOOT_TEST_REDIS_URL", real_redis[0])
    return [_db_of(real_redis[0])]


@pytest.mark.parametrize("run", [1, 2])
async def test_a_fixed_key_starts_empty_in_every_test(run: int, infraboot_redis_url: str) -> None:
    """An app's fixed key (no per-test suffix) counts from zero in each test: the database is the test's alone."""
    await infraboot.ensure_initialized(["redis"])
    try:
        value = await infraboot.get_redis().incr("app:rollups")
        keys = await infraboot.get_redis().keys("*")
    finally:
        await infraboot.shutdown()
    assert 1 == value
    assert {b"app:rollups", b"infraboot:test-lock"} == set(keys)


async def test_an_app_factory_configuring_redis_after_the_fixture_keeps_the_test_database(
    infraboot_redis_url: str,
) -> None:
    """configure(redis=...) after the fixture: the app's client_options apply, the URL stays the test's."""
    app_settings = {"url": "redis://production.invalid:6379/0", "client_options": {"decode_responses": True}}
    infraboot.configure(redis=app_settings)
    await infraboot.ensure_initialized(["redis"])
    try:
        await infraboot.get_redis().set("greeting", "hi")
        value = await infraboot.get_redis().get("greeting")
    finally:
        await infraboot.shutdown()
    assert "hi" == value  # a str: decode_responses=True came through


def test_a_bad_database_list_names_the_form() -> None:
    """The ini option's form is named when it does not parse."""
    from infraboot.testing._redis_db import _parse

    with pytest.raises(pytest.UsageError, match="1-15"):
        _parse("one")
    assert [1, 2, 3, 7] == _parse("1-3, 7")
