"""One attempt at starting a component: the first one, a retry and a recovery alike.

An :class:`Attempt` runs the component's setup in a task of its own (its first step at
once on Python 3.12+, so a setup that never waits costs no trip through the loop), under
``min(timeout, what is left of the start's limit)``. The budget is read, and the timeout
message written, here only. At the budget the task is cancelled and given
:data:`~infraboot._engine._deadlines.ABANDON_GRACE` to finish; one that ignores the
cancellation is abandoned to the slot's strays, and a resource it still makes is closed.
So no start ever waits for an attempt past its deadline.

The owner hears of the outcome through one callback (a start, driven by callbacks, pays
for no task of its own); :func:`attempt` is the same attempt, awaited (the retry loop,
recovery).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from infraboot._base._errors import OwnMessage, describe
from infraboot._base._log import event

from ._component import GUARDED_OPENS, Closer, Context
from ._deadlines import ABANDON_GRACE, TaskSet, cancel_until_done, raise_if_cancelled, run_within, start_task
from ._retry import OutOfTime
from ._slot import Slot

__all__ = ["Attempt", "AttemptTimeout", "attempt", "close_late"]


class AttemptTimeout(OwnMessage, TimeoutError):
    """infraboot's own deadline for one attempt (or one stop) expired: not a driver's timeout."""


class Attempt:
    """Attempt *number* of *slot*'s component; ``on_done(self)`` hears of its end, once.

    The end is one of: ``opened`` (the resource and its closer), ``error`` (what failed, an
    :class:`AttemptTimeout` at the budget), or neither (the attempt was cancelled from outside).
    Raises :class:`~infraboot._engine._retry.OutOfTime` when *limit* passed already.
    """

    __slots__ = ("_on_done", "_timed_out", "_timer", "budget", "ended", "error", "number", "opened", "slot", "task")

    def __init__(
        self,
        slot: Slot,
        number: int,
        limit: float | None,
        on_done: Callable[[Attempt], None],
    ) -> None:
        budget = slot.component.timeout
        if limit is not None:
            remaining = limit - time.monotonic()
            if remaining <= 0:
                msg = "the startup deadline passed before this attempt could begin"
                raise OutOfTime(msg)
            budget = min(budget, remaining)
        self.slot, self.number, self.budget, self._on_done = slot, number, budget, on_done
        self.opened: tuple[Any, Closer] | None = None
        self.error: Exception | None = None
        self.ended = False
        self._timed_out = False
        self._timer: asyncio.TimerHandle | None = None
        self.task: asyncio.Task[tuple[Any, Closer]] | None = None

    def run(self, resources: Mapping[str, Any]) -> None:
        """Begin, with the resources of the component's requirements; the end may come before this returns."""
        slot, comp = self.slot, self.slot.component
        slot.attempt_began(self.number)
        ctx = Context(slot.name, resources, self.number, source=slot.traffic)
        opener = comp._open
        guarded = getattr(opener, "__func__", None) in GUARDED_OPENS  # ours, not a test kit's stand-in
        # Named from the start: the setup's first step runs now, and may read its task's name (logging's taskName).
        task = self.task = start_task(opener(ctx), f"infraboot-attempt-{slot.name}", guarded=guarded)
        if task.done():  # a setup that never waited (Python 3.12+): no callback, no timer
            if task.cancelled() or task.exception() is not None:
                self._done(task)
                return
            self.ended = True
            self.opened = task.result()
            self._on_done(self)
            return
        task.add_done_callback(self._done)
        self._timer = asyncio.get_running_loop().call_later(self.budget, self._time_up)

    def abandon(self) -> asyncio.Task[Any] | None:
        """The owner gives up on it (an abort, a cancelled retry): no outcome is told any more.

        Returns the task, cancelled and tracked in the slot's strays, when it still runs, so
        the owner may give it a bounded grace; a resource it still makes is closed.
        """
        if self.ended:
            return None
        self._end(tell=False)
        task = self.task
        if task is None or task.done():
            return None  # its done callback closes what it made
        task.cancel()
        self.slot.strays.adopt(task)
        return task

    def _time_up(self) -> None:
        self._timed_out = True
        if self.task is not None:
            self.task.cancel()
        self._timer = asyncio.get_running_loop().call_later(ABANDON_GRACE, self._give_up)

    def _give_up(self) -> None:
        """It ignored its cancellation: go on without it; what it makes later is closed."""
        self._timer = None
        task = self.task
        if self.ended or task is None or task.done():
            return
        self.slot.strays.adopt(task)
        event(logging.WARNING, "attempt_abandoned", self.slot.name, attempt=self.number, budget=self.budget)
        self._end(error=self._timeout(abandoned=True))

    def _timeout(self, *, abandoned: bool = False) -> AttemptTimeout:
        note = "; it ignored cancellation and was abandoned" if abandoned else ""
        return AttemptTimeout(f"no answer within {self.budget:.3g}s (attempt {self.number}){note}")

    def _done(self, task: asyncio.Task[tuple[Any, Closer]]) -> None:
        if self.ended:  # abandoned: nobody wants what it made
            self._close_late(task)
            return
        if task.cancelled():
            self._end(error=self._timeout() if self._timed_out else None)
            return
        exc = task.exception()
        if exc is None:
            if not self._timed_out:  # the common case
                self._end(opened=task.result())
                return
            # It swallowed the cancellation and finished after its deadline: not a success.
            self._close_late(task)
            self._end(error=self._timeout())
        elif isinstance(exc, Exception):
            self._end(error=self._timeout() if self._timed_out else exc)
        else:
            # KeyboardInterrupt, SystemExit: the task's own step raised it out of the event loop
            # already. Raised again here it would escape asyncio.run()'s cleanup too, which then
            # never cancels the caller: nothing started would be torn down. Told as a cancellation.
            self._end()

    def _end(
        self, *, opened: tuple[Any, Closer] | None = None, error: Exception | None = None, tell: bool = True
    ) -> None:
        self.ended = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.opened, self.error = opened, error
        if tell:
            self._on_done(self)

    def _close_late(self, task: asyncio.Task[tuple[Any, Closer]]) -> None:
        if not task.cancelled() and task.exception() is None:
            self.close_late(task.result())

    def close_late(self, opened: tuple[Any, Closer]) -> None:
        """Release what this attempt made now that nobody wants it, in the slot's strays (bounded)."""
        slot = self.slot
        slot.strays.spawn(
            close_late(slot.name, slot.component.stop_timeout, slot.strays, opened),
            name=f"infraboot-close-late-{slot.name}",
        )


async def attempt(slot: Slot, number: int, limit: float | None, resources: Mapping[str, Any]) -> tuple[Any, Closer]:
    """:class:`Attempt`, awaited: the resource and its closer, or the attempt's error.

    A cancelled caller cancels the attempt, gives it :data:`ABANDON_GRACE` to clean up, and
    re-raises; a resource it still makes is closed.
    """
    waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def wake(_: Attempt) -> None:
        if not waiter.done():
            waiter.set_result(None)

    one = Attempt(slot, number, limit, wake)
    one.run(resources)
    if not one.ended:
        try:
            await waiter
        except asyncio.CancelledError:
            if one.opened is not None:  # it ended just before the cancellation reached us: nobody will use it
                one.close_late(one.opened)
            task = one.abandon()
            if task is not None:
                await cancel_until_done((task,), ABANDON_GRACE)
            raise
    if one.opened is not None:
        return one.opened
    if one.error is None:
        raise asyncio.CancelledError
    raise_if_cancelled()
    raise one.error


async def close_late(name: str, budget: float, abandoned: TaskSet, opened: tuple[Any, Closer]) -> None:
    """Release what an abandoned attempt produced after its deadline: nobody will ever use it."""
    _, closer = opened
    try:
        await run_within(
            closer("the start finished after its deadline"),
            budget,
            name=f"infraboot-close-late-{name}",
            abandoned=abandoned,
        )
    except Exception as exc:
        event(logging.WARNING, "late_resource_close_failed", name, error=describe(exc))
    else:
        event(logging.INFO, "late_resource_closed", name)
