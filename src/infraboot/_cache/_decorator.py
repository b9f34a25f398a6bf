"""``@cached``: a cache in front of an async function (or method)."""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Any, Generic, ParamSpec, TypeVar

from infraboot._base._checks import seconds_problem
from infraboot.exceptions import ConfigError

from ._codec import Serializer
from ._core import Cache, Plan
from ._keys import KeyBuilder
from ._l2 import SystemSource

__all__ = ["CachedFunction", "cached"]

P = ParamSpec("P")
R = TypeVar("R")

Tags = Collection[str] | Callable[..., Collection[str]]


class CachedFunction(Generic[P, R]):
    """An async function behind a :class:`Cache`; call it as the function itself.

    - ``await fn.invalidate(*args, **kwargs)``: drop the value of that call (everywhere);
    - ``await fn.invalidate_all()``: drop every value of this function (whatever its key template);
    - ``fn.cache``: the :class:`Cache` (``fn.cache.stats()``, ``fn.cache.delete_tag(...)``);
    - ``fn.key(*args, **kwargs)``: the key a call uses (without the namespace).
    """

    def __init__(
        self,
        fn: Callable[P, Awaitable[R]],
        cache: Cache,
        keys: KeyBuilder,
        *,
        ttl: float | None,
        stale_ttl: float | None,
        tags: Tags,
        lock: float | None,
    ) -> None:
        functools.update_wrapper(self, fn)
        self.__wrapped__ = fn
        self._fn = fn
        self.cache = cache
        self._keys = keys
        self.ttl = ttl
        self.stale_ttl = stale_ttl
        self._tags = tags
        self._lock = lock
        self._index = cache.index_key(keys.qualname)
        self._plan = None if callable(tags) else Plan(ttl, stale_ttl, tuple(tags), lock, self._index)

    def key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The key (without the namespace) of a call with these arguments."""
        return self._keys(args, kwargs)

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        cache = self.cache
        full = cache.prefix + self._keys(args, kwargs)
        # The hot path, inlined: a fresh L1 entry is returned without another call or a closure.
        entry = cache.l1.get(full, now := time.monotonic())
        if entry is not None and now < entry.fresh_until:
            cache.counters.l1_hits += 1
            return entry.value  # type: ignore[no-any-return]
        plan = self._plan
        if plan is None:
            tags = self._tags(*args, **kwargs)  # type: ignore[operator]
            plan = Plan(self.ttl, self.stale_ttl, tuple(tags), self._lock, self._index)
        return await cache.serve(full, lambda: self._fn(*args, **kwargs), plan)

    async def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """Drop the cached value of the call with these arguments, in every process."""
        await self.cache.delete(self._keys(args, kwargs))

    async def invalidate_all(self) -> None:
        """Drop every cached value of this function, in every process, and no other function's: each value
        is stored with the function's own index (a tag named by ``module.qualname``), whatever its key."""
        await self.cache.delete_function(self._keys.qualname)

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return _Bound(self, instance)

    def __repr__(self) -> str:
        return f"<cached {self._keys.qualname} {self.cache!r}>"


class _Bound:
    """A cached method bound to its instance: ``obj.method(...)``, ``obj.method.invalidate(...)``."""

    __slots__ = ("_of", "_self")

    def __init__(self, of: CachedFunction[..., Any], instance: object) -> None:
        self._of = of
        self._self = instance

    def __call__(self, *args: Any, **kwargs: Any) -> Awaitable[Any]:
        return self._of(self._self, *args, **kwargs)

    async def invalidate(self, *args: Any, **kwargs: Any) -> None:
        await self._of.invalidate(self._self, *args, **kwargs)

    async def invalidate_all(self) -> None:
        await self._of.invalidate_all()

    def key(self, *args: Any, **kwargs: Any) -> str:
        return self._of.key(self._self, *args, **kwargs)

    @property
    def cache(self) -> Cache:
        return self._of.cache


def cached(
    ttl: float,
    *,
    key: str | Callable[..., str] | None = None,
    stale_ttl: float | None = None,
    tags: Tags = (),
    lock: float | None = None,
    cache: Cache | None = None,
    redis: str | None = None,
    namespace: str | None = None,
    version: int | None = None,
    l1_size: int | None = None,
    l1_ttl: float | None = None,
    serializer: Serializer | None = None,
    compress_over: int | None = 1024,
    required: bool | None = None,
    system: SystemSource = None,
) -> Callable[[Callable[P, Awaitable[R]]], CachedFunction[P, R]]:
    """Cache an async function's results for *ttl* seconds, in process (L1) and in Redis (L2).

    ::

        @cached(ttl=60, key="user:{user_id}", stale_ttl=30)
        async def get_user(user_id: int) -> dict: ...

        await get_user(7)                 # computed once, then served from L1 / Redis
        await get_user.invalidate(7)      # dropped here, in Redis, and in every other process

    - ``key``: a template over the parameter names, a callable with the function's signature, or
      ``None``: ``module.qualname:`` and the arguments (``self``/``cls`` left out).
    - ``stale_ttl``: after *ttl*, serve the old value this long while one refresh runs.
    - ``tags``: tag names (or a callable of the arguments returning them) for ``cache.delete_tag``.
    - ``lock``: seconds of a Redis lock that keeps other processes from computing the same key at once.
    - ``cache``: share a :class:`Cache` (and its L1) between functions; the remaining keywords
      (``redis``, ``namespace``, ``version``, ``l1_size``, ``l1_ttl``, ``serializer``,
      ``compress_over``, ``required``, ``system``) build one for this function instead, see :class:`Cache`.
      ``system`` may be a function returning the system (``system=lambda: app_system``): the decorator
      runs at import, the app factory builds the system later, the first call finds it.

    Concurrent calls with the same key run the function once. Redis being down costs no waiting:
    the call is served from L1 or runs the function (see ``docs/cache.md``).
    """
    problems = [
        p
        for p in (
            seconds_problem("ttl", ttl, example="@cached(ttl=60)"),
            # lock: how long other processes wait for the value; None: no lock.
            seconds_problem("lock", lock, allow_none=True, example="lock=2.0 (or None)"),
        )
        if p is not None
    ]
    if problems:
        raise ConfigError("@cached: " + "; ".join(problems), problems=tuple(problems))
    own: dict[str, Any] = {
        "redis": redis,
        "namespace": namespace,
        "version": version,
        "l1_size": l1_size,
        "l1_ttl": l1_ttl,
        "serializer": serializer,
        "required": required,
        "system": system,
    }
    given = {k: v for k, v in own.items() if v is not None}
    if cache is not None:
        if given or compress_over != 1024:
            names = sorted({*given, *(["compress_over"] if compress_over != 1024 else [])})
            msg = f"@cached(cache=...) takes its settings from the Cache; drop {names} or drop cache="
            raise ConfigError(msg)
        target = cache
    else:
        namespace_ = given.pop("namespace", "cache")
        target = Cache(namespace_, ttl=ttl, stale_ttl=stale_ttl, compress_over=compress_over, **given)

    def decorate(fn: Callable[P, Awaitable[R]]) -> CachedFunction[P, R]:
        if not inspect.iscoroutinefunction(fn):
            msg = f"@cached wraps async functions; {getattr(fn, '__qualname__', fn)!r} is not one (make it async def)"
            raise ConfigError(msg)
        return CachedFunction(fn, target, KeyBuilder(fn, key), ttl=ttl, stale_ttl=stale_ttl, tags=tags, lock=lock)

    return decorate
