"""infraboot.cache during Redis outages: blackhole, refuse and restart, against the real Redis and the proxy."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from infraboot import ComponentState, RedisComponent, RedisSettings, SystemInitializer
from infraboot.cache import Cache, cached

from .servers import RedisServer, TcpProxy

pytestmark = pytest.mark.real


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> float:
    """Poll *condition* until it holds; the seconds it took (fails the test at *timeout*)."""
    t0 = time.monotonic()
    while not condition():
        if time.monotonic() - t0 > timeout:
            pytest.fail(f"condition not met within {timeout}s")
        await asyncio.sleep(0.01)
    return time.monotonic() - t0


async def timed(call: Callable[[], Any], n: int) -> list[float]:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - t0)
    return samples


@pytest.fixture
async def proxied(redis_proxy: TcpProxy) -> AsyncIterator[SystemInitializer]:
    """An optional Redis behind the proxy, socket timeout 1 s, the monitor off (only the cache's own view)."""
    settings = RedisSettings(url=f"redis://{redis_proxy.url_host}/9", required=False, socket_timeout=1.0)
    system = SystemInitializer([RedisComponent(settings)], check_interval=None)
    await system.initialize_all()
    client = system.get("redis")
    stale = [k async for k in client.scan_iter(match="t-*")]  # a previous run's values (TTL 60 s) are no misses
    if stale:
        await client.delete(*stale)
    yield system
    await system.shutdown()


async def test_blackholed_redis_costs_one_bounded_wait_then_none(
    proxied: SystemInitializer, redis_proxy: TcpProxy
) -> None:
    """Blackholed (a silent partition): L1 hits stay sub-millisecond, the first miss waits op_timeout at most,
    later misses cost the function's own time, and no error reaches the caller."""
    calls: list[int] = []

    # A namespace of this run's own: an earlier run's bh:0 (ttl 60 s) in the shared Redis would be a hit.
    @cached(ttl=60, key="bh:{n}", system=proxied, namespace=f"t-bh-{uuid.uuid4().hex[:8]}", l1_size=10_000)
    async def load(n: int) -> int:
        calls.append(n)
        return n

    await load(0)
    redis_proxy.set_mode("blackhole", drop_existing=False)
    hits = await timed(lambda: load(0), 500)
    t0 = time.perf_counter()
    assert 1 == await load(1)  # the one call that meets the blackhole
    first_miss = time.perf_counter() - t0
    counter = iter(range(2, 10_000))
    misses = await timed(lambda: load(next(counter)), 300)
    assert p99(hits) < 0.002
    assert first_miss < 0.25 + 0.5
    assert p99(misses) < 0.005
    assert "down" == load.cache.stats()["l2_state"]
    assert 302 == len(calls)


async def test_refused_redis_is_bypassed_without_new_connections(
    proxied: SystemInitializer, redis_proxy: TcpProxy
) -> None:
    """Refusing: the first error opens the bypass; until retry_interval passes, no call reaches the network."""
    cache = Cache("t-refuse", system=proxied, retry_interval=30)
    await cache.set("k", "v")
    redis_proxy.set_mode("refuse")
    assert "fallback" == await cache.get("other", "fallback")
    accepted = redis_proxy.accepted
    t0 = time.perf_counter()
    for n in range(200):
        assert None is await cache.get(f"m{n}")
        await cache.set(f"m{n}", n)
    took = time.perf_counter() - t0
    assert "v" == await cache.get("k")
    assert accepted == redis_proxy.accepted
    assert took < 0.5
    stats = cache.stats()
    assert ("down", 1) == (stats["l2_state"], stats["l2_errors"])
    assert 400 <= stats["l2_bypasses"]


async def test_an_unhealthy_component_is_skipped_and_l2_resumes_within_a_monitor_interval(
    redis_proxy: TcpProxy,
) -> None:
    """The monitor marks Redis unhealthy: the cache skips it with no network; back within one interval after."""
    interval = 0.3
    settings = RedisSettings(url=f"redis://{redis_proxy.url_host}/9", required=False, check_timeout=0.3)
    system = SystemInitializer([RedisComponent(settings)], check_interval=interval, failure_threshold=1)
    await system.initialize_all()
    try:
        cache = Cache("t-monitor", system=system, retry_interval=0.01)
        await cache.set("k", "v")
        redis_proxy.set_mode("refuse")
        await until(lambda: system.state("redis") is not ComponentState.READY)
        accepted = redis_proxy.accepted
        cache.l1.clear()
        t0 = time.perf_counter()
        for _ in range(100):
            assert None is await cache.get("k")
        assert time.perf_counter() - t0 < 0.2
        assert accepted == redis_proxy.accepted  # the monitor's probes aside, nothing: it is checked right after
        assert "unavailable" == cache.stats()["l2_state"]

        redis_proxy.set_mode("forward")
        back = await until(lambda: system.state("redis") is ComponentState.READY, timeout=10)
        assert "v" == await cache.get("k")  # from Redis again
        assert "up" == cache.stats()["l2_state"], (cache.l2.last_error, cache.l2.tripped, cache.stats())
        assert back < interval * 2 + 1.0  # within one monitor interval (and the probe's own time), generously
    finally:
        await system.shutdown()


async def test_an_invalidation_made_while_redis_refuses_reaches_it_on_recovery(
    proxied: SystemInitializer, redis_proxy: TcpProxy
) -> None:
    """Invalidated while Redis refuses: held, then sent once Redis answers, so no process reads the old value."""
    cache = Cache("t-replay", system=proxied, retry_interval=0.05)
    client = proxied.get("redis")
    await cache.set("k", "old")
    redis_proxy.set_mode("refuse")
    await cache.delete("k")
    assert (None, 1) == (await cache.get("k"), cache.stats()["pending_invalidations"])
    redis_proxy.set_mode("forward")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (cache.stats()["pending_invalidations"] or await client.get("t-replay:v1:k")):
        await cache.get("probe")  # any call through Redis notices it is back and sends what was held
        await asyncio.sleep(0.02)
    assert None is await client.get("t-replay:v1:k")
    assert 0 == cache.stats()["pending_invalidations"]


async def test_after_a_restart_l2_resumes_and_the_invalidation_channel_resubscribes(tmp_path: Any) -> None:
    """Kill redis-server: calls go on from L1 and through; restarted, Redis is used again and, as invalidations
    may have been missed, L1 is cleared when the subscription is back."""
    server = RedisServer(tmp_path)
    server.start()
    system = SystemInitializer([RedisComponent(RedisSettings(url=server.url(), required=False))], check_interval=0.2)
    try:
        await system.initialize_all()
        cache = Cache("t-restart", system=system, retry_interval=0.05)
        calls: list[int] = []

        @cached(ttl=60, key="rs:{n}", cache=cache)
        async def load(n: int) -> int:
            calls.append(n)
            return n * 10

        assert [10, 20] == [await load(1), await load(2)]
        hub = cache._hub
        await until(lambda: hub.subscribed)
        server.kill()
        assert 10 == await load(1)  # L1
        assert 30 == await load(3)  # a miss: through to the function
        await until(lambda: not hub.subscribed)
        server.start()
        await until(lambda: system.state("redis") is ComponentState.READY, timeout=10)
        await until(lambda: hub.subscribed, timeout=10)
        assert 0 == len(cache.l1)
        assert 40 == await load(4)
        assert "up" == cache.stats()["l2_state"], (cache.l2.last_error, cache.l2.tripped, cache.stats())
        assert b"" != await system.get("redis").get("t-restart:v1:rs:4")
        assert [1, 2, 3, 4] == calls
    finally:
        await system.shutdown()
        server.kill()


async def test_a_silent_partition_of_the_invalidation_channel_is_noticed_by_its_ping(
    proxied: SystemInitializer, redis_proxy: TcpProxy
) -> None:
    """The subscription's line goes silent (no reset): the listener's ping notices within its bound."""
    cache = Cache("t-ping", system=proxied)
    hub = cache._hub
    hub.ping_every = 0.1
    await cache.get("k")  # Redis answered: the listener starts
    await until(lambda: hub.subscribed)
    redis_proxy.set_mode("blackhole", drop_existing=False)
    lost = await until(lambda: not hub.subscribed, timeout=5)
    assert lost < 2 * 0.1 + 4 * cache.l2.op_timeout + 1.0
