"""A Redis cache for route handlers, as FastAPI boilerplates write it: ``@cache("item", resource_id_name="item_id")``.

The lifespan sets :data:`client`; until then (and if it is left unset) a cached handler fails.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from redis.asyncio import Redis

P = ParamSpec("P")
R = TypeVar("R")

client: Redis | None = None


def cache(
    key_prefix: str, *, resource_id_name: str, expiration: int = 60
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Keep the handler's JSON result in Redis under ``key_prefix:<resource id>`` for *expiration* seconds."""

    def decorate(func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(func)
        async def inner(*args: P.args, **kwargs: P.kwargs) -> R:
            if client is None:
                msg = "the cache's Redis client is not set: is the app's lifespan running?"
                raise RuntimeError(msg)
            key = f"{key_prefix}:{kwargs[resource_id_name]}"
            cached = await client.get(key)  # Redis down: the request fails with a 500
            if cached is not None:
                result: R = json.loads(cached)
                return result
            result = await func(*args, **kwargs)
            await client.set(key, json.dumps(result), ex=expiration)
            return result

        return inner

    return decorate


async def invalidate(key_prefix: str, resource_id: object) -> None:
    """Drop the cached value of one resource."""
    if client is not None:
        await client.delete(f"{key_prefix}:{resource_id}")
