"""A component of your own, with a requirement and a health check.

Runs on the embedded defaults (memory:// Redis) with no server:

    python examples/custom_component.py

or against a real Redis with REDIS_URL=redis://127.0.0.1:6379/0.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import infraboot


class RateLimiter:
    """A toy rate limiter kept in Redis."""

    def __init__(self, redis: Any, limit: int) -> None:
        self.redis, self.limit = redis, limit

    async def allow(self, key: str) -> bool:
        count = await self.redis.incr(f"ratelimit:{key}")
        return int(count) <= self.limit


async def limiter_is_healthy(limiter: RateLimiter) -> None:
    await limiter.redis.ping()


@infraboot.component("ratelimiter", requires=["redis"], required=False, timeout=2.0, check=limiter_is_healthy)
async def ratelimiter(ctx: infraboot.Context) -> AsyncIterator[RateLimiter]:
    limiter = RateLimiter(ctx.get("redis"), limit=2)
    yield limiter  # setup above, teardown below
    await limiter.redis.delete("ratelimit:demo")


async def main() -> None:
    os.environ.setdefault("REDIS_URL", "memory://")
    infraboot.register(ratelimiter)
    report = await infraboot.ensure_initialized(["ratelimiter"])
    print(report.render())
    limiter: RateLimiter = infraboot.get("ratelimiter")
    print([await limiter.allow("demo") for _ in range(3)])  # [True, True, False]
    await infraboot.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
