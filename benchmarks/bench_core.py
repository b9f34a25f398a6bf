"""Core benchmarks: orchestration overhead, DAG startup vs critical path, hot accessor, real startup.

Run with ``nox -s bench`` or ``python benchmarks/bench_core.py``. Medians over repeated runs.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import timeit
from collections.abc import AsyncIterator

import infraboot
from infraboot import SystemInitializer


def noop_components(n: int) -> list[infraboot.Component[int]]:
    out = []
    for i in range(n):

        @infraboot.component(f"c{i}", requires=[f"c{i - 1}"] if i % 10 else [])
        async def comp(ctx: infraboot.Context, i: int = i) -> AsyncIterator[int]:
            yield i

        out.append(comp)
    return out


async def orchestration_us_per_component(n: int = 1000, repeat: int = 7) -> float:
    samples = []
    for _ in range(repeat):
        system = SystemInitializer(noop_components(n))
        t0 = time.perf_counter()
        await system.initialize_all()
        samples.append((time.perf_counter() - t0) / n * 1e6)
        await system.shutdown()
    return statistics.median(samples)


async def dag_ratio(repeat: int = 5, delay: float = 0.02) -> tuple[float, float]:
    """60 components of 20 ms in 3 layers of 20; each requires 2 of the layer before."""
    samples = []
    for _ in range(repeat):
        comps = []
        for layer in range(3):
            for j in range(20):
                reqs = [f"l{layer - 1}_{j}", f"l{layer - 1}_{(j + 1) % 20}"] if layer else []

                @infraboot.component(f"l{layer}_{j}", requires=reqs)
                async def comp(ctx: infraboot.Context) -> AsyncIterator[None]:
                    await asyncio.sleep(delay)
                    yield None

                comps.append(comp)
        system = SystemInitializer(comps)
        t0 = time.perf_counter()
        await system.initialize_all()
        samples.append(time.perf_counter() - t0)
        await system.shutdown()
    median = statistics.median(samples)
    return median, median / (3 * delay)


async def hot_accessor() -> tuple[float, float, float]:
    system = SystemInitializer(noop_components(1))
    await system.initialize_all()
    plain = {"c0": 0}
    n = 1_000_000
    t_get = min(timeit.repeat(lambda: system.get("c0"), number=n, repeat=5)) / n * 1e9
    t_dict = min(timeit.repeat(lambda: plain["c0"], number=n, repeat=5)) / n * 1e9
    await system.shutdown()
    return t_get, t_dict, t_get / t_dict


async def real_startup(repeat: int = 9) -> tuple[float, float] | None:
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    db_url = os.environ.get("BENCH_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    try:
        import redis.asyncio as aioredis
        from sqlalchemy import text
        from sqlalchemy.ext.asyncio import create_async_engine
    except ImportError:
        return None
    from infraboot._components._database import DatabaseComponent
    from infraboot._components._redis import RedisComponent

    async def by_hand() -> float:
        t0 = time.perf_counter()
        client = aioredis.Redis.from_url(redis_url)
        engine = create_async_engine(db_url)

        async def db() -> None:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))

        await asyncio.gather(client.ping(), db())
        took = time.perf_counter() - t0
        await client.aclose()
        await engine.dispose()
        return took

    async def with_infraboot() -> float:
        system = SystemInitializer(
            [
                RedisComponent(infraboot.RedisSettings(url=redis_url, warmup_connections=1)),
                DatabaseComponent(infraboot.DatabaseSettings(url=db_url, warmup_connections=1)),
            ]
        )
        t0 = time.perf_counter()
        await system.ensure_initialized(["redis", "database"])
        took = time.perf_counter() - t0
        await system.shutdown()
        return took

    await by_hand()
    await with_infraboot()  # warm imports on both sides
    hand, ours = [], []
    for _ in range(repeat):  # alternate the two sides
        hand.append(await by_hand())
        ours.append(await with_infraboot())
    return statistics.median(ours) * 1e3, statistics.median(ours) / statistics.median(hand)


async def main() -> None:
    per = await orchestration_us_per_component()
    dag, ratio = await dag_ratio()
    t_get, t_dict, acc_ratio = await hot_accessor()
    real = await real_startup()
    print("| measure | value | target |")
    print("|---|---|---|")
    print(f"| orchestration, 1,000 no-op components | {per:.1f} µs/component | ≤ 30 µs |")
    print(f"| 60 × 20 ms DAG, depth 3 | {dag * 1e3:.1f} ms = {ratio:.3f} × critical path | ≤ 1.10 |")
    print(f"| system.get() vs dict lookup | {t_get:.0f} ns vs {t_dict:.0f} ns = {acc_ratio:.2f}× | ≤ 3.0 |")
    if real:
        label = "ensure_initialized(redis, database) vs hand-written gather"
        print(f"| {label} | {real[0]:.1f} ms = {real[1]:.2f}× | ≤ 1.20 |")


if __name__ == "__main__":
    asyncio.run(main())
