"""A two-level cache that knows when Redis is down: ``from infraboot.cache import cached, Cache``.

::

    from infraboot.cache import cached

    @cached(ttl=60, key="user:{user_id}")
    async def get_user(user_id: int) -> dict: ...

L1 is an in-process LRU, L2 the Redis component (its pool and settings). Concurrent misses
run the function once; invalidations reach every process's L1 over pub/sub. While the Redis
component is unhealthy, or right after the cache saw it fail, Redis is skipped without any
network wait and L1 keeps serving; it is used again by itself once Redis answers.
``import infraboot`` does not import this module, and this module imports no driver.
"""

from __future__ import annotations

from ._cache._codec import JsonSerializer, Serializer
from ._cache._core import Cache
from ._cache._decorator import CachedFunction, cached
from ._cache._match import glob_escape, match_field
from ._cache._metrics import CacheCollector, register_cache_metrics
from ._cache._warmup import WarmupReport, warmup
from .exceptions import CacheUnavailableError, ValueTooLargeError

__all__ = [
    "Cache",
    "CacheCollector",
    "CacheUnavailableError",
    "CachedFunction",
    "JsonSerializer",
    "Serializer",
    "ValueTooLargeError",
    "WarmupReport",
    "cached",
    "glob_escape",
    "match_field",
    "register_cache_metrics",
    "warmup",
]
