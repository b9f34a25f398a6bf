"""infraboot.cache: two levels, keys, coalescing, stale-while-revalidate, values, invalidation, warmup, metrics."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import infraboot
import infraboot.testing
from infraboot import ConfigError, RedisComponent, RedisSettings, StartupError, SystemInitializer
from infraboot.cache import Cache, CacheUnavailableError, ValueTooLargeError, cached, register_cache_metrics, warmup

from .servers import RedisServer, TcpProxy, proxy_to


@pytest.fixture
async def memory() -> AsyncIterator[SystemInitializer]:
    """A started system whose ``redis`` is a private in-process Redis (fakeredis)."""
    system = SystemInitializer([RedisComponent(RedisSettings(url="memory://"))], check_interval=None)
    await system.initialize_all()
    yield system
    await system.shutdown()


@pytest.fixture
async def real(redis_url: str) -> AsyncIterator[SystemInitializer]:
    """A started system on the real Redis (database 9), its test keys removed before and after."""
    system = SystemInitializer([RedisComponent(RedisSettings(url=redis_url))], check_interval=None)
    await system.initialize_all()
    client = system.get("redis")
    await _wipe(client)
    yield system
    await _wipe(client)
    await system.shutdown()


async def _wipe(client: Any) -> None:
    keys = [k async for k in client.scan_iter(match="t-*")]
    if keys:
        await client.delete(*keys)


def counting(result: Any = "v", delay: float = 0.0) -> tuple[list[Any], Any]:
    calls: list[Any] = []

    async def fn(*args: Any, **kwargs: Any) -> Any:
        calls.append((args, kwargs))
        if delay:
            await asyncio.sleep(delay)
        return result

    return calls, fn


# -- keys and the two levels ----------------------------------------------------------------------


async def test_a_template_key_runs_the_function_once_then_serves_l1(memory: SystemInitializer) -> None:
    """A second call with the same arguments is an L1 hit; the function ran once."""
    calls: list[int] = []

    @cached(ttl=60, key="user:{user_id}", system=memory, namespace="t-tpl")
    async def get_user(user_id: int) -> dict[str, int]:
        calls.append(user_id)
        return {"id": user_id}

    assert {"id": 7} == await get_user(7)
    assert {"id": 7} == await get_user(user_id=7)
    stats = get_user.cache.stats()
    assert ([7], 1, 1) == (calls, stats["l1_hits"], stats["calls"])
    assert "user:7" == get_user.key(7)
    assert b"" != await memory.get("redis").get("t-tpl:v1:user:7")


async def test_argument_keys_treat_positional_and_keyword_alike_and_leave_self_out(memory: SystemInitializer) -> None:
    """f(1, b=2) and f(1, 2) share a key; two instances of a class share a method's key (self is left out)."""
    seen: list[tuple[int, int]] = []

    class Repo:
        @cached(ttl=60, system=memory, namespace="t-args")
        async def find(self, a: int, b: int = 0) -> int:
            seen.append((a, b))
            return a + b

    assert 3 == await Repo().find(1, 2)
    assert 3 == await Repo().find(1, b=2)
    assert 1 == await Repo().find(1)
    assert [(1, 2), (1, 0)] == seen
    await Repo().find.invalidate(1, 2)
    assert 3 == await Repo().find(a=1, b=2)
    assert [(1, 2), (1, 0), (1, 2)] == seen


async def test_a_long_argument_key_is_hashed(memory: SystemInitializer) -> None:
    """Arguments longer than the key budget become a fixed-length digest, the same for the same arguments."""
    _calls, fn = counting()
    wrapped = cached(ttl=60, system=memory, namespace="t-long")(fn)
    key = wrapped.key("x" * 500)
    assert key == wrapped.key("x" * 500)
    assert "#" in key
    assert len(key) < 120


async def test_an_l1_miss_is_an_l2_hit_for_another_cache(real: SystemInitializer) -> None:
    """A value stored by one cache is read from Redis by another whose L1 is cold."""
    writer = Cache("t-shared", system=real, coherence=False)
    reader = Cache("t-shared", system=real, coherence=False)
    await writer.set("k", {"a": [1, 2]})
    assert {"a": [1, 2]} == await reader.get("k")
    assert (0, 1, 1) == (reader.counters.l1_hits, reader.counters.l2_hits, len(reader.l1))
    assert {"a": [1, 2]} == await reader.get("k")
    assert 1 == reader.counters.l1_hits


async def test_l1_is_a_bounded_lru(memory: SystemInitializer) -> None:
    """Past l1_size entries, the least recently used one goes first."""
    cache = Cache("t-lru", system=memory, l1_size=2, coherence=False)
    await cache.set("a", 1)
    await cache.set("b", 2)
    await cache.get("a")  # a is now the most recent
    await cache.set("c", 3)
    assert ["t-lru:v1:a", "t-lru:v1:c"] == sorted(cache.l1)
    assert 1 == cache.stats()["l1_evictions"]


async def test_a_version_bump_is_a_fresh_key_space(memory: SystemInitializer) -> None:
    """Keys are namespace:vVERSION:key, so another version sees none of the old values."""
    await Cache("t-ver", system=memory, version=1).set("k", "old")
    assert None is await Cache("t-ver", system=memory, version=2).get("k")
    assert "old" == await Cache("t-ver", system=memory, version=1).get("k")


# -- coalescing -------------------------------------------------------------------------------------


async def test_a_thousand_concurrent_misses_call_the_function_once(real: SystemInitializer) -> None:
    """1,000 concurrent calls for one missing key on the real Redis run the function once."""
    calls, fn = counting(result={"ok": True}, delay=0.05)
    wrapped = cached(ttl=60, key="hot", system=real, namespace="t-stampede")(fn)
    results = await asyncio.gather(*(wrapped() for _ in range(1000)))
    assert 1 == len(calls)
    assert [{"ok": True}] * 1000 == results
    assert 999 == wrapped.cache.stats()["coalesced"]


async def test_an_exception_reaches_every_waiter_and_nothing_is_stored(memory: SystemInitializer) -> None:
    """A failing call fails each of its coalesced callers; the next call runs the function again."""
    attempts = []

    @cached(ttl=60, key="boom", system=memory, namespace="t-exc")
    async def boom() -> int:
        attempts.append(1)
        await asyncio.sleep(0.01)
        if len(attempts) == 1:
            raise RuntimeError("first call fails")
        return 2

    results = await asyncio.gather(*(boom() for _ in range(5)), return_exceptions=True)
    assert 5 == sum(isinstance(r, RuntimeError) for r in results)
    assert 2 == await boom()
    assert 2 == len(attempts)


async def test_a_cancelled_caller_does_not_cancel_the_others(memory: SystemInitializer) -> None:
    """The caller running a coalesced load is cancelled; a caller waiting for it still gets the value."""
    gate, started = asyncio.Event(), asyncio.Event()
    runs = []

    @cached(ttl=60, key="slow", system=memory, namespace="t-cancel")
    async def slow() -> str:
        runs.append(1)
        started.set()
        await gate.wait()
        return "done"

    first = asyncio.ensure_future(slow())
    await asyncio.wait_for(started.wait(), 5)
    second = asyncio.ensure_future(slow())
    await asyncio.sleep(0)  # second now waits for first's load
    first.cancel()
    gate.set()
    assert "done" == await second
    assert first.cancelled()
    assert 1 == slow.cache.stats()["coalesced"]


async def test_a_redis_lock_keeps_a_second_process_from_computing(real: SystemInitializer) -> None:
    """Two caches (as two processes) missing the same key with lock= run the function once in all."""
    calls, fn = counting(result=41, delay=0.2)
    one = cached(ttl=60, key="locked", lock=2.0, system=real, namespace="t-lock", l1_size=10)(fn)
    two = cached(ttl=60, key="locked", lock=2.0, system=real, namespace="t-lock", l1_size=10)(fn)
    assert [41, 41] == await asyncio.gather(one(), two())
    assert 1 == len(calls)
    assert 1 == one.cache.stats()["lock_waits"] + two.cache.stats()["lock_waits"]


async def test_waiting_for_the_lock_holder_polls_without_backoff_under_set_testing(
    real: SystemInitializer, pauses: list[float]
) -> None:
    """Under set_testing a lock waiter polls Redis at the short testing pause, then computes itself at lock=."""
    from infraboot._engine._backoff import TESTING_FOREVER_WAIT

    calls, fn = counting(result=7)
    one = cached(ttl=60, key="held", lock=0.3, system=real, namespace="t-lock2", l1_size=10)(fn)
    client = real.get("redis")
    # A holder that never stores its value: the waiter polls until lock= runs out.
    await client.set(one.cache.full_key("held") + ":__lock__", "another process", px=60_000)
    with infraboot.set_testing():
        t0 = time.monotonic()
        assert 7 == await one()
    assert 1 == len(calls)
    assert time.monotonic() - t0 < 3.0
    assert len(pauses) >= 3
    assert {TESTING_FOREVER_WAIT} == set(pauses)


# -- stale-while-revalidate --------------------------------------------------------------------------


async def test_a_stale_value_is_served_at_once_while_one_refresh_runs(memory: SystemInitializer) -> None:
    """After ttl, callers get the old value immediately; one refresh runs; then the new value is served."""
    version = {"n": 0}
    gate = asyncio.Event()

    @cached(ttl=0.05, stale_ttl=30, key="swr", system=memory, namespace="t-swr")
    async def value() -> int:
        version["n"] += 1
        if version["n"] > 1:
            await gate.wait()
        return version["n"]

    assert 1 == await value()
    deadline = time.monotonic() + 5
    while (
        time.monotonic() < deadline
        and value.cache.l1.get("t-swr:v1:swr", time.monotonic()).fresh_until > time.monotonic()
    ):  # type: ignore[union-attr]
        await asyncio.sleep(0.01)
    t0 = time.monotonic()
    stale = await asyncio.gather(*(value() for _ in range(10)))
    assert [1] * 10 == stale
    assert time.monotonic() - t0 < 0.5
    assert 2 == version["n"]  # one refresh, not ten
    gate.set()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and await value() != 2:
        await asyncio.sleep(0.01)
    assert 2 == await value()
    assert 10 <= value.cache.stats()["stale_serves"]


# -- values ---------------------------------------------------------------------------------------------


async def test_large_values_are_compressed_and_round_trip(real: SystemInitializer) -> None:
    """A value over compress_over is stored zlib-compressed (far smaller) and reads back equal."""
    big = {"text": "abc" * 10_000}
    cache = Cache("t-zip", system=real, compress_over=1024, coherence=False)
    await cache.set("big", big)
    stored = await real.get("redis").get("t-zip:v1:big")
    assert len(stored) < 2_000
    cache.l1.clear()
    assert big == await cache.get("big")


async def test_a_value_over_the_size_cap_is_a_clear_error(memory: SystemInitializer) -> None:
    """set() raises ValueTooLargeError naming max_value_size; a cached function returns its value uncached."""
    cache = Cache("t-cap", system=memory, max_value_size=100, compress_over=None)
    with pytest.raises(ValueTooLargeError, match="max_value_size=100"):
        await cache.set("k", "x" * 500)
    calls, fn = counting(result="y" * 500)
    wrapped = cached(ttl=60, key="k", cache=cache)(fn)
    assert "y" * 500 == await wrapped()
    assert "y" * 500 == await wrapped()
    assert (2, 2) == (len(calls), cache.stats()["not_stored"])


async def test_the_default_serializer_is_json_and_names_the_fix(memory: SystemInitializer) -> None:
    """A value JSON cannot hold is a TypeError naming serializer=; bytes another writer left are a miss."""
    cache = Cache("t-json", system=memory)
    with pytest.raises(TypeError, match="serializer="):
        await cache.set("k", {1, 2})
    await memory.get("redis").set("t-json:v1:foreign", b"\x80\x04pickle-bytes")
    assert "fallback" == await cache.get("foreign", "fallback")


async def test_a_pluggable_serializer_is_used_both_ways(memory: SystemInitializer) -> None:
    """A serializer with dumps/loads stores what JSON cannot."""

    class Sets:
        def dumps(self, value: Any) -> bytes:
            return ",".join(sorted(value)).encode()

        def loads(self, data: bytes) -> Any:
            return set(data.decode().split(","))

    cache = Cache("t-ser", system=memory, serializer=Sets())
    await cache.set("k", {"a", "b"})
    cache.l1.clear()
    assert {"a", "b"} == await cache.get("k")


# -- invalidation ---------------------------------------------------------------------------------------


async def test_invalidation_by_key_prefix_tag_and_function(real: SystemInitializer) -> None:
    """delete, delete_prefix, delete_tag and invalidate_all each drop exactly their keys, in L1 and Redis."""
    client = real.get("redis")
    calls: list[int] = []

    @cached(ttl=60, key="item:{n}", tags=lambda n: [f"group{n % 2}"], system=real, namespace="t-inv")
    async def item(n: int) -> int:
        calls.append(n)
        return n

    for n in range(6):
        await item(n)
    await item.invalidate(0)
    assert None is await client.get("t-inv:v1:item:0")
    await item.cache.delete_tag("group1")  # 1, 3, 5
    assert [None, None, None] == [await client.get(f"t-inv:v1:item:{n}") for n in (1, 3, 5)]
    for n in range(6):
        await item(n)
    assert [0, 1, 2, 3, 4, 5, 0, 1, 3, 5] == calls
    await item.invalidate_all()
    assert [] == [k async for k in client.scan_iter(match="t-inv:v1:item:*")]
    assert 0 == len(item.cache.l1)


async def test_another_cache_of_this_process_sees_an_invalidation(memory: SystemInitializer) -> None:
    """A Cache object deleting a key drops it from the L1 of a decorated function on the same namespace."""
    calls, fn = counting()
    wrapped = cached(ttl=60, key="shared", system=memory, namespace="t-local")(fn)
    await wrapped()
    await Cache("t-local", system=memory).delete("shared")
    await wrapped()
    assert 2 == len(calls)


async def test_a_load_that_raced_an_invalidation_is_not_stored(memory: SystemInitializer) -> None:
    """A value computed while its key was invalidated is returned but not kept."""
    gate = asyncio.Event()
    calls, _ = counting()

    @cached(ttl=60, key="race", system=memory, namespace="t-race")
    async def racing() -> int:
        calls.append(1)
        await gate.wait()
        return len(calls)

    task = asyncio.ensure_future(racing())
    deadline = time.monotonic() + 5
    while not calls and time.monotonic() < deadline:
        await asyncio.sleep(0.001)
    await racing.invalidate()
    gate.set()
    assert 1 == await task
    assert 0 == len(racing.cache.l1)


# -- degradation on the test kit's fake Redis ---------------------------------------------------------


async def test_with_the_test_kit_outage_l1_serves_and_misses_call_through(fake_redis: Any) -> None:
    """Inside infraboot.testing.outage("redis"): L1 keeps serving, a miss runs the function, nothing raises."""
    infraboot.default_system().components["redis"].required = False
    calls, fn = counting(result="fresh")
    wrapped = cached(ttl=60, key="item:{0}", namespace="t-kit")(fn)
    await wrapped(1)
    with infraboot.set_testing():
        async with infraboot.testing.outage("redis"):
            assert "fresh" == await wrapped(1)  # L1
            t0 = time.monotonic()
            assert "fresh" == await wrapped(2)  # a miss, Redis skipped
            assert time.monotonic() - t0 < 0.1
            assert "unavailable" == wrapped.cache.stats()["l2_state"]
        assert "up" == wrapped.cache.stats()["l2_state"]
    assert b"" != await fake_redis.get("t-kit:v1:item:1")
    assert 2 == len(calls)
    assert 1 <= wrapped.cache.stats()["l2_bypasses"]


async def test_a_required_cache_raises_when_its_redis_is_down(memory: SystemInitializer) -> None:
    """required=True: a miss while Redis is not ready raises CacheUnavailableError naming the way out."""
    calls, fn = counting()
    wrapped = cached(ttl=60, key="r", required=True, system=memory, namespace="t-req")(fn)
    await memory.stop(["redis"])
    with pytest.raises(CacheUnavailableError, match="required=False"):
        await wrapped()
    assert [] == calls


# -- configuration ---------------------------------------------------------------------------------------


def test_every_bad_setting_is_named_before_any_io() -> None:
    """One ConfigError lists each bad field with the fix; nothing connects."""
    with pytest.raises(ConfigError) as caught:
        Cache("bad space", ttl=-1, l1_size="many", op_timeout=0, redis="no such!")  # type: ignore[arg-type]
    message = str(caught.value)
    for field in ("namespace=", "ttl=-1", "l1_size='many'", "op_timeout=0", "redis='no such!'"):
        assert field in message


def test_a_template_naming_no_parameter_is_a_config_error() -> None:
    """@cached(key='user:{uid}') on f(user_id) names the unknown field and the parameters."""
    with pytest.raises(ConfigError, match=r"\['uid'\].*user_id"):

        @cached(ttl=60, key="user:{uid}")
        async def f(user_id: int) -> int:
            return user_id


def test_cached_wraps_only_async_functions_and_validates_ttl() -> None:
    """A sync function, a bad ttl and cache= mixed with cache settings are each a ConfigError."""
    with pytest.raises(ConfigError, match="async def"):
        cached(ttl=60)(lambda: 1)
    with pytest.raises(ConfigError, match="ttl=0"):
        cached(ttl=0)
    with pytest.raises(ConfigError, match=r"drop \['l1_size'\]"):
        cached(ttl=1, cache=Cache("t-x"), l1_size=3)


def test_importing_infraboot_does_not_import_the_cache_and_the_cache_imports_no_driver() -> None:
    """import infraboot leaves infraboot.cache alone; import infraboot.cache loads no redis or prometheus."""
    code = (
        "import sys, infraboot; assert 'infraboot.cache' not in sys.modules; import infraboot.cache; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('redis', 'fakeredis', 'prometheus_client')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert "[]" == out.stdout.strip()


# -- warmup ----------------------------------------------------------------------------------------------


async def test_warmup_fills_the_cache_after_redis_and_never_fails_startup(clean_env: pytest.MonkeyPatch) -> None:
    """An optional warmup runs its steps once Redis is ready; a failing step is counted, startup is ok."""
    system = SystemInitializer([RedisComponent(RedisSettings(url="memory://"))], check_interval=None)
    calls, fn = counting(result="warm")
    wrapped = cached(ttl=60, key="w:{0}", system=system, namespace="t-warm")(fn)

    async def broken() -> None:
        raise RuntimeError("step fails")

    system.register(warmup(lambda: wrapped(1), lambda: wrapped(2), broken, deadline=2))
    report = await system.initialize_all()
    try:
        assert "ok" == report.status
        done = system.get("cache-warmup")
        assert (2, 1, 0) == (done.warmed, done.failed, done.timed_out)
        assert "warm" == await wrapped(1)
        assert 2 == len(calls)
    finally:
        await system.shutdown()


async def test_a_required_warmup_that_overruns_fails_startup_within_its_deadline() -> None:
    """required=True and a step still running at the deadline: startup fails, within the deadline and a bit."""
    system = SystemInitializer([RedisComponent(RedisSettings(url="memory://"))], check_interval=None)

    async def hangs() -> None:
        await asyncio.sleep(30)

    system.register(warmup(hangs, deadline=0.3, required=True))
    t0 = time.monotonic()
    with infraboot.set_testing(attempts=1), pytest.raises(StartupError, match="cache-warmup"):
        await system.initialize_all()
    assert time.monotonic() - t0 < 3.0
    await system.shutdown()


# -- observability ----------------------------------------------------------------------------------------


async def test_stats_and_the_prometheus_collector_show_hits_per_level(memory: SystemInitializer) -> None:
    """Hits and misses per level, the hit ratio and L2 state are in stats() and in the collector's samples."""
    from prometheus_client import CollectorRegistry

    cache = Cache("t-metrics", system=memory)
    await cache.set("a", 1)
    await cache.get("a")
    await cache.get("missing")
    stats = cache.stats()
    assert (1, 1, 1, 0.5, "up") == (
        stats["l1_hits"],
        stats["l1_misses"],
        stats["l2_misses"],
        stats["hit_ratio"],
        stats["l2_state"],
    )
    registry = CollectorRegistry()
    register_cache_metrics(registry, caches=[cache])
    assert 1.0 == registry.get_sample_value("infraboot_cache_hits_total", {"cache": "t-metrics", "level": "l1"})
    assert 1.0 == registry.get_sample_value("infraboot_cache_misses_total", {"cache": "t-metrics", "level": "l2"})
    assert 0.5 == registry.get_sample_value("infraboot_cache_hit_ratio", {"cache": "t-metrics"})
    assert 1.0 == registry.get_sample_value("infraboot_cache_l2_up", {"cache": "t-metrics"})


@pytest.fixture
def protected_redis(tmp_path: Path) -> Iterator[TcpProxy]:
    """A proxy to a redis-server of this test's own that wants the password ``s3cr3t-canary``.

    AUTH with it succeeds on every redis-py; against a server without a password it fails before redis-py 8.0.
    """
    server = RedisServer(tmp_path, password="s3cr3t-canary")
    server.start()
    try:
        with proxy_to(server.port) as proxy:
            yield proxy
    finally:
        server.kill()


async def test_a_password_never_appears_in_stats_repr_metrics_or_logs(
    protected_redis: TcpProxy, caplog: pytest.LogCaptureFixture
) -> None:
    """With a canary password in the Redis URL and Redis refusing, no cache output carries it."""
    from prometheus_client import CollectorRegistry, generate_latest

    redis_proxy = protected_redis
    url = f"redis://:s3cr3t-canary@{redis_proxy.url_host}/9"
    system = SystemInitializer([RedisComponent(RedisSettings(url=url, required=False))], check_interval=None)
    await system.initialize_all()
    cache = Cache("t-canary", system=system, op_timeout=0.5)
    caplog.set_level(logging.DEBUG)
    redis_proxy.set_mode("refuse")
    _calls, fn = counting()
    wrapped = cached(ttl=60, key="k", cache=cache)(fn)
    assert "v" == await wrapped()
    registry = CollectorRegistry()
    register_cache_metrics(registry, caches=[cache])
    await system.shutdown()
    outputs = [repr(cache), str(cache.stats()), generate_latest(registry).decode(), caplog.text, repr(wrapped)]
    assert [] == [o for o in outputs if "s3cr3t-canary" in o]
    assert 1 == cache.stats()["l2_errors"]


# -- the per-call deadline ----------------------------------------------------------------------------


async def test_a_call_past_its_deadline_is_a_timeout_and_an_outside_cancel_stays_a_cancel() -> None:
    """The shared deadline raises TimeoutError at op_timeout (plus its 10 ms grain); a cancel from outside
    is still CancelledError, and a call that finishes in time is untouched."""
    from infraboot._cache._bounded import Deadlines

    deadlines = Deadlines(0.05)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        await deadlines.run(asyncio.sleep(10))
    assert 0.05 <= time.monotonic() - t0 < 0.5
    assert 3 == await deadlines.run(asyncio.sleep(0, result=3))
    task = asyncio.ensure_future(deadlines.run(asyncio.sleep(10)))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert 0 == (asyncio.current_task() or task).cancelling()


async def test_a_client_that_decodes_to_str_is_named_in_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    """A Redis component with decode_responses=True cannot hold cache entries: reads miss, and a warning says why."""
    settings = RedisSettings(url="memory://", client_options={"decode_responses": True})
    system = SystemInitializer([RedisComponent(settings)], check_interval=None)
    await system.initialize_all()
    try:
        cache = Cache("t-text", system=system)
        await cache.set("k", "v")
        cache.l1.clear()
        with caplog.at_level(logging.WARNING):
            assert None is await cache.get("k")
        assert "decode_responses" in caplog.text
    finally:
        await system.shutdown()
