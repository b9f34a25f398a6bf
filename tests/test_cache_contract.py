"""infraboot.cache keeps its coherence contract (docs/cache.md): one test per defect of issue #19."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from infraboot import ComponentState, RedisComponent, RedisSettings, SystemInitializer
from infraboot.cache import Cache, ValueTooLargeError, cached

from .servers import TcpProxy

pytestmark = pytest.mark.real


def db_of(url: str) -> int:
    return int(urlsplit(url).path.strip("/") or 0)


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> float:
    """Poll *condition* until it holds; the seconds it took (fails the test at *timeout*)."""
    t0 = time.monotonic()
    while not condition():
        if time.monotonic() - t0 > timeout:
            pytest.fail(f"condition not met within {timeout}s")
        await asyncio.sleep(0.01)
    return time.monotonic() - t0


async def start(url: str, **settings: Any) -> SystemInitializer:
    system = SystemInitializer([RedisComponent(RedisSettings(url=url, **settings))], check_interval=None)
    await system.initialize_all()
    return system


async def wipe(client: Any, pattern: str = "t-c*") -> None:
    keys = [k async for k in client.scan_iter(match=pattern)]
    if keys:
        await client.delete(*keys)


@pytest.fixture
async def memory() -> AsyncIterator[SystemInitializer]:
    """A started system whose ``redis`` is a private in-process Redis (fakeredis)."""
    system = await start("memory://")
    yield system
    await system.shutdown()


@pytest.fixture
async def two(redis_url: str) -> AsyncIterator[tuple[SystemInitializer, SystemInitializer]]:
    """Two systems on the real Redis, each with its own invalidation listener: two processes, as the cache sees it."""
    a, b = await start(redis_url), await start(redis_url)
    await wipe(a.get("redis"))
    yield a, b
    await wipe(a.get("redis"))
    await a.shutdown()
    await b.shutdown()


@pytest.fixture
async def proxied(redis_proxy: TcpProxy, redis_url: str) -> AsyncIterator[SystemInitializer]:
    """An optional Redis behind the proxy (socket timeout 1 s, no monitor), its test keys wiped."""
    url = f"redis://{redis_proxy.url_host}/{db_of(redis_url)}"
    system = await start(url, required=False, socket_timeout=1.0)
    await wipe(system.get("redis"))
    yield system
    await system.shutdown()


async def listening(*caches: Cache) -> None:
    for cache in caches:
        await cache.get("t-c-warm")  # Redis answered: the listener starts
    await until(lambda: all(c.stats()["coherent"] for c in caches))


# -- keys -----------------------------------------------------------------------------------------------


async def test_argument_keys_of_different_arguments_never_collide(memory: SystemInitializer) -> None:
    """f("a,b", "c") / f("a", "b,c"), 1 / "1", None / "None", ["a", "b"] / "[a,b]": each pair gets two values."""
    calls: list[tuple[Any, Any]] = []

    @cached(ttl=60, system=memory, namespace="t-ckeys")
    async def f(a: Any, b: Any = "") -> str:
        calls.append((a, b))
        return repr((a, b))

    pairs = [(("a,b", "c"), ("a", "b,c")), ((1,), ("1",)), ((None,), ("None",)), ((["a", "b"],), ("[a,b]",))]
    for first, second in pairs:
        assert (repr((*first, "")[:2]), repr((*second, "")[:2])) == (await f(*first), await f(*second))
    assert 8 == len(calls)
    assert 8 == len({f.key(*first) for pair in pairs for first in pair})


async def test_template_fields_cannot_imitate_the_templates_separators(memory: SystemInitializer) -> None:
    """key="{a}:{b}" keeps ("x:y", "z") and ("x", "y:z") apart."""

    @cached(ttl=60, key="{a}:{b}", system=memory, namespace="t-ctpl")
    async def f(a: str, b: str) -> str:
        return a + "|" + b

    assert ("x:y|z", "x|y:z") == (await f("x:y", "z"), await f("x", "y:z"))
    assert "x%3Ay:z" == f.key("x:y", "z")


async def test_an_argument_without_a_stable_key_is_refused_with_the_fix(memory: SystemInitializer) -> None:
    """An object whose repr is its address makes no key: a TypeError that says to give key=."""

    @cached(ttl=60, system=memory, namespace="t-cobj")
    async def f(thing: object) -> int:
        return 1

    with pytest.raises(TypeError, match="key="):
        await f(object())


async def test_invalidate_all_drops_only_its_own_functions_values(two: tuple[SystemInitializer, ...]) -> None:
    """Two functions on one cache, key="{uid}:avatar" and "{uid}:name": invalidate_all of one leaves the other."""
    system = two[0]
    cache = Cache("t-cfn", system=system)

    @cached(ttl=60, key="{uid}:avatar", cache=cache)
    async def avatar(uid: int) -> str:
        return f"avatar{uid}"

    @cached(ttl=60, key="{uid}:name", cache=cache)
    async def name(uid: int) -> str:
        return f"name{uid}"

    for uid in range(3):
        await avatar(uid)
        await name(uid)
    await avatar.invalidate_all()
    client = system.get("redis")
    left = sorted([k.decode() async for k in client.scan_iter(match="t-cfn:v1:[0-9]*")])
    assert ["t-cfn:v1:0:name", "t-cfn:v1:1:name", "t-cfn:v1:2:name"] == left
    assert 3 == len(cache.l1)


# -- values -----------------------------------------------------------------------------------------------


async def test_the_json_codec_refuses_what_it_would_not_read_back(memory: SystemInitializer) -> None:
    """{1: "x"} (would read back as {"1": "x"}), {1: a, "1": b} (would lose one) and tuples are TypeErrors."""
    cache = Cache("t-cjson", system=memory)
    for value in ({1: "x"}, {1: "a", "1": "b"}, (1, 2), {"k": [1, (2,)]}):
        with pytest.raises(TypeError, match="serializer="):
            await cache.set("k", value)
    await cache.set("k", {"a": [1, 2.5, None, True, "é"]})
    cache.l1.clear()
    assert {"a": [1, 2.5, None, True, "é"]} == await cache.get("k")


async def test_max_value_size_caps_the_serialized_size_not_the_compressed_one(memory: SystemInitializer) -> None:
    """A value of 2 MB of JSON that compresses to a few KB is over max_value_size=1 MB: refused."""
    cache = Cache("t-csize", system=memory, max_value_size=1_000_000)
    with pytest.raises(ValueTooLargeError, match="max_value_size"):
        await cache.set("k", "a" * 2_000_000)


async def test_a_compressed_bomb_in_redis_is_a_bounded_miss(two: tuple[SystemInitializer, ...]) -> None:
    """An entry written straight into Redis that inflates to 200 MB is read as a miss, inflated at most 1 MB."""
    system = two[0]
    cache = Cache("t-cbomb", system=system, max_value_size=1_000_000)
    bomb = zlib.compress(b'"' + b"a" * 200_000_000 + b'"', 9)
    header = struct.Struct("!BBdH").pack(2, 0x01, time.time() + 60, 0)
    await system.get("redis").set("t-cbomb:v1:k", header + bomb)
    t0 = time.perf_counter()
    assert None is await cache.get("k")
    took = time.perf_counter() - t0
    assert (1, 0) == (cache.stats()["oversized_reads"], len(cache.l1))
    assert took < 1.0


# -- invalidation across processes ------------------------------------------------------------------------


async def test_delete_tag_reaches_entries_another_process_read_from_redis(two: tuple[SystemInitializer, ...]) -> None:
    """B reads a tagged value from Redis into its L1; A's delete_tag drops it there too."""
    a, b = Cache("t-ctag", system=two[0]), Cache("t-ctag", system=two[1])
    await listening(a, b)
    await a.set("k", "v1", tags=["group"])
    assert "v1" == await b.get("k")  # from Redis, into B's L1
    await a.delete_tag("group")
    await until(lambda: len(b.l1) == 0 or b.l1.get("t-ctag:v1:k", time.monotonic()) is None, timeout=5)
    assert None is await b.get("k")


async def test_a_set_reaches_another_processs_l1(two: tuple[SystemInitializer, ...]) -> None:
    """B holds v1 in L1; A sets v2; B serves v2 within half a second."""
    a, b = Cache("t-cset", system=two[0]), Cache("t-cset", system=two[1])
    await listening(a, b)
    await a.set("k", "v1")
    assert "v1" == await b.get("k")
    await a.set("k", "v2")
    took = 0.0
    t0 = time.monotonic()
    while await b.get("k") != "v2":
        took = time.monotonic() - t0
        if took > 5:
            break
        await asyncio.sleep(0.005)
    assert "v2" == await b.get("k")
    assert took < 0.5


async def test_a_process_that_only_writes_hears_other_processes_invalidations(
    two: tuple[SystemInitializer, ...],
) -> None:
    """A only sets k (never reads Redis); B deletes k: A stops serving its own value within half a second."""
    a, b = Cache("t-cwriter", system=two[0]), Cache("t-cwriter", system=two[1])
    await a.set("k", "v1")
    await until(lambda: a.stats()["coherent"], timeout=5)
    await b.delete("k")
    took = await until(lambda: len(a.l1) == 0, timeout=5)
    assert (None, True) == (await a.get("k"), took < 0.5)


class _HeldGet:
    """A Redis client whose GETs wait for *gate*: a read kept in flight while the test invalidates."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.gate = asyncio.Event()
        self.waiting = 0

    async def get(self, key: Any) -> Any:
        answer = await self._client.get(key)  # Redis answers now (the old value) ...
        self.waiting += 1
        await self.gate.wait()  # ... and the answer arrives late
        return answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


async def test_a_read_in_flight_cannot_resurrect_a_delete(memory: SystemInitializer) -> None:
    """A GET answered before delete(k) but arriving after it returns to its caller without refilling L1."""
    cache = Cache("t-cinflight", system=memory)
    await cache.set("k", "old")
    cache.l1.clear()
    held = _HeldGet(memory.get("redis"))
    with memory.override("redis", held):
        reader = asyncio.ensure_future(cache.get("k"))
        await until(lambda: held.waiting == 1)
        held.gate.set()
        await cache.delete("k")
        assert "old" == await reader
        assert (0, None) == (len(cache.l1), await cache.get("k"))


# -- outages ------------------------------------------------------------------------------------------------


async def test_held_invalidations_are_replayed_by_the_listener_without_another_call(
    redis_proxy: TcpProxy, redis_url: str
) -> None:
    """Deleted while the monitor has Redis down (the cache skips it); Redis back: the listener sends the delete,
    with no further cache call."""
    url = f"redis://{redis_proxy.url_host}/{db_of(redis_url)}"
    settings = RedisSettings(url=url, required=False, check_timeout=0.3)
    system = SystemInitializer([RedisComponent(settings)], check_interval=0.2, failure_threshold=1)
    await system.initialize_all()
    direct = await start(redis_url)
    try:
        cache = Cache("t-creplay", system=system, retry_interval=0.05)
        await listening(cache)
        await cache.set("k", "old")
        redis_proxy.set_mode("refuse")
        await until(lambda: system.state("redis") is not ComponentState.READY)
        await cache.delete("k")
        assert 1 == cache.stats()["pending_invalidations"]
        redis_proxy.set_mode("forward")
        client = direct.get("redis")
        t0 = time.monotonic()
        while time.monotonic() - t0 < 10:
            if await client.get("t-creplay:v1:k") is None and cache.stats()["pending_invalidations"] == 0:
                break
            await asyncio.sleep(0.02)
        assert (None, 0) == (await client.get("t-creplay:v1:k"), cache.stats()["pending_invalidations"])
    finally:
        await direct.shutdown()
        await system.shutdown()


async def test_invalidations_held_at_shutdown_are_reported(
    proxied: SystemInitializer, redis_proxy: TcpProxy, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis blackholed at shutdown with a delete held: one ERROR line names the count, the counter says it."""
    cache = Cache("t-cdrop", system=proxied)
    await listening(cache)
    await cache.set("k", "v")
    redis_proxy.set_mode("blackhole")
    await cache.delete("k")
    assert 1 == cache.stats()["pending_invalidations"]
    t0 = time.monotonic()
    with caplog.at_level(logging.ERROR):
        await proxied.shutdown()
    took = time.monotonic() - t0
    dropped = [r for r in caplog.records if "cache_invalidations_dropped" in r.getMessage()]
    assert (1, 1, 0) == (len(dropped), cache.stats()["invalidations_dropped"], cache.stats()["pending_invalidations"])
    assert "count=1" in dropped[0].getMessage()
    assert took < 5.0


async def test_a_set_redis_missed_is_reported_and_not_kept_past_the_outage(
    proxied: SystemInitializer, redis_proxy: TcpProxy, caplog: pytest.LogCaptureFixture
) -> None:
    """A set during a partition is counted and logged; when Redis is back, its old value is deleted there and
    the unshared value leaves this L1, so every process reads the same."""
    cache = Cache("t-cunshared", system=proxied, retry_interval=0.05)
    await listening(cache)
    await cache.set("k", "v1")
    redis_proxy.set_mode("refuse")
    with caplog.at_level(logging.WARNING):
        await cache.set("k", "v2")
        await cache.set("j", "v2")
    assert "v2" == await cache.get("k")  # this process: its own write, while Redis is away
    assert (2, 1) == (
        cache.stats()["unshared_sets"],
        sum("cache_set_not_shared" in r.getMessage() for r in caplog.records),
    )
    redis_proxy.set_mode("forward")
    await until(lambda: cache.stats()["pending_invalidations"] == 0)
    assert (None, None) == (await proxied.get("redis").get("t-cunshared:v1:k"), await cache.get("k"))


async def test_delete_prefix_and_clear_on_a_blackholed_redis_take_op_timeout(
    redis_proxy: TcpProxy, redis_url: str
) -> None:
    """With op_timeout=0.25, a scan on a silent Redis gives up within about that (not 5 s), and is held."""
    url = f"redis://{redis_proxy.url_host}/{db_of(redis_url)}"
    system = await start(url, required=False, socket_timeout=10.0)  # only op_timeout can end the wait
    try:
        cache = Cache("t-cscan", system=system, op_timeout=0.25)
        for n in range(20):
            await cache.set(f"k{n}", n)
        redis_proxy.set_mode("blackhole", drop_existing=False)
        t0 = time.monotonic()
        await cache.clear()
        took = time.monotonic() - t0
        assert took < 0.25 + 1.5
        assert 1 == cache.stats()["pending_invalidations"]
    finally:
        cache.reset_local()
        await system.shutdown()


# -- lifecycle ---------------------------------------------------------------------------------------------


async def test_shutdown_cancels_and_awaits_a_background_refresh(memory: SystemInitializer) -> None:
    """A stale-while-revalidate refresh still running when shutdown begins is cancelled before it returns."""
    seen: list[str] = []
    started = asyncio.Event()

    @cached(ttl=0.05, stale_ttl=60, key="k", system=memory, namespace="t-cswr")
    async def slow() -> int:
        if seen:
            started.set()
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                seen.append("cancelled")
                raise
        seen.append("computed")
        return 1

    await slow()
    await asyncio.sleep(0.1)  # the value goes stale (a TTL passing, not synchronisation)
    assert 1 == await slow()  # stale: served at once, one refresh starts
    await asyncio.wait_for(started.wait(), 5)
    await memory.shutdown()
    assert ["computed", "cancelled"] == seen


async def test_the_hub_table_does_not_grow_with_the_systems_made() -> None:
    """Fifty systems, each with a cache, made and dropped: the process-wide hub table is back where it was."""
    from infraboot._cache._coherence import hub_count

    gc.collect()
    before = hub_count()
    for _ in range(50):
        system = SystemInitializer([RedisComponent(RedisSettings(url="memory://"))], check_interval=None)
        Cache("t-chub", system=system)
        del system
    gc.collect()
    assert before == hub_count()


TEST_FILE = textwrap.dedent(
    """
    from infraboot.cache import cached

    source = {"value": "first"}

    @cached(ttl=600, key="k", namespace="t-cleak")
    async def read():
        return source["value"]

    async def test_one():
        assert "first" == await read()

    async def test_two():
        source["value"] = "second"
        assert "second" == await read()
    """
)


def test_the_pytest_plugin_empties_every_caches_l1_between_tests(tmp_path: Path) -> None:
    """A module-level @cached value from one test is not served in the next (the plugin's reset)."""
    (tmp_path / "test_leak.py").write_text(TEST_FILE)
    (tmp_path / "pytest.ini").write_text("[pytest]\nasyncio_mode = auto\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "INFRABOOT_"))}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert (0, True) == (run.returncode, "2 passed" in run.stdout), run.stdout[-2000:]
