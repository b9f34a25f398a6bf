"""The service's own tests: its registrations survive, writes roll back between tests, Redis can fail."""

from __future__ import annotations

import httpx
import pytest

import infraboot
from infraboot.testing import TcpProxy

pytestmark = pytest.mark.anyio


async def test_components_the_app_registers_are_there_in_every_test() -> None:
    """The plugin's reset keeps what the app registered at import time."""
    assert {"redis", "database", "audit"} <= set(infraboot.default_system().components)


async def test_a_note_is_written_through_the_test_transaction(client: httpx.AsyncClient) -> None:
    """The app commits; the note and its audit row are visible inside the test."""
    created = await client.post("/notes", params={"body": "hello"})
    counts = (await client.get("/notes/count")).json()
    assert 200 == created.status_code
    assert {"notes": 1, "audits": 1} == counts


async def test_the_previous_tests_note_is_gone(client: httpx.AsyncClient) -> None:
    """Everything the last test wrote was rolled back at its end."""
    assert {"notes": 0, "audits": 0} == (await client.get("/notes/count")).json()


async def test_a_redis_outage_takes_the_degraded_path_and_heals(
    client: httpx.AsyncClient, redis_proxy: TcpProxy
) -> None:
    """Redis blackholed: readiness warns, /visits answers without a count; restored: counting again."""
    assert isinstance((await client.get("/visits")).json()["visits"], int)
    redis_proxy.blackhole()
    health = await infraboot.health(fresh=True)
    degraded = (await client.get("/visits")).json()
    redis_proxy.restore()
    back = await infraboot.default_system().wait_ready(["redis"], timeout=10)
    after = (await client.get("/visits")).json()

    assert ("warn", {"visits": None}) == (health.status, degraded)
    assert back
    assert isinstance(after["visits"], int)
