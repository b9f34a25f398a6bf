"""The redis component behind Redis Sentinel: a real master, replica and three sentinels this test owns."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import infraboot
from infraboot import RedisSettings, StartupError, SystemInitializer
from infraboot._components._redis import RedisComponent
from infraboot._components._redis_topology import topology_details

from .redis_topology import SentinelGroup
from .servers import free_port

pytestmark = [pytest.mark.real, pytest.mark.topology]

CANARY = "s3cr3t-canary"
SENTINEL_CANARY = "s3nt1nel-canary"


@pytest.fixture
def group(tmp_path: Path) -> Iterator[SentinelGroup]:
    g = SentinelGroup(tmp_path, password=CANARY, sentinel_password=SENTINEL_CANARY)
    try:
        yield g
    finally:
        g.close()


async def write_until_ok(key: str, value: str, timeout: float) -> float:
    """Seconds until a write through get_redis() succeeds (every failure retried at once)."""
    t0 = time.monotonic()
    while True:
        try:
            await infraboot.get_redis().set(key, value)
            return time.monotonic() - t0
        except Exception:
            if time.monotonic() - t0 > timeout:
                raise
            await asyncio.sleep(0.05)


async def master_after(old: int, timeout: float) -> str:
    """The master the readiness probe reports once it is not *old* any more."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        report = await infraboot.health(fresh=True)
        try:  # unavailable while infraboot recovers it (a new client, same process)
            details = topology_details(infraboot.get_redis()) or {}
        except infraboot.ComponentUnavailableError:
            details = {}
        master = details.get("master")
        if report.status == "pass" and master and not str(master).endswith(f":{old}"):
            return str(master)
        await asyncio.sleep(0.1)
    msg = f"readiness still names port {old} after {timeout}s"
    raise AssertionError(msg)


async def test_writes_follow_a_failover_and_a_killed_master_and_readiness_fails_without_one(
    group: SentinelGroup, clean_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """SENTINEL FAILOVER and a killed master: writes through get_redis() succeed again without a restart,
    readiness names the new master, fails while no master is known, and no password shows anywhere."""
    caplog.set_level(logging.DEBUG, logger="infraboot")
    clean_env.setenv("REDIS_URL", group.url())
    clean_env.setenv("REDIS_SENTINEL_PASSWORD", SENTINEL_CANARY)
    try:
        await infraboot.ensure_initialized(["redis"])
        client = infraboot.get_redis()
        await client.set("k", "0")
        first = group.master_port()
        assert first is not None
        report = await infraboot.health(fresh=True)
        assert "pass" == report.status
        assert {"topology": "sentinel", "service": "mymaster", "master": f"127.0.0.1:{first}", "sentinels": 3} == dict(
            topology_details(client) or {}
        )
        assert (
            report.to_dict(details=True)["checks"]["redis:responseTime"][0]["details"]["master"] == f"127.0.0.1:{first}"
        )

        group.failover()
        await master_after(first, timeout=15.0)
        assert await write_until_ok("k", "1", timeout=5.0) < 5.0  # writes work again at once
        # Mid-failover a write may still land on the old master (Sentinel's own window): once it is
        # demoted, a write through the same client reaches the new master (an idle connection to the
        # old one answers READONLY and is replaced).
        second = await asyncio.to_thread(group.converged, first)
        assert await write_until_ok("k", "1b", timeout=5.0) < 5.0
        with group.node(second) as node:
            assert b"1b" == node.get("k")

        group.kill(second)
        t0 = time.monotonic()
        assert await write_until_ok("k", "2", timeout=25.0) < 25.0
        assert time.monotonic() - t0 < 25.0
        third = await master_after(second, timeout=15.0)
        assert third == f"127.0.0.1:{first}"  # the old master, promoted back

        group.kill(first)  # no node left to promote
        t0 = time.monotonic()
        while (await infraboot.health(fresh=True)).status != "fail":
            assert time.monotonic() - t0 < 15.0, "readiness kept passing with no master"
            await asyncio.sleep(0.1)
        report = await infraboot.health(fresh=True)
        body = str(report.to_dict(details=True))
        assert "fail" == report.status
        assert CANARY not in body and SENTINEL_CANARY not in body
        assert CANARY not in repr(client) and SENTINEL_CANARY not in repr(client)
    finally:
        await infraboot.shutdown()
    assert not [r for r in caplog.records if CANARY in r.getMessage() or SENTINEL_CANARY in r.getMessage()]
    assert [] == [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("infraboot-")]
    assert [0, 0, 0] == own_sentinel_connections(group)


async def test_a_start_with_no_sentinel_reachable_fails_and_names_no_secret(clean_env: pytest.MonkeyPatch) -> None:
    """With every sentinel refusing, the start fails within its bound and the error carries no password."""
    url = f"redis+sentinel://:{CANARY}@127.0.0.1:{free_port()},127.0.0.1:{free_port()}/mymaster/0"
    comp = RedisComponent(RedisSettings(url=url, connect_timeout=1.0, max_retries=0))
    t0 = time.monotonic()
    with pytest.raises(StartupError) as caught:
        await SystemInitializer([comp]).initialize_all()
    assert time.monotonic() - t0 < 10.0
    assert CANARY not in str(caught.value)
    assert CANARY not in repr(comp.settings)


async def test_a_wrong_sentinel_password_is_an_auth_error_on_one_line_and_not_retried(group: SentinelGroup) -> None:
    """Sentinels refusing the sentinel password: code auth, one attempt, one short line without a secret or a repr."""
    wrong = "wr0ng-sentinel-canary"
    settings = RedisSettings(url=group.url(), sentinel_password=wrong, connect_timeout=1.0, max_retries=3)
    with pytest.raises(StartupError) as caught:
        await SystemInitializer([RedisComponent(settings)]).initialize_all()
    result = caught.value.report.components["redis"]
    message = str(caught.value)

    assert ("auth", 1) == (result.error_code, result.attempts)
    assert result.error is not None and result.error.startswith("AuthenticationError: 3 of 3 sentinels refused")
    assert 1 == len(message.splitlines())
    assert len(message) < 500
    assert [] == [s for s in (wrong, CANARY, SENTINEL_CANARY, "<redis.") if s in message]


def own_sentinel_connections(group: SentinelGroup) -> list[int]:
    """Per sentinel, the client connections that are neither a peer sentinel's (named) nor this probe."""
    counts = []
    for index in range(len(group.sentinels)):
        with group.sentinel(index) as sentinel:
            clients = sentinel.client_list()
        counts.append(sum(1 for c in clients if not c.get("name") and c.get("cmd") != "client|list"))
    return counts


async def test_a_service_name_typo_is_a_config_error_and_shutdown_leaves_no_task_or_connection(
    group: SentinelGroup,
) -> None:
    """A service no sentinel monitors: code config, named in the error; after shutdown() no task and no sentinel
    connection of ours is left."""
    url = group.url().replace("/mymaster/", "/mymastr/")
    settings = RedisSettings(url=url, sentinel_password=SENTINEL_CANARY, connect_timeout=1.0, required=False)
    system = SystemInitializer([RedisComponent(settings)], check_interval=None)
    report = await system.initialize_all()
    await system.shutdown()
    result = report.components["redis"]
    tasks = sorted(t.get_name() for t in asyncio.all_tasks() if t is not asyncio.current_task())

    assert ("degraded", "config", 1) == (report.status, result.error_code, result.attempts)
    assert "no sentinel monitors a service named 'mymastr' (they monitor 'mymaster')" in str(result.error)
    assert [] == tasks
    assert [0, 0, 0] == own_sentinel_connections(group)
