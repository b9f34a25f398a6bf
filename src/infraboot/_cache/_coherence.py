"""Local levels kept coherent across processes: invalidations go out on a Redis pub/sub channel.

One listener per (system, Redis component) in a process, shared by every cache on that Redis.
The bound: while its subscription is up, a process drops an invalidated key from its local
level as soon as the message arrives (milliseconds on a LAN). When the subscription breaks
(Redis down, a partition caught by the listener's ping), messages may be lost: the local
level keeps serving during the outage, each entry at most until its own TTL, and is cleared
the moment the subscription is back.
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

from infraboot._log import event
from infraboot.exceptions import ComponentUnavailableError, NotInitializedError

if TYPE_CHECKING:
    from infraboot._system import SystemInitializer

__all__ = ["CHANNEL", "Hub", "Listener", "hub_for"]

CHANNEL = "infraboot:cache:invalidate"
_PING_EVERY = 2.0  # seconds between the listener's pings; a silent line is noticed within about twice that


class Listener(Protocol):
    """What a cache offers the hub: apply an invalidation that came from another process."""

    def apply_invalidation(self, op: str, arg: str, *, remote: bool) -> None: ...

    def remote_lost(self) -> None: ...


class Hub:
    """The subscription of one process to one Redis' invalidation channel."""

    def __init__(
        self, name: str, system: Callable[[], SystemInitializer], ref: weakref.ref[SystemInitializer] | None = None
    ) -> None:
        self.name = name
        self.ref = ref
        self._system = system
        self.sender = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._caches: weakref.WeakSet[Any] = weakref.WeakSet()
        self._task: asyncio.Task[None] | None = None
        self.subscribed = False
        self.received = 0
        self._connected_once = False
        self.retry_interval = 1.0
        self.op_timeout = 0.25
        self.ping_every = _PING_EVERY

    def attach(self, cache: Listener) -> None:
        self._caches.add(cache)

    def message(self, op: str, arg: str) -> str:
        return json.dumps({"from": self.sender, "op": op, "arg": arg}, separators=(",", ":"))

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
            self._task = self._system().spawn(self._listen(), name=f"infraboot-cache-listener-{self.name}")
        except Exception:  # a system that cannot take tasks now (stopping): the next call tries again
            self._task = loop.create_task(asyncio.sleep(0))

    def _client(self) -> Any:
        try:
            return self._system().get(self.name)
        except (ComponentUnavailableError, NotInitializedError):
            return None

    async def _listen(self) -> None:
        while True:
            client = self._client()
            if client is None:
                await asyncio.sleep(self.retry_interval)
                continue
            pubsub = client.pubsub()
            try:
                async with asyncio.timeout(self.op_timeout * 4):
                    await pubsub.subscribe(CHANNEL)
                if self._connected_once:
                    for cache in list(self._caches):
                        cache.remote_lost()  # messages may have been missed while away
                self._connected_once = True
                self.subscribed = True
                for cache in list(self._caches):
                    cache.l2.answered()  # Redis just answered us: no cache need wait for its trial call
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

    async def _read(self, pubsub: Any) -> None:
        last_seen = last_ping = time.monotonic()
        while True:
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=min(0.5, self.ping_every))
            now = time.monotonic()
            if msg is not None:
                last_seen = now
                if msg.get("type") == "message":
                    self._dispatch(msg.get("data"))
            if now - last_ping >= self.ping_every:
                last_ping = now
                async with asyncio.timeout(self.op_timeout * 4):
                    await pubsub.ping()
            if now - last_seen > 2 * self.ping_every + self.op_timeout * 4:
                msg_ = "no answer to the invalidation channel's ping"
                raise TimeoutError(msg_)

    def _dispatch(self, data: Any) -> None:
        try:
            parsed = json.loads(data)
            sender, op, arg = parsed["from"], parsed["op"], parsed["arg"]
        except (ValueError, TypeError, KeyError):
            return
        if sender == self.sender:
            return  # ours: already applied locally
        self.received += 1
        for cache in list(self._caches):
            cache.apply_invalidation(str(op), str(arg), remote=True)

    def apply_here(self, op: str, arg: str) -> None:
        """An invalidation made in this process: every cache of this process on this Redis applies it."""
        for cache in list(self._caches):
            cache.apply_invalidation(op, arg, remote=False)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()


_hubs: dict[tuple[int, str], Hub] = {}


def hub_for(name: str, system: SystemInitializer | None) -> Hub:
    """The process' hub for Redis component *name* of *system* (``None``: the default system, as it is now)."""
    key = (0 if system is None else id(system), name)
    hub = _hubs.get(key)
    if hub is None or (system is not None and (hub.ref is None or hub.ref() is not system)):
        if system is None:
            from infraboot._default import default_system

            getter: Callable[[], SystemInitializer] = default_system
        else:
            ref = weakref.ref(system)

            def getter() -> SystemInitializer:  # weakly: a cache never keeps a system alive
                found = ref()
                if found is None:
                    msg = f"the system of the cache's Redis {name!r} is gone"
                    raise NotInitializedError(msg)
                return found

        hub = _hubs[key] = Hub(name, getter, None if system is None else weakref.ref(system))
    return hub
