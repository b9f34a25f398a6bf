"""The shared level: the Redis component, reached only while it can answer, every call bounded.

Two things open the bypass, and neither waits on the network: the component is not ready
(its monitor saw it fail, or it never started), or a call of the cache's own hit a
connection error or its timeout. After ``retry_interval`` one call tries again (the others
keep bypassing); its success closes the bypass.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

from infraboot._base._errors import classify_error
from infraboot._base._log import event
from infraboot._engine._system import SystemInitializer
from infraboot.exceptions import CacheUnavailableError, ComponentUnavailableError, ConfigError, NotInitializedError

from ._bounded import Deadlines

__all__ = ["BYPASS", "TEXT_HINT", "CacheUnavailableError", "SharedLevel", "SystemSource", "system_source"]

#: What a cache is given as ``system=``: a system, a callable returning one (bound later), or ``None`` (the default).
SystemSource = SystemInitializer | Callable[[], SystemInitializer | None] | None

T = TypeVar("T")
TEXT_HINT = "the Redis client decodes responses to str; give the cache a Redis component without decode_responses"


class _Bypass:
    __slots__ = ()

    def __repr__(self) -> str:
        return "BYPASS"


BYPASS: Final = _Bypass()
"""What :meth:`SharedLevel.run` returns when Redis was not asked (or did not answer)."""


def _loses_connection(exc: BaseException) -> bool:
    """A connection-level failure (refused, reset, timeout, closed): the next call would wait too."""
    if isinstance(exc, TimeoutError | OSError):
        return True
    try:
        from redis import exceptions as rex
    except ImportError:  # pragma: no cover - redis comes with the redis extra and fakeredis
        return classify_error(exc) != "error"
    return isinstance(exc, rex.ConnectionError | rex.TimeoutError)


def system_source(system: object, owner: str) -> SystemSource:
    """*system* checked: a :class:`SystemInitializer`, a callable returning one, or ``None``."""
    if system is None or isinstance(system, SystemInitializer) or callable(system):
        return system
    msg = (
        f"{owner}: system={system!r} must be a SystemInitializer, a function returning one (bound when the cache "
        "is first used, e.g. system=lambda: app_system), or None for the default system"
    )
    raise ConfigError(msg)


class SharedLevel:
    """Calls into the Redis component *name* of *system* (``None``: the default system, looked up per call;
    a callable: called per use, so a cache made at import can serve a system an app factory builds later)."""

    __slots__ = (
        "_deadlines",
        "_down_until",
        "_monitor_saw_down",
        "_next_nudge",
        "_on_recovered",
        "_system",
        "_warned_text",
        "_was_bypassed",
        "bypasses",
        "errors",
        "last_error",
        "name",
        "op_timeout",
        "required",
        "retry_interval",
        "tripped",
    )

    def __init__(
        self,
        name: str,
        system: SystemSource,
        *,
        op_timeout: float,
        retry_interval: float,
        required: bool,
        on_recovered: Callable[[], None],
    ) -> None:
        self.name = name
        self._system = system
        self.op_timeout = op_timeout
        self._deadlines = Deadlines(op_timeout)
        self.retry_interval = retry_interval
        self.required = required
        self._on_recovered = on_recovered
        self._down_until = 0.0
        self._monitor_saw_down = False
        self._next_nudge = 0.0
        self._warned_text = False
        self.tripped = False  # our own circuit: a connection error seen by the cache
        self._was_bypassed = False
        self.bypasses = 0
        self.errors = 0
        self.last_error: str | None = None

    def system(self) -> SystemInitializer:
        """The system this cache serves; :class:`~infraboot.NotInitializedError` naming the fix when its
        ``system=`` function has none yet (the cache was used before the app factory built it)."""
        source = self._system
        if source is None:
            from infraboot._front._default import default_system

            return default_system()
        if isinstance(source, SystemInitializer):
            return source
        found = source()
        if isinstance(found, SystemInitializer):
            return found
        if found is None:
            msg = (
                f"the cache on Redis {self.name!r} was used before its system exists (its system= function "
                f"{getattr(source, '__qualname__', source)!r} returned None); build the system first (create the "
                "app, or enter its lifespan) before calling cached functions, or leave system= out to use the "
                "default system"
            )
            raise NotInitializedError(msg)
        msg = f"the cache's system= function returned {type(found).__name__}; it must return a SystemInitializer"
        raise TypeError(msg)

    @property
    def bound(self) -> bool:
        """Whether the system exists now (a ``system=`` function may return ``None`` until the app is built)."""
        source = self._system
        return source is None or isinstance(source, SystemInitializer) or isinstance(source(), SystemInitializer)

    def client(self, *, trial: bool = False) -> Any:
        """The Redis client if the shared level may be used now, else ``None`` (no network I/O either way).
        *trial*: also inside the bypass window after an error (a caller that knows Redis just answered).
        Used before its ``system=`` function has a system: :class:`~infraboot.NotInitializedError`."""
        system = self.system()
        try:
            client = system.get(self.name)  # one dict lookup: raises while the monitor says it is down
        except (ComponentUnavailableError, NotInitializedError):
            self._monitor_saw_down = True
            self._nudge()
            return None
        if self.tripped:
            now = time.monotonic()
            if self._monitor_saw_down:
                self._monitor_saw_down = False  # down, then ready again by its probes: try at once
            elif now < self._down_until and not trial:
                return None
            self._down_until = now + self.retry_interval  # this call is the trial; the others bypass meanwhile
        return client

    def _nudge(self) -> None:
        """While the component is down, ask its system for a readiness check now and then (in the background,
        as a /readyz request would: probes are shared and reused for ``check_ttl``), so that L2 comes back
        as soon as a probe sees Redis answer, not only when the recovery's backoff gets round to it."""
        now = time.monotonic()
        if now < self._next_nudge:
            return
        self._next_nudge = now + self.retry_interval
        system = self.system()
        if system.phase == "running":
            system.spawn(system.readiness(), name=f"infraboot-cache-nudge-{self.name}")

    @property
    def state(self) -> str:
        """``up`` (in use), ``down`` (bypassed after an error of its own), ``unavailable`` (component not ready)
        or ``unbound`` (its ``system=`` function has no system yet)."""
        if self.tripped:
            return "down"
        if not self.bound:
            return "unbound"
        try:
            self.system().get(self.name)
        except (ComponentUnavailableError, NotInitializedError):
            return "unavailable"
        return "up"

    def bypass(self) -> _Bypass:
        self.bypasses += 1
        self._was_bypassed = True
        if self.required:
            msg = (
                f"the cache's Redis component {self.name!r} is {self.state}"
                f"{f' ({self.last_error})' if self.tripped and self.last_error else ''}; "
                "make the cache optional (required=False) to serve the local level during an outage"
            )
            raise CacheUnavailableError(msg, component=self.name)
        return BYPASS

    async def run(self, op: Callable[[Any], Awaitable[T]], *, trial: bool = False) -> T | _Bypass:
        """``await op(client)``, the whole of it (every round trip of a scan included) within ``op_timeout``;
        :data:`BYPASS` instead of any Redis error. *trial*: see :meth:`client`."""
        client = self.client(trial=trial)
        if client is None:
            return self.bypass()
        try:
            result = await self._deadlines.run(op(client))
        except Exception as exc:
            return self._failed(exc)
        if self.tripped or self._was_bypassed:
            self._resumed()
        return result

    async def get(self, key: str) -> Any:
        """``GET key`` as :meth:`run` does it, flattened: on the L2-hit path every coroutine level costs
        a few µs (each suspension resumes through all of them), so the deadline is inlined here."""
        client = self.client()
        if client is None:
            return self.bypass()
        task: Any = asyncio.current_task()
        cancelling = task.cancelling()
        deadlines = self._deadlines
        bucket = deadlines.enter(task)
        try:
            result = await client.get(key)
        except asyncio.CancelledError:
            if not deadlines.expired(bucket, task, cancelling):
                raise
            return self._failed(TimeoutError(f"no answer within op_timeout={self.op_timeout}"))
        except Exception as exc:
            return self._failed(exc)
        finally:
            deadlines.leave(bucket, task)
        if self.tripped or self._was_bypassed:
            self._resumed()
        return result

    def _failed(self, exc: Exception) -> _Bypass:
        self.errors += 1
        if isinstance(exc, UnicodeDecodeError) and not self._warned_text:
            self._warned_text = True
            event(logging.WARNING, "cache_needs_bytes", self.name, hint=TEXT_HINT)
        self.last_error = f"{type(exc).__name__}: {classify_error(exc)}"  # never the message: it may hold a URL
        if _loses_connection(exc):
            if not self.tripped:
                event(logging.WARNING, "cache_redis_bypassed", self.name, error_code=classify_error(exc))
            self.tripped = True
            self._down_until = time.monotonic() + self.retry_interval
        return self.bypass()

    def answered(self) -> None:
        """Redis answered another call of this process (the invalidation channel subscribed): use it again now."""
        if self.tripped:
            self._resumed()

    def _resumed(self) -> None:
        if self.tripped:
            event(logging.INFO, "cache_redis_resumed", self.name)
        self.tripped = False
        self._was_bypassed = False
        self._on_recovered()
