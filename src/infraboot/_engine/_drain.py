"""Drain: readiness off while traffic is still served, the step between "stop routing here" and SIGTERM.

A load balancer (a Kubernetes Service, say) keeps sending requests to a pod for a few
seconds after it is told the pod is going away. A drain turns readiness off at once,
keeps serving, counts the requests still in flight, and returns once ``delay`` seconds
have passed and nothing is in flight (or, at the latest, after ``2 * delay``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dataclasses import dataclass
else:  # the methods are written on first use, not at import (see _base._record)
    from infraboot._base._record import dataclass

__all__ = ["Drain", "DrainReport"]


@dataclass(frozen=True, slots=True)
class DrainReport:
    """The outcome of a drain: how long it held, and what was still in flight when it returned."""

    delay: float
    waited: float
    in_flight: int
    resumed: bool = False  # undone (``undrain()``, ``DELETE /drainz``) before it had run its course

    @property
    def idle(self) -> bool:
        """Nothing was in flight when the drain returned."""
        return self.in_flight == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": "resumed" if self.resumed else "draining",
            "delay": round(self.delay, 6),
            "waited": round(self.waited, 6),
            "in_flight": self.in_flight,
        }


class Drain:
    """A system's drain state and its count of work in flight (requests, jobs).

    ``with drain.track(): ...`` counts one unit of work; the probe middleware does it
    for every HTTP request, a worker can do it per job. Counting costs two integer
    updates; nothing here touches a loop until someone waits.
    """

    __slots__ = ("_ended", "_idle", "in_flight", "since")

    def __init__(self) -> None:
        self.since: float | None = None  # monotonic time the drain began; None: not draining
        self.in_flight = 0
        self._idle: list[asyncio.Future[None]] = []
        self._ended: asyncio.Future[None] | None = None  # set by end(): the drains being waited for return

    @property
    def active(self) -> bool:
        """A drain began: readiness fails from that moment (until :meth:`end` or the system stops)."""
        return self.since is not None

    def begin(self) -> None:
        """Turn readiness off now; a drain already under way keeps its start time."""
        if self.since is None:
            self.since = time.monotonic()

    @contextlib.contextmanager
    def track(self) -> Iterator[None]:
        """Count one unit of work in flight for the length of the block."""
        self.in_flight += 1
        try:
            yield
        finally:
            self.leave()

    def leave(self) -> None:
        """One unit of work ended (after ``in_flight += 1``: the per-request path skips the context manager)."""
        self.in_flight -= 1
        if self.in_flight == 0 and self._idle:
            waiters, self._idle = self._idle, []
            for f in waiters:
                if not f.done():
                    f.set_result(None)

    async def run(self, delay: float) -> DrainReport:
        """Begin (or join) the drain; return once *delay* has passed since it began and nothing is
        in flight, and at the latest ``2 * delay`` after it began; at once when :meth:`end` undoes it."""
        self.begin()
        since = self.since
        assert since is not None
        ended = self._ended
        if ended is None or ended.done():
            ended = self._ended = asyncio.get_running_loop().create_future()
        now = time.monotonic()
        if since + delay > now:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(ended), since + delay - now)
        latest = since + 2 * delay
        while self.since == since and self.in_flight and (left := latest - time.monotonic()) > 0:
            waiter = asyncio.get_running_loop().create_future()
            self._idle.append(waiter)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.wait({waiter, ended}, return_when=asyncio.FIRST_COMPLETED), left)
        waited = time.monotonic() - since
        return DrainReport(delay=delay, waited=waited, in_flight=self.in_flight, resumed=self.since != since)

    def end(self) -> bool:
        """Undo a drain: readiness follows the components again, and a drain being waited for returns now.

        ``True`` when a drain was under way.
        """
        was = self.since is not None
        self.since = None
        ended, self._ended = self._ended, None
        if ended is not None and not ended.done():
            ended.set_result(None)
        return was

    def reset(self) -> None:
        """Serving again from scratch (a new startup after a shutdown, a forked child)."""
        self.since = None
        self._idle = []
        self._ended = None
