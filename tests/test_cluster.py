"""The redis component on a Redis Cluster: six real nodes this test owns, made with redis-cli --cluster create."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infraboot import RedisSettings, StartupError, SystemInitializer
from infraboot._components._redis import RedisComponent
from infraboot._components._redis_topology import topology_details

from .redis_topology import RedisClusterNodes, poll

pytestmark = [pytest.mark.real, pytest.mark.topology]

CANARY = "s3cr3t-canary"
KEYS = [f"key-{i}" for i in range(12)]  # spread over the three masters' slots


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[RedisClusterNodes]:
    nodes = RedisClusterNodes(tmp_path, password=CANARY)
    try:
        yield nodes
    finally:
        nodes.close()


async def write_all_until_ok(system: SystemInitializer, value: str, timeout: float) -> float:
    """Seconds until every key is written through the component's client (each failure retried at once)."""
    t0 = time.monotonic()
    while True:
        try:
            client = system.get("redis")
            for key in KEYS:
                await client.set(key, value)
            return time.monotonic() - t0
        except Exception:
            if time.monotonic() - t0 > timeout:
                raise
            await asyncio.sleep(0.05)


async def test_commands_succeed_again_after_a_manual_failover_and_a_killed_master(cluster: RedisClusterNodes) -> None:
    """CLUSTER FAILOVER on a replica and a killed master: every key is writable again without a restart,
    and readiness reports cluster_state:ok with all 16384 slots and the node count."""
    comp = RedisComponent(RedisSettings(url=cluster.url(count=6)))
    async with SystemInitializer([comp]) as system:
        await write_all_until_ok(system, "0", timeout=1.0)
        report = await system.health(fresh=True)
        assert "pass" == report.status
        details = dict(topology_details(system.get("redis")) or {})
        assert (
            details == report.to_dict(details=True)["checks"]["redis:responseTime"][0]["details"]
        )  # what /health?details says
        assert {"state": "ok", "slots_ok": 16384, "slots_fail": 0, "nodes": 6, "size": 3} == {
            k: details[k] for k in ("state", "slots_ok", "slots_fail", "nodes", "size")
        }
        assert CANARY not in str(report.to_dict(details=True)) + repr(system.get("redis"))

        master = cluster.masters()[0]
        replica = cluster.replica_of(master)
        cluster.promote(replica)
        assert await write_all_until_ok(system, "1", timeout=10.0) < 10.0

        cluster.kill(replica)  # now a master; its replica (the old master) takes over after node-timeout
        assert await write_all_until_ok(system, "2", timeout=25.0) < 25.0
        assert "master" == cluster.role(master)
        t0 = time.monotonic()
        while (await system.health(fresh=True)).status != "pass":
            assert time.monotonic() - t0 < 15.0, "readiness did not pass again"
            await asyncio.sleep(0.1)
        details = dict(topology_details(system.get("redis")) or {})
        assert "ok" == details["state"]
        assert 16384 == details["slots_ok"]


async def test_readiness_fails_while_a_slot_range_has_no_master(cluster: RedisClusterNodes) -> None:
    """A master and its replica both dead: readiness fails, naming the cluster state and the failed slots."""
    comp = RedisComponent(RedisSettings(url=cluster.url(count=6), max_retries=0))
    async with SystemInitializer([comp]) as system:
        assert "pass" == (await system.health(fresh=True)).status
        master = cluster.masters()[0]
        replica = cluster.replica_of(master)
        cluster.kill(replica)
        cluster.kill(master)
        t0 = time.monotonic()
        while (await system.health(fresh=True)).status != "fail":
            assert time.monotonic() - t0 < 15.0, "readiness kept passing with a slot range down"
            await asyncio.sleep(0.1)


async def test_a_start_fails_without_full_slot_coverage_unless_allowed(cluster: RedisClusterNodes) -> None:
    """With a third of the slots unassigned the start fails; REDIS_CLUSTER_REQUIRE_FULL_COVERAGE=false starts."""
    master = cluster.masters()[0]
    with cluster.node(master) as node:
        slots = [s for s in node.cluster("SLOTS") if int(s[2][1]) == master]
        for start, end, *_ in slots:
            for port in list(cluster.nodes):
                with cluster.node(port) as each:
                    each.execute_command("CLUSTER DELSLOTSRANGE", start, end)
    strict = RedisComponent(RedisSettings(url=cluster.url(count=6), max_retries=0))
    with pytest.raises(StartupError):
        await SystemInitializer([strict]).initialize_all()
    lenient = RedisComponent(
        RedisSettings(url=cluster.url(count=6), cluster_require_full_coverage=False, required=False)
    )
    async with SystemInitializer([lenient]) as system:
        assert system.get("redis") is not None


async def test_a_start_fails_as_cluster_down_while_the_cluster_state_is_fail(cluster: RedisClusterNodes) -> None:
    """A master and its replica dead (cluster_state:fail): a start through the live nodes fails as cluster_down."""
    master = cluster.masters()[0]
    replica = cluster.replica_of(master)
    cluster.kill(replica)
    cluster.kill(master)

    def all_say_fail() -> bool:
        for port in cluster.nodes:
            with cluster.node(port) as node:
                if node.cluster("INFO").get("cluster_state") != "fail":
                    return False
        return True

    poll("every live node says cluster_state:fail", all_say_fail, 20.0)
    comp = RedisComponent(RedisSettings(url=cluster.url(count=4), max_retries=2))
    with pytest.raises(StartupError) as caught:
        await SystemInitializer([comp]).initialize_all()
    result = caught.value.report.components["redis"]

    assert "cluster_down" == result.error_code
    assert "cluster_state:fail" in str(result.error)


async def test_a_wrong_cluster_password_is_an_auth_error_and_not_retried(cluster: RedisClusterNodes) -> None:
    """Nodes refusing the password: code auth after one attempt, and neither password in the error."""
    url = cluster.url(count=3).replace(f":{CANARY}@", ":wr0ng-canary@")
    comp = RedisComponent(RedisSettings(url=url, max_retries=3))
    with pytest.raises(StartupError) as caught:
        await SystemInitializer([comp]).initialize_all()
    result = caught.value.report.components["redis"]

    assert ("auth", 1) == (result.error_code, result.attempts)
    assert [] == [s for s in (CANARY, "wr0ng-canary") if s in str(caught.value)]
