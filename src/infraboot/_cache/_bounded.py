"""Per-call deadlines for Redis calls, cheap enough for the L2-hit path.

``asyncio.timeout`` schedules and cancels one timer per call (about 4 µs here, a tenth of a
loopback ``GET``'s overhead budget). Calls are put in buckets of ``GRAIN`` seconds instead, one
timer per bucket: a call is cancelled at most ``GRAIN`` after its own deadline, and the caller
gets ``TimeoutError`` exactly as from ``asyncio.timeout`` (an outside cancellation stays one).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["GRAIN", "Deadlines"]

T = TypeVar("T")
GRAIN = 0.01


class _Bucket:
    __slots__ = ("expired", "handle", "tasks")

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[object]] = set()
        self.expired: set[asyncio.Task[object]] = set()
        self.handle: asyncio.TimerHandle | None = None

    def fire(self) -> None:
        for task in self.tasks:
            self.expired.add(task)
            task.cancel()
        self.tasks.clear()


class Deadlines:
    """Run awaitables under a deadline of *seconds* (plus at most :data:`GRAIN`)."""

    __slots__ = ("_bucket", "_bucket_until", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._bucket: _Bucket | None = None
        self._bucket_until = 0.0

    def enter(self, task: asyncio.Task[object]) -> _Bucket:
        """Put *task* under the deadline; pair with :meth:`leave` in a ``finally``."""
        loop = task.get_loop()
        now = loop.time()
        bucket = self._bucket
        if bucket is None or now >= self._bucket_until:
            bucket = self._bucket = _Bucket()
            self._bucket_until = now + GRAIN
            bucket.handle = loop.call_at(now + GRAIN + self.seconds, bucket.fire)
        bucket.tasks.add(task)
        return bucket

    @staticmethod
    def expired(bucket: _Bucket, task: asyncio.Task[object], cancelling: int) -> bool:
        """In ``except CancelledError``: ``True`` when the deadline (not the outside) cancelled *task*."""
        if task in bucket.expired:
            bucket.expired.discard(task)
            return task.uncancel() <= cancelling
        return False

    @staticmethod
    def leave(bucket: _Bucket, task: asyncio.Task[object]) -> None:
        bucket.tasks.discard(task)
        bucket.expired.discard(task)

    async def run(self, awaitable: Awaitable[T]) -> T:
        """``await awaitable`` under the deadline: ``TimeoutError`` when it passes."""
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - always inside a task under asyncio
            async with asyncio.timeout(self.seconds):
                return await awaitable
        cancelling = task.cancelling()
        bucket = self.enter(task)
        try:
            return await awaitable
        except asyncio.CancelledError:
            if self.expired(bucket, task, cancelling):
                raise TimeoutError from None
            raise
        finally:
            self.leave(bucket, task)
