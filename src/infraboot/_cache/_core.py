"""The two-level cache: a local LRU in front of the Redis component, coalesced and outage-aware."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Coroutine
from typing import Any, NamedTuple, TypeVar

from infraboot._base._checks import seconds_problem
from infraboot._base._log import event
from infraboot._engine._backoff import backoff
from infraboot._engine._graph import is_name
from infraboot._engine._system import SystemInitializer
from infraboot.exceptions import ConfigError

from ._codec import Codec, DecodeError, JsonSerializer, OversizeError, Serializer
from ._coherence import CHANNEL, Hub, hub_for
from ._held import Held
from ._l1 import Entry, LocalLevel
from ._l2 import BYPASS, TEXT_HINT, CacheUnavailableError, SharedLevel, SystemSource, _Bypass, system_source
from ._match import full_pattern, glob_escape, glob_matcher
from ._metrics import track
from ._stats import Counters

__all__ = ["MISSING", "Cache", "Plan", "reset_local_levels"]

T = TypeVar("T")


class Plan(NamedTuple):
    """How one get_or_set stores its value: seconds fresh, seconds stale after that, tags, lock seconds,
    and the index of the ``@cached`` function that stores it (the Redis set ``invalidate_all`` empties)."""

    ttl: float | None
    stale_ttl: float | None
    tags: Collection[str]
    lock: float | None
    fn_index: str | None = None


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
_RETRY: Any = _Missing()  # what waiters get when the call they shared was cancelled
_MESSAGE_KEYS_MAX = 1000  # a delete_tag names up to this many keys in its message; beyond, the namespace goes


def _seconds(
    problems: list[str], field: str, value: object, example: str, *, none_ok: bool = False, zero_ok: bool = False
) -> None:
    problem = seconds_problem(field, value, allow_none=none_ok, allow_zero=zero_ok, example=example)
    if problem is not None:
        problems.append(problem + (" (or None)" if none_ok else ""))


def _count(problems: list[str], field: str, value: object, *, minimum: int, none_ok: bool = False) -> None:
    if value is None and none_ok:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        problems.append(f"{field}={value!r}: must be a whole number >= {minimum}{' or None' if none_ok else ''}")


def _problems(given: dict[str, Any]) -> list[str]:
    """One line per bad Cache setting, naming the field and what it must be."""
    problems: list[str] = []
    namespace, redis, serializer = given["namespace"], given["redis"], given["serializer"]
    if not isinstance(namespace, str) or not namespace or any(c in namespace for c in " \n*?[]{}"):
        problems.append(f"namespace={namespace!r}: must be a non-empty string without spaces or glob characters")
    _seconds(problems, "ttl", given["ttl"], "ttl=300")
    _seconds(problems, "stale_ttl", given["stale_ttl"], "stale_ttl=60", none_ok=True, zero_ok=True)
    if not isinstance(redis, str) or not is_name(redis):
        problems.append(f"redis={redis!r}: must be the name of a Redis component, e.g. redis='redis' or 'cache'")
    _count(problems, "l1_size", given["l1_size"], minimum=0)
    _seconds(problems, "l1_ttl", given["l1_ttl"], "l1_ttl=5", none_ok=True)
    if serializer is not None and not isinstance(serializer, Serializer):
        problems.append(f"serializer={serializer!r}: must have dumps(value) -> bytes and loads(bytes) -> value")
    _count(problems, "compress_over", given["compress_over"], minimum=0, none_ok=True)
    _count(problems, "max_value_size", given["max_value_size"], minimum=1, none_ok=True)
    _seconds(problems, "op_timeout", given["op_timeout"], "op_timeout=0.25")
    _seconds(problems, "retry_interval", given["retry_interval"], "retry_interval=1")
    _count(problems, "version", given["version"], minimum=0)
    for field in ("required", "coherence"):
        if not isinstance(given[field], bool):
            problems.append(f"{field}={given[field]!r}: must be True or False")
    return problems


class Cache:
    """A two-level cache: an in-process LRU (L1) in front of a Redis component (L2).

    ::

        users = Cache("users", ttl=300)
        user = await users.get_or_set(f"user:{uid}", lambda: load_user(uid))
        await users.delete(f"user:{uid}")        # every process drops it from its L1 too

    - ``namespace`` / ``version``: keys are ``namespace:vVERSION:key``; bump *version* to drop them all.
    - ``redis``: the Redis component used as L2 (``"redis"``, or a named instance such as ``"cache"``),
      with its pool and settings; ``system``: its system (default: the default system), or a function
      returning it, called when the cache is used: a cache made at import (``@cached`` on a route) can
      serve a system an app factory builds later; used before that function has one (it returns
      ``None``), the cache raises :class:`~infraboot.NotInitializedError` naming the fix.
    - ``ttl`` / ``stale_ttl``: seconds a value is fresh / then still served while one refresh runs.
    - ``l1_size`` (entries), ``l1_ttl`` (caps an entry's lifetime in L1; ``None``: the value's TTL).
    - ``serializer``: JSON by default (safe on bytes another process wrote); ``compress_over``: zlib
      above this many bytes (``None``: never); ``max_value_size``: bytes serialized (before compression),
      :class:`ValueTooLargeError` above; an entry read from Redis is never inflated past it either.
    - ``op_timeout``: seconds any one Redis call may take (default 0.25) before L2 is bypassed;
      ``retry_interval``: seconds before one call tries a bypassed Redis again (default 1).
    - ``required``: ``False`` (default) serves L1 and calls through while Redis is down, never raising a
      Redis error; ``True`` raises :class:`CacheUnavailableError` instead.
    - ``coherence``: publish invalidations so other processes drop them from their L1 (default ``True``).

    Every setting is checked here, before any I/O: a :class:`~infraboot.ConfigError` names each bad one.
    """

    def __init__(
        self,
        namespace: str = "cache",
        *,
        ttl: float = 300.0,
        stale_ttl: float | None = None,
        redis: str = "redis",
        system: SystemSource = None,
        l1_size: int = 4096,
        l1_ttl: float | None = None,
        serializer: Serializer | None = None,
        compress_over: int | None = 1024,
        max_value_size: int | None = 1_000_000,
        op_timeout: float = 0.25,
        retry_interval: float = 1.0,
        required: bool = False,
        coherence: bool = True,
        version: int = 1,
    ) -> None:
        settings = dict(locals())
        del settings["self"], settings["system"]
        problems = _problems(settings)
        if problems:
            raise ConfigError("Cache: " + "; ".join(problems), problems=tuple(problems))
        system = system_source(system, "Cache")

        self.namespace = namespace
        self.version = version
        self.prefix = f"{namespace}:v{version}:"
        self.ttl = float(ttl)
        self.stale_ttl = None if stale_ttl is None else float(stale_ttl)
        self.l1_ttl = l1_ttl
        self.redis = redis
        self.required = required
        self.coherence = coherence
        self.codec = Codec(serializer or JsonSerializer(), compress_over, max_value_size)
        self.l1 = LocalLevel(l1_size)
        self.l2 = SharedLevel(
            redis,
            system,
            op_timeout=op_timeout,
            retry_interval=retry_interval,
            required=required,
            on_recovered=self._on_l2_recovered,
        )
        self.counters = Counters()
        self._inflight: dict[str, asyncio.Future[Any]] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._epoch = 0  # bumped by every invalidation: a load that saw it change does not store its value
        self._held = Held(self.prefix)
        self._warned_text = False
        self._unshared_logged = False
        self._lazy = callable(system) and not isinstance(system, SystemInitializer)
        self._hub_seen: Hub | None = None
        if not self._lazy:  # a system given (or the default one): its hub now, as every process has it
            self._attach(hub_for(redis, system))  # type: ignore[arg-type]
        track(self)

    def _attach(self, hub: Hub) -> Hub:
        hub.retry_interval = min(hub.retry_interval, self.l2.retry_interval)
        hub.attach(self)
        self._hub_seen = hub
        return hub

    @property
    def _hub(self) -> Hub:
        """The invalidation hub of the cache's system; a ``system=`` function's system is looked up at each use
        (:class:`~infraboot.NotInitializedError` before it has one), so a cache follows the app it serves."""
        hub = self._hub_seen
        if not self._lazy and hub is not None:
            return hub
        found = hub_for(self.redis, self.l2.system())
        return found if found is hub else self._attach(found)

    # -- keys ------------------------------------------------------------------------------------

    def full_key(self, key: str) -> str:
        """The Redis key of *key*: ``namespace:vVERSION:key``."""
        return self.prefix + key

    def _tag_key(self, tag: str) -> str:
        return f"{self.prefix}__tag__:{tag}"

    def index_key(self, qualname: str) -> str:
        """The Redis set of every key a ``@cached`` function *qualname* stored (what ``invalidate_all`` empties)."""
        return f"{self.prefix}__fn__:{qualname}"

    # -- reading ---------------------------------------------------------------------------------

    async def get(self, key: str, default: Any = None) -> Any:
        """The value of *key* (L1, then Redis), or *default*. A stale value counts as present."""
        value = await self._read(self.full_key(key))
        return default if value is MISSING else value

    async def _read(self, full: str) -> Any:
        now = time.monotonic()
        entry = self.l1.get(full, now)
        if entry is not None:
            if now < entry.fresh_until:
                self.counters.l1_hits += 1
            else:
                self.counters.l1_stale += 1
            return entry.value
        self.counters.l1_misses += 1
        value, _fresh = await self._read_l2(full, self.stale_ttl)
        return value

    async def _read_l2(self, full: str, stale_ttl: float | None) -> tuple[Any, bool]:
        """``(value or MISSING, fresh)`` from Redis; a hit is copied into L1 unless an invalidation came
        while the GET was in flight (its answer may predate the invalidation: it must not outlive it)."""
        epoch = self._epoch
        data = await self.l2.get(full)
        if data is BYPASS:
            return MISSING, False
        self.l2_used()
        if data is None:
            self.counters.l2_misses += 1
            return MISSING, False
        try:
            value, fresh_until_wall, tags = self.codec.decode(data)
        except DecodeError as exc:
            self.counters.l2_misses += 1
            if isinstance(exc, OversizeError):
                self.counters.oversized_reads += 1
            if isinstance(data, str) and not self._warned_text:
                self._warned_text = True
                event(logging.WARNING, "cache_needs_bytes", self.redis, hint=TEXT_HINT)
            return MISSING, False
        left = fresh_until_wall - time.time()
        now = time.monotonic()
        stale = stale_ttl or 0.0
        if left > 0:
            self.counters.l2_hits += 1
            if epoch == self._epoch:
                self._keep(full, value, now + left, now + left + stale, tags)
            return value, True
        if stale and -left < stale:
            self.counters.l2_stale += 1
            if epoch == self._epoch:
                self._keep(full, value, now, now + stale + left, tags)
            return value, False
        self.counters.l2_misses += 1
        return MISSING, False

    def _keep(self, full: str, value: Any, fresh_until: float, stale_until: float, tags: Collection[str]) -> None:
        if self.l1.maxsize == 0:
            return
        if self.l1_ttl is not None:
            cap = time.monotonic() + self.l1_ttl
            fresh_until, stale_until = min(fresh_until, cap), min(stale_until, cap)
        self.l1.set(full, Entry(value, fresh_until, stale_until, tags))

    # -- get or compute -----------------------------------------------------------------------------

    def get_or_set(
        self,
        key: str,
        compute: Callable[[], Awaitable[T]],
        *,
        ttl: float | None = None,
        stale_ttl: float | None = None,
        tags: Collection[str] = (),
        lock: float | None = None,
    ) -> Coroutine[Any, Any, T]:
        """``await cache.get_or_set(key, compute)``: the value of *key*, computing it with ``await compute()``
        on a miss (and storing it).

        Concurrent misses for one key in this process share one ``compute()``; with *lock* (seconds),
        a short Redis lock makes other processes wait for the value instead of computing it too.
        With *stale_ttl*, a stale value is returned at once while one refresh runs in the background.
        An exception of *compute* reaches every waiting caller and nothing is stored.
        """
        return self.serve(self.prefix + key, compute, Plan(ttl, stale_ttl, tags, lock))

    async def serve(self, full: str, compute: Callable[[], Awaitable[T]], plan: Plan) -> T:
        """:meth:`get_or_set` by full key and :class:`Plan` (what ``@cached`` calls: no coroutine in between)."""
        now = time.monotonic()
        entry = self.l1.get(full, now)
        if entry is not None:
            if now < entry.fresh_until:
                self.counters.l1_hits += 1
                return entry.value  # type: ignore[no-any-return]
            self.counters.l1_stale += 1
            self._refresh(full, compute, plan)
            return entry.value  # type: ignore[no-any-return]
        self.counters.l1_misses += 1
        shared = self._inflight.get(full)
        if shared is None:  # this caller loads; the others wait for it (inlined _lead: one coroutine less)
            shared = self._claim(full)
            try:
                value = await self._load(full, compute, plan, read_l2=True)
            except asyncio.CancelledError:
                shared.set_result(_RETRY)
                raise
            except BaseException as exc:
                shared.set_exception(exc)
                shared.exception()  # retrieved: with no waiter, nothing is logged at garbage collection
                raise
            else:
                shared.set_result(value)
                return value
            finally:
                if self._inflight.get(full) is shared:
                    del self._inflight[full]
        self.counters.coalesced += 1
        # Shielded: a waiter that gives up (a cancelled request) leaves the shared result alone.
        result = await asyncio.shield(shared)
        if result is _RETRY:  # the leader was cancelled: go again (one of the waiters leads now)
            return await self.serve(full, compute, plan)
        return result  # type: ignore[no-any-return]

    def _claim(self, full: str) -> asyncio.Future[Any]:
        """Make this caller the one loading *full*: later callers wait for the returned future."""
        shared: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._inflight[full] = shared
        return shared

    async def _lead(
        self, full: str, compute: Callable[[], Awaitable[T]], plan: Plan, shared: asyncio.Future[Any], *, read_l2: bool
    ) -> T:
        """Load *full* (a background refresh); waiters share the outcome. get_or_set has this inlined."""
        try:
            value = await self._load(full, compute, plan, read_l2=read_l2)
        except asyncio.CancelledError:
            shared.set_result(_RETRY)
            raise
        except BaseException as exc:
            shared.set_exception(exc)
            shared.exception()  # retrieved: with no waiter, nothing is logged at garbage collection
            raise
        else:
            shared.set_result(value)
            return value
        finally:
            if self._inflight.get(full) is shared:
                del self._inflight[full]

    def _refresh(self, full: str, compute: Callable[[], Awaitable[Any]], plan: Plan) -> None:
        if full in self._inflight:
            return
        coro = self._lead(full, compute, plan._replace(lock=None), self._claim(full), read_l2=False)
        task = self._spawn(coro, f"infraboot-cache-refresh:{full}")
        self.counters.refreshes += 1
        task.add_done_callback(self._refresh_done)

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Background work of the cache's system, so that its shutdown cancels and awaits it."""
        try:
            system = self.l2.system()
            task = system.spawn(coro, name=name) if system.phase == "running" else None
        except Exception:  # no system to own it (not initialized, gone): the loop does
            task = None
        if task is None:
            task = asyncio.get_running_loop().create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def _refresh_done(self, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.counters.refresh_errors += 1
            event(logging.WARNING, "cache_refresh_failed", self.redis, error=type(task.exception()).__name__)

    async def _load(self, full: str, compute: Callable[[], Awaitable[T]], plan: Plan, *, read_l2: bool) -> T:
        stale = self.stale_ttl if plan.stale_ttl is None else plan.stale_ttl
        epoch = self._epoch
        if read_l2:
            value, fresh = await self._read_l2(full, stale)
            if value is not MISSING:
                if not fresh:  # stale in Redis: refresh once this load is done (it holds the key's slot now)
                    asyncio.get_running_loop().call_soon(self._refresh, full, compute, plan)
                return value  # type: ignore[no-any-return]
        token = None
        if plan.lock is not None:
            token, found = await self._lock(full, plan.lock, stale)
            if found is not MISSING:
                return found  # type: ignore[no-any-return]
        try:
            result = await compute()
            self.counters.calls += 1
            if epoch == self._epoch:  # not invalidated while it ran: it may be kept
                await self._store(full, result, plan.ttl, stale, plan.tags, raise_too_large=False, index=plan.fn_index)
            return result
        finally:
            if token is not None:
                await self.l2.run(lambda c: c.delete(f"{full}:__lock__"))

    async def _lock(self, full: str, seconds: float, stale: float | None) -> tuple[str | None, Any]:
        """Take the cross-process lock of *full*, or wait (up to *seconds*) for its holder's value."""
        token = uuid.uuid4().hex
        got = await self.l2.run(lambda c: c.set(f"{full}:__lock__", token, nx=True, px=max(1, int(seconds * 1000))))
        if got is BYPASS or got:
            return (None if got is BYPASS else token), MISSING
        self.counters.lock_waits += 1
        deadline = time.monotonic() + seconds
        polls = 0
        while time.monotonic() < deadline:
            polls += 1
            # Polling Redis for another process' value: nothing here to await instead.
            await asyncio.sleep(
                min(backoff(polls, initial=0.01, maximum=0.05, forever=True), deadline - time.monotonic())
            )
            value, _fresh = await self._read_l2(full, stale)
            if value is not MISSING:
                return None, value
        return None, MISSING

    # -- writing ---------------------------------------------------------------------------------

    async def set(
        self,
        key: str,
        value: Any,
        *,
        ttl: float | None = None,
        stale_ttl: float | None = None,
        tags: Collection[str] = (),
    ) -> None:
        """Store *value* under *key* in L1 and Redis, and drop *key* from every other process' L1.

        :class:`ValueTooLargeError` over ``max_value_size``; ``TypeError`` when the serializer cannot
        hold it. Redis being down is no error: the value is kept in this process' L1 only until Redis
        answers again (at most its TTL), counted in ``unshared_sets`` and logged once per outage
        (``cache_set_not_shared``); once Redis answers, the key is deleted there and in every L1, so
        that all processes read the same again (see docs/cache.md, "Coherence contract").
        """
        self._epoch += 1  # a load or a read in flight for this key must not overwrite a value set by hand
        full = self.full_key(key)
        stale = self.stale_ttl if stale_ttl is None else stale_ttl
        self._hub.apply_here("key", full, exclude=self)  # other caches of this process on the same key
        stored = await self._store(full, value, ttl, stale, tags, publish=True)
        if stored:
            self.l2_used()  # a process that only writes keeps values in L1 too: it must hear other processes
        else:
            self.counters.unshared_sets += 1
            if not self._unshared_logged:
                self._unshared_logged = True
                event(logging.WARNING, "cache_set_not_shared", self.redis, namespace=self.namespace)
            self._hold("key", full)

    async def _store(
        self,
        full: str,
        value: Any,
        ttl: float | None,
        stale_ttl: float | None,
        tags: Collection[str],
        *,
        raise_too_large: bool = True,
        index: str | None = None,
        publish: bool = False,
    ) -> bool:
        """Keep *value* in L1 and write it to Redis; ``False`` when Redis was not reached."""
        fresh = self.ttl if ttl is None else ttl
        stale = stale_ttl or 0.0
        full_tags = [self._tag_key(t) for t in tags]
        if index is not None:
            full_tags.append(index)
        try:
            data = self.codec.encode(value, time.time() + fresh, full_tags, key=full)
        except (ValueError, TypeError) as exc:  # too large (a ValueError), a NUL in a tag, not serializable
            if raise_too_large:
                raise
            self.counters.not_stored += 1
            event(logging.WARNING, "cache_value_not_stored", self.redis, key=full, error=str(exc))
            return True
        now = time.monotonic()
        self._keep(full, value, now + fresh, now + fresh + stale, full_tags)
        px = max(1, int((fresh + stale) * 1000))
        message = self._hub.message("key", full) if publish and self.coherence else None

        async def write(client: Any) -> Any:
            if not full_tags and message is None:
                return await client.set(full, data, px=px)
            pipe = client.pipeline(transaction=False)
            pipe.set(full, data, px=px)
            for tag_key in full_tags:
                pipe.sadd(tag_key, full)
                # The set lives as long as its longest-lived member: NX gives a new set its first TTL, GT only
                # ever lengthens it (a shorter-lived member must not make the set forget a longer-lived one).
                pipe.pexpire(tag_key, px, nx=True)
                pipe.pexpire(tag_key, px, gt=True)
            if message is not None:
                pipe.publish(CHANNEL, message)
            return await pipe.execute()

        return await self.l2.run(write) is not BYPASS

    # -- invalidation ------------------------------------------------------------------------------

    async def delete(self, key: str) -> None:
        """Drop *key* from L1 and Redis, and from every other process' L1."""
        await self._invalidate("key", self.full_key(key))

    async def delete_prefix(self, prefix: str) -> None:
        """Drop every key starting with *prefix* (within this namespace), here, in Redis and elsewhere."""
        await self._invalidate("prefix", self.full_key(prefix))

    async def delete_match(self, pattern: str) -> None:
        """Drop every key (within this namespace) matching the Redis glob *pattern*, here, in Redis and elsewhere.

        ``*`` any text, ``?`` one character, ``[abc]`` / ``[a-z]`` / ``[^a]`` a set, ``\\x`` the character
        ``x`` itself. A user-supplied part must not widen the match: put it in through
        :func:`~infraboot.cache.match_field` for keys a ``@cached`` template made (the text the template
        stored, which holds no glob character), or :func:`~infraboot.cache.glob_escape` for keys written
        by hand::

            @cached(ttl=60, key="user_{user_id}_items:{page}", cache=items)
            async def user_items(user_id: str, page: int) -> list: ...

            await items.delete_match(f"user_{match_field(user_id)}_items:*")   # every page of that user

        Redis is searched with ``SCAN MATCH`` (every key of the database is visited; bounded by
        ``op_timeout`` as a whole, as :meth:`delete_prefix` is); a bad pattern (an unclosed ``[``, a
        trailing ``\\``) is a :class:`~infraboot.ConfigError` before any I/O.
        """
        await self._invalidate("match", full_pattern(self.prefix, pattern))

    async def delete_tag(self, tag: str) -> None:
        """Drop every key stored with ``tags=[tag]``, here, in Redis and elsewhere."""
        await self._invalidate("tag", self._tag_key(tag))

    async def delete_function(self, qualname: str) -> None:
        """Drop every key the ``@cached`` function *qualname* (``module.qualname``) stored, here, in Redis
        and elsewhere (what ``fn.invalidate_all()`` calls)."""
        await self._invalidate("tag", self.index_key(qualname))

    async def clear(self) -> None:
        """Drop every key of this namespace and version."""
        await self._invalidate("prefix", self.prefix)

    def _apply_local(self, op: str, arg: str) -> None:
        self._epoch += 1
        if op == "key":
            self.l1.delete(arg)
        elif op == "prefix":
            self.l1.delete_prefix(arg)
        elif op == "tag":
            self.l1.delete_tag(arg)
        elif op == "match":
            self.l1.delete_where(glob_matcher(arg))

    async def _invalidate(self, op: str, arg: str) -> None:
        self._apply_local(op, arg)
        self._hub.apply_here(op, arg, exclude=self)  # other caches of this process on the same keys
        self.counters.invalidations += 1
        if not await self._invalidate_l2(op, arg):
            self._hold(op, arg)

    async def _invalidate_l2(self, op: str, arg: str, *, trial: bool = False) -> bool:
        """Remove in Redis and publish. A tag's members are dropped from every L1 by name too: an entry
        re-set since without the tag is gone from Redis, so it must not live on in any L1 either."""
        publish = self._hub.message if self.coherence else None
        members = await self.l2.run(lambda client: _remove(client, op, arg, publish, self.prefix), trial=trial)
        if isinstance(members, _Bypass):
            return False
        for key in members:
            self._apply_local("key", key)
            self._hub.apply_here("key", key, exclude=self)
        return True

    def _hold(self, op: str, arg: str) -> None:
        """Keep an invalidation Redis did not get, for the listener to send the moment Redis answers."""
        self._held.add(op, arg)
        self._hub.ensure_listening()  # the listener replays it; it runs (and retries) while Redis is away

    @property
    def pending(self) -> int:
        """Invalidations held for Redis (the whole namespace counts as one when more overflowed)."""
        return len(self._held)

    def _on_l2_recovered(self) -> None:
        """Redis answers again: send the invalidations that could not reach it meanwhile."""
        self._unshared_logged = False
        if self._held and not self._held.flushing:
            self._spawn(self.flush_pending(), "infraboot-cache-replay")

    async def flush_pending(self, *, trial: bool = False) -> bool:
        """Send the held invalidations, oldest first, each applied again in this process too (a value set
        here while Redis was away is dropped with it, so every process reads the same afterwards);
        stops at the first that fails. ``True`` when none is left. *trial*: try even inside the bypass
        window (the listener just heard Redis answer)."""

        async def send(op: str, arg: str) -> bool:
            self._apply_local(op, arg)
            return await self._invalidate_l2(op, arg, trial=trial)

        try:
            return await self._held.flush(send)
        except CacheUnavailableError:  # a required cache whose Redis is still away: held, as it was
            return False

    def report_dropped(self) -> None:
        """Shutdown came with invalidations still held: count and log them (Redis may serve those keys)."""
        dropped = self._held.clear()
        if dropped:
            self.counters.invalidations_dropped += dropped
            event(
                logging.ERROR,
                "cache_invalidations_dropped",
                self.redis,
                namespace=self.namespace,
                count=dropped,
                hint="Redis may serve these keys until their TTL; delete them there, or clear the namespace",
            )

    def reset_local(self) -> None:
        """Empty L1 and forget held invalidations (the test kit calls this between tests)."""
        self._epoch += 1
        self.l1.clear()
        self._held.clear()

    # -- coherence ------------------------------------------------------------------------------

    def l2_used(self) -> None:
        """Redis answered: make sure this process listens for other processes' invalidations."""
        if self.coherence:
            self._hub.ensure_listening()

    def apply_invalidation(self, op: str, arg: str, *, remote: bool) -> None:
        """An invalidation from another process, or another cache of this one (called by the hub)."""
        if (
            arg.startswith(self.prefix)
            or (op == "prefix" and self.prefix.startswith(arg))
            or (op == "match" and arg.startswith(glob_escape(self.prefix)))
        ):
            self._apply_local(op, arg)
            if remote:
                self.counters.remote_invalidations += 1

    def remote_lost(self) -> None:
        """The invalidation channel was down for a while: anything in L1 may have been invalidated."""
        self._epoch += 1
        self.l1.clear()

    # -- observability ----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters and state, for health details and dashboards (see :class:`Counters`)."""
        return self.counters.as_dict(
            namespace=self.namespace,
            redis=self.redis,
            l2_state=self.l2.state,
            l2_bypasses=self.l2.bypasses,
            l2_errors=self.l2.errors,
            l1_size=len(self.l1),
            l1_max=self.l1.maxsize,
            l1_evictions=self.l1.evictions,
            coherent=self._hub_seen is not None and self._hub_seen.subscribed,
            pending_invalidations=self.pending,
        )

    def __repr__(self) -> str:
        return (
            f"<Cache {self.namespace!r} v{self.version} redis={self.redis!r} l2={self.l2.state} "
            f"l1={len(self.l1)}/{self.l1.maxsize}>"
        )


async def _remove(
    client: Any, op: str, arg: str, publish: Callable[[str, str, list[str]], str] | None, prefix: str
) -> list[str]:
    """Drop a key, a tag's keys or a prefix's keys in Redis, then tell the other processes; a tag's members."""
    members: list[str] = []
    if op == "key":
        await client.delete(arg)
    elif op == "tag":
        members = [m.decode() if isinstance(m, bytes) else str(m) for m in await client.smembers(arg)]
        await client.delete(arg, *members)
    else:
        match = arg if op == "match" else glob_escape(arg) + "*"
        batch = [k async for k in client.scan_iter(match=match, count=1000)]
        for i in range(0, len(batch), 500):
            await client.unlink(*batch[i : i + 500])
    if publish is not None:
        if len(members) > _MESSAGE_KEYS_MAX:  # too many to name: the other processes drop the namespace
            await client.publish(CHANNEL, publish("prefix", prefix, []))
        else:
            await client.publish(CHANNEL, publish(op, arg, members))
    return members


def reset_local_levels() -> None:
    """Empty the L1 of every live cache of this process (the pytest plugin's per-test reset)."""
    from ._metrics import live

    for cache in live():
        cache.reset_local()
