"""Local levels kept coherent across processes: invalidations go out on a Redis pub/sub channel.

One listener per (system, Redis component) in a process, shared by every cache on that Redis.
The bound: while its subscription is up, a process drops an invalidated key from its local
level as soon as the message arrives (milliseconds on a LAN). When the subscription breaks
(Redis down, a partition caught by the listener's ping), messages may be lost: the local
level keeps serving during the outage, each entry at most until its own TTL, and is cleared
the moment the subscription is back.

The listener also sends the invalidations its caches hold for Redis (made while it was away):
as soon as its subscription is up again, at every ping while some are held, and once more, within
:data:`SHUTDOWN_FLUSH` seconds, when shutdown cancels it; what is still held then is logged and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
import uuid
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from infraboot._base._log import event
from infraboot.exceptions import ComponentUnavailableError, NotInitializedError

if TYPE_CHECKING:
    from infraboot._engine._system import SystemInitializer

__all__ = ["CHANNEL", "SHUTDOWN_FLUSH", "Hub", "Listener", "hub_count", "hub_for"]

CHANNEL = "infraboot:cache:invalidate"
_PING_EVERY = 2.0  # seconds between the listener's pings; a silent line is noticed within about twice that
SHUTDOWN_FLUSH = 0.4  # seconds held invalidations get at shutdown (inside the teardown's 0.5 s for background work)


class Listener(Protocol):
    """What a cache offers the hub: apply an invalidation that came from another process."""

    def apply_invalidation(self, op: str, arg: str, *, remote: bool) -> None: ...

    def remote_lost(self) -> None: ...

    @property
    def pending(self) -> int: ...

    async def flush_pending(self, *, trial: bool = False) -> bool: ...

    def report_dropped(self) -> None: ...


class Hub:
    """The subscription of one process to one Redis' invalidation channel."""

    def __init__(
        self, name: str, system: Callable[[], SystemInitializer], ref: weakref.ref[SystemInitializer] | None = None
    ) -> None:
        self.name = name
        self.ref = ref
        self._system = system
        self.sender = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._caches: weakref.WeakSet[Any] = weakref.WeakSet()  # Listener: caches; weakly, a cache may go
        self._task: asyncio.Task[None] | None = None
        self.subscribed = False
        self.received = 0
        self._connected_once = False
        self.retry_interval = 1.0
        self.op_timeout = 0.25
        self.ping_every = _PING_EVERY

    def attach(self, cache: Listener) -> None:
        self._caches.add(cache)

    def message(self, op: str, arg: str, keys: list[str] | None = None) -> str:
        """The invalidation as published: sender, op, arg and, for a tag, the keys it held."""
        body: dict[str, Any] = {"from": self.sender, "op": op, "arg": arg}
        if keys:
            body["keys"] = keys
        return json.dumps(body, separators=(",", ":"))

    def ensure_listening(self) -> None:
        """Start the listener (a background task of the system: shutdown cancels it) if it is not running."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = self._task
        if task is not None and not task.done() and task.get_loop() is loop:
            return
        try:
            system = self._system()
        except NotInitializedError:  # its system is gone: nothing to listen to
            return
        if system.phase == "running":  # a stopping or stopped system takes no new work: the next call tries again
            self._task = system.spawn(self._listen(), name=f"infraboot-cache-listener-{self.name}")

    def _client(self) -> Any:
        try:
            return self._system().get(self.name)
        except (ComponentUnavailableError, NotInitializedError):
            return None

    async def _listen(self) -> None:
        try:
            await self._subscribed()
        except asyncio.CancelledError:
            await self._last_flush()
            raise

    async def _subscribed(self) -> None:
        while True:
            client = self._client()
            if client is None:
                await asyncio.sleep(self.retry_interval)
                continue
            pubsub = client.pubsub()
            try:
                async with asyncio.timeout(self.op_timeout * 4):
                    await pubsub.subscribe(CHANNEL)
                await self._read(pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.subscribed:
                    event(logging.WARNING, "cache_invalidation_channel_lost", self.name, error=type(exc).__name__)
                self.subscribed = False
                await asyncio.sleep(self.retry_interval)
            finally:
                self.subscribed = False
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(self.op_timeout):
                        await asyncio.shield(pubsub.aclose())

    async def _confirmed(self) -> None:
        """Redis confirmed a subscription: the first, or one redis-py made again by itself after a dropped
        connection (it reconnects and resubscribes silently). Messages of the gap are lost: clear the L1s."""
        if self._connected_once:
            for cache in list(self._caches):
                cache.remote_lost()
        self._connected_once = True
        self.subscribed = True
        for cache in list(self._caches):
            cache.l2.answered()  # Redis just answered us: no cache need wait for its trial call
        await self._flush(trial=True)

    async def _read(self, pubsub: Any) -> None:
        started = last_seen = last_ping = time.monotonic()
        while True:
            msg = await pubsub.get_message(ignore_subscribe_messages=False, timeout=min(0.5, self.ping_every))
            now = time.monotonic()
            if msg is not None:
                last_seen = now
                kind = msg.get("type")
                if kind == "message":
                    self._dispatch(msg.get("data"))
                elif kind == "subscribe":
                    await self._confirmed()
            if not self.subscribed and now - started > self.op_timeout * 4:
                msg_ = "no confirmation of the invalidation channel's subscription"
                raise TimeoutError(msg_)
            if now - last_ping >= self.ping_every:
                last_ping = now
                async with asyncio.timeout(self.op_timeout * 4):
                    await pubsub.ping()
                await self._flush(trial=True)  # anything still held is tried again at every ping
            if now - last_seen > 2 * self.ping_every + self.op_timeout * 4:
                msg_ = "no answer to the invalidation channel's ping"
                raise TimeoutError(msg_)

    def _dispatch(self, data: Any) -> None:
        try:
            parsed = json.loads(data)
            sender, op, arg = parsed["from"], parsed["op"], parsed["arg"]
            keys = [str(k) for k in parsed.get("keys", ())]
        except (ValueError, TypeError, KeyError, AttributeError):
            return
        if sender == self.sender:
            return  # ours: already applied locally
        self.received += 1
        for cache in list(self._caches):
            cache.apply_invalidation(str(op), str(arg), remote=True)
            for key in keys:
                cache.apply_invalidation("key", key, remote=False)

    def apply_here(self, op: str, arg: str, *, exclude: object = None) -> None:
        """An invalidation made in this process: every other cache of this process on this Redis applies it."""
        for cache in list(self._caches):
            if cache is not exclude:
                cache.apply_invalidation(op, arg, remote=False)

    async def _flush(self, *, trial: bool) -> None:
        for cache in list(self._caches):
            if cache.pending:
                await cache.flush_pending(trial=trial)

    async def _last_flush(self) -> None:
        """Shutdown cancelled the listener: send what is held within SHUTDOWN_FLUSH, report what is not.
        The teardown cancels again every so often; this cleanup is bounded, so it waits those out."""
        caches = [c for c in list(self._caches) if c.pending]
        if not caches:
            return
        work = asyncio.ensure_future(self._flush(trial=True))
        end = time.monotonic() + SHUTDOWN_FLUSH
        while not work.done() and (left := end - time.monotonic()) > 0:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({work}, timeout=left)
        if not work.done():
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait({work}, timeout=0.05)
        elif not work.cancelled() and work.exception() is not None:
            event(logging.WARNING, "cache_replay_failed", self.name, error=type(work.exception()).__name__)
        for cache in caches:
            cache.report_dropped()

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()


# One hub per (system, Redis component): weakly keyed by the system, so the table never outgrows the
# systems alive (a test suite makes thousands); the default system's hubs are few (one per name).
_hubs: weakref.WeakKeyDictionary[SystemInitializer, dict[str, Hub]] = weakref.WeakKeyDictionary()
_default_hubs: dict[str, Hub] = {}


def hub_count() -> int:
    """How many hubs this process holds (for tests: it must not grow with the systems made)."""
    return len(_default_hubs) + sum(len(h) for h in list(_hubs.values()))


def hub_for(name: str, system: SystemInitializer | None) -> Hub:
    """The process' hub for Redis component *name* of *system* (``None``: the default system, as it is now)."""
    if system is None:
        hub = _default_hubs.get(name)
        if hub is None:
            from infraboot._front._default import default_system

            hub = _default_hubs[name] = Hub(name, default_system)
        return hub
    by_name = _hubs.get(system)
    if by_name is None:
        by_name = _hubs[system] = {}
    hub = by_name.get(name)
    if hub is None:
        ref = weakref.ref(system)

        def getter() -> SystemInitializer:  # weakly: a cache's hub never keeps a system alive
            found = ref()
            if found is None:
                msg = f"the system of the cache's Redis {name!r} is gone"
                raise NotInitializedError(msg)
            return found

        hub = by_name[name] = Hub(name, getter, ref)
    return hub
