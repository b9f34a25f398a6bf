"""Budgets for everything that waits, and the hygiene of the tasks that do the waiting.

- :func:`run_within`: run work in a task of its own and take its result by a deadline;
  work that ignores its cancellation is abandoned (tracked, its late result handed
  to a callback), never awaited past the deadline.
- :func:`cancel_until_done`: cancel, and cancel again, with a hard bound.
- :func:`shielded`: cleanup that runs on when its caller is cancelled, while the caller
  waits only a short grace.
- :class:`TaskSet`: background tasks that forget themselves when they finish.
- :func:`start_task`: a task that runs its first step at once (Python 3.12+), so work that
  never waits (a no-op setup, a teardown with nothing to release) costs no trip through the loop.

Some drivers swallow a cancellation that lands inside their own timeout handling and
carry on until their socket timeout; everything here is written so that such a driver
can never stretch a deadline of ours.
"""

from __future__ import annotations

import asyncio
import functools
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator
from typing import Any, NoReturn, TypeVar

__all__ = [
    "ABANDON_GRACE",
    "CANCEL_GRACE",
    "DeadlineExceeded",
    "TaskSet",
    "cancel_until_done",
    "interrupted",
    "raise_if_cancelled",
    "retrieve",
    "run_within",
    "shielded",
    "start_task",
    "task_for",
    "wait_one",
    "wait_until",
]

T = TypeVar("T")

#: Seconds work cancelled at its deadline may take to clean up before it is abandoned. It is
#: cancelled once only within that time, so that its own shielded cleanup (closing a socket)
#: is not interrupted; shutdown cancels abandoned work again.
ABANDON_GRACE = 0.25
#: Seconds a cancelled caller of shielded cleanup waits for it before it re-raises.
CANCEL_GRACE = 0.5
#: Seconds between repeated cancellations of work that ignored the last one.
_RECANCEL_EVERY = 0.25


class DeadlineExceeded(Exception):
    """Internal: the work did not finish within its budget. ``abandoned``: it ignored cancellation."""

    def __init__(self, budget: float, *, abandoned: bool) -> None:
        super().__init__(f"no answer within {budget:.3g}s")
        self.budget = budget
        self.abandoned = abandoned


_EMPTY: set[Any] = set()  # shared by every empty TaskSet, never added to


class TaskSet:
    """Tasks of one owner; each forgets itself when it finishes, its outcome marked as seen."""

    # No __init__: made for every component, and most sets stay empty (the set is made on first use).
    #: The tasks still running: read it (``if strays.tasks`` costs no call); change it through the methods.
    tasks: set[asyncio.Task[Any]] = _EMPTY

    def spawn(self, work: Awaitable[T], *, name: str) -> asyncio.Task[T]:
        task = _task(work, name)
        self.adopt(task)
        return task

    def adopt(self, task: asyncio.Task[Any]) -> None:
        if task.done():
            retrieve(task)
            return
        if self.tasks is _EMPTY:
            self.tasks = set()
        self.tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        retrieve(task)

    async def cancel(self, budget: float) -> set[asyncio.Future[Any]]:
        """Cancel every task, waiting at most *budget* seconds; returns those that ignored it."""
        return await cancel_until_done(self.tasks, budget)

    def clear(self) -> None:
        """Forget every task without touching it (their loop is gone)."""
        for task in self.tasks:
            task.remove_done_callback(self._finished)
        self.tasks = _EMPTY

    def __iter__(self) -> Iterator[asyncio.Task[Any]]:
        tasks = self.tasks
        return iter(set(tasks) if tasks else ())  # a copy: a task may finish (and leave) meanwhile

    def __contains__(self, task: object) -> bool:
        return task in self.tasks

    def __len__(self) -> int:
        return len(self.tasks)


def _task(work: Awaitable[T], name: str) -> asyncio.Task[T]:
    if asyncio.iscoroutine(work):
        return asyncio.get_running_loop().create_task(work, name=name)
    task = asyncio.ensure_future(work)
    if not isinstance(task, asyncio.Task):  # a bare future: wrap it, so that it can be cancelled as a task

        async def wrapped() -> T:
            return await task

        return asyncio.get_running_loop().create_task(wrapped(), name=name)
    return task


_EAGER = sys.version_info >= (3, 12)


def start_task(coro: Coroutine[Any, Any, T], name: str, *, guarded: bool = False) -> asyncio.Task[T]:
    """A task for *coro* whose first step runs now, on Python 3.12+ (``eager_start``).

    Work that finishes without waiting is done when this returns: no ``call_soon``, no
    timer for its deadline, no callback. A loop with a task factory of its own (uvloop
    has none, instrumentation may) keeps it, and the task starts as usual. A
    ``KeyboardInterrupt`` or ``SystemExit`` raised by the work leaves the event loop, as it
    would from a task's step, and the task ends cancelled: *guarded* says the coroutine sees to
    that itself (with :func:`interrupted`), so it is not wrapped in one more coroutine.
    """
    loop = asyncio.get_running_loop()
    if not _EAGER or loop.get_task_factory() is not None:
        return loop.create_task(coro, name=name)
    work = coro if guarded else _interruptible(coro)
    return asyncio.Task(work, loop=loop, name=name, eager_start=True)  # type: ignore[call-arg,unused-ignore]


def task_for(work: Awaitable[T], name: str) -> asyncio.Task[T]:
    """A task for *work*: :func:`start_task` for a coroutine, else the awaitable's own task (or one around it)."""
    return start_task(work, name) if asyncio.iscoroutine(work) else _task(work, name)


async def _interruptible(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return await coro
    except (KeyboardInterrupt, SystemExit) as exc:
        interrupted(exc)


def interrupted(exc: KeyboardInterrupt | SystemExit) -> NoReturn:
    """Raise *exc* from the event loop, and ``CancelledError`` here: for a task's own ``except`` clause.

    Raised out of an eager first step (Python 3.12+), the exception would leave the task's constructor
    (the task lost, its exception never retrieved) rather than the loop: raised from the loop instead.
    Before 3.12 no step is eager, and a task's step raises it out of the loop itself: it goes on as it is.
    """
    if not _EAGER:
        raise exc
    asyncio.get_running_loop().call_soon(_reraise, exc)
    raise asyncio.CancelledError from None


def _reraise(exc: BaseException) -> None:
    raise exc


def retrieve(task: asyncio.Future[Any]) -> None:
    """Mark a task's outcome as seen: nobody awaits it, so no 'exception was never retrieved'."""
    if not task.cancelled():
        task.exception()


async def wait_until(
    tasks: Iterable[asyncio.Future[Any]],
    deadline: float | None,
    *,
    until: Callable[[asyncio.Future[Any]], bool] | None = None,
) -> set[asyncio.Future[Any]]:
    """Wait until every one of *tasks* is done or the monotonic *deadline* passes; returns the pending ones.

    With *until*, stop early as soon as a task finishes for which ``until(task)`` is true.
    Cheaper than ``asyncio.wait`` (one callback per task, registered once), and never
    raises for the tasks' own outcomes.
    """
    pending = {t for t in tasks if not t.done()}
    if not pending:
        return pending
    if len(pending) == 1 and until is None:  # the common case, with the fewest allocations
        (only,) = pending
        budget = None if deadline is None else deadline - time.monotonic()
        return set() if await wait_one(only, budget) else pending
    loop = asyncio.get_running_loop()
    waiter = loop.create_future()
    left = [len(pending)]

    def one_done(task: asyncio.Future[Any]) -> None:
        left[0] -= 1
        if not waiter.done() and (left[0] <= 0 or (until is not None and until(task))):
            waiter.set_result(None)

    def time_up() -> None:
        if not waiter.done():
            waiter.set_result(None)

    for t in pending:
        t.add_done_callback(one_done)
    handle = None if deadline is None else loop.call_at(_loop_time(loop, deadline), time_up)
    try:
        await waiter
    finally:
        if handle is not None:
            handle.cancel()
        for t in pending:
            t.remove_done_callback(one_done)
    return {t for t in pending if not t.done()}


def _wake(waiter: asyncio.Future[None], _: object = None) -> None:
    if not waiter.done():
        waiter.set_result(None)


async def wait_one(task: asyncio.Future[Any], budget: float | None) -> bool:
    """Wait for *task* for at most *budget* seconds (``None``: no limit); ``True`` when it is done.

    One future, one callback and one timer: the start path runs this for every attempt.
    """
    if task.done():
        return True
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()
    wake = functools.partial(_wake, waiter)
    task.add_done_callback(wake)
    handle = None if budget is None else loop.call_later(max(0.0, budget), wake)
    try:
        await waiter
    finally:
        if handle is not None:
            handle.cancel()
        task.remove_done_callback(wake)
    return task.done()


def _loop_time(loop: asyncio.AbstractEventLoop, deadline: float) -> float:
    """A ``time.monotonic()`` deadline on the loop's clock (the same clock on the default loops)."""
    return loop.time() + (deadline - time.monotonic())


async def cancel_until_done(tasks: Iterable[asyncio.Future[Any]], budget: float) -> set[asyncio.Future[Any]]:
    """Cancel *tasks* and wait for them, cancelling again every so often, for at most *budget* seconds.

    Returns the tasks still running at the end (they ignored every cancellation).
    """
    pending: set[asyncio.Future[Any]] = {t for t in tasks if not t.done()}
    end = time.monotonic() + budget
    for task in pending:
        task.cancel()
    while pending:
        remaining = end - time.monotonic()
        if remaining <= 0:
            break
        pending = await wait_until(pending, time.monotonic() + min(_RECANCEL_EVERY, remaining))
        if pending and time.monotonic() < end:
            for task in pending:
                task.cancel()
    return pending


async def run_within(
    work: Awaitable[T],
    budget: float,
    *,
    name: str,
    abandoned: TaskSet,
    on_late_result: Callable[[T], Awaitable[None]] | None = None,
) -> T:
    """Run *work* in a task of its own and return its result within *budget* seconds.

    Past the budget the task is cancelled and given :data:`ABANDON_GRACE` to finish;
    then :class:`DeadlineExceeded` is raised either way. A task that ignored the
    cancellation is handed to *abandoned*; should it still produce a result,
    *on_late_result* receives it (to close a connection nobody will use). When the
    caller is cancelled, the work is cancelled too, within the same grace.
    """
    task = task_for(work, name)
    if not task.done():  # work that never waited is done already (Python 3.12+): no timer, no callback
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        wake = functools.partial(_wake, waiter)
        task.add_done_callback(wake)
        handle = loop.call_later(budget, wake)
        try:
            try:  # _wait_one, inlined: this runs for every stop and probe
                await waiter
            finally:
                handle.cancel()
                task.remove_done_callback(wake)
        except asyncio.CancelledError:
            # Tracked before anything else is awaited: a second cancellation cannot lose it.
            _track(task, abandoned, on_late_result)
            await cancel_until_done((task,), ABANDON_GRACE)
            raise
    if task.done():
        if not task.cancelled() and not isinstance(task.exception(), Exception | None):
            # KeyboardInterrupt, SystemExit: the work's own step raised it out of the event loop
            # already; raised a second time it would also escape asyncio.run()'s cleanup.
            raise asyncio.CancelledError
        return task.result()
    _track(task, abandoned, on_late_result)
    still = await cancel_until_done((task,), ABANDON_GRACE)
    raise DeadlineExceeded(budget, abandoned=bool(still))


def _track(task: asyncio.Task[T], abandoned: TaskSet, on_late_result: Callable[[T], Awaitable[None]] | None) -> None:
    """Hand work nobody waits for any more to *abandoned*; a result it still produces goes to *on_late_result*."""
    abandoned.adopt(task)
    if on_late_result is not None:
        task.add_done_callback(lambda t: _late(t, abandoned, on_late_result))


def _late(task: asyncio.Task[Any], abandoned: TaskSet, on_late_result: Callable[[Any], Awaitable[None]]) -> None:
    if task.cancelled() or task.exception() is not None:
        return
    try:
        abandoned.spawn(on_late_result(task.result()), name=f"{task.get_name()}-late")
    except RuntimeError:  # the loop is closing: nothing can be closed any more
        return


async def shielded(work: Awaitable[T], *, grace: float = CANCEL_GRACE, owner: TaskSet | None = None) -> T:
    """Await *work* (bounded cleanup) to its end, even if the caller is cancelled meanwhile.

    A cancelled caller waits at most *grace* more seconds, then re-raises; the work goes
    on in *owner*, which bounds it again at shutdown.
    """
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if owner is not None and isinstance(task, asyncio.Task):
            owner.adopt(task)
        else:
            task.add_done_callback(retrieve)
        await _wait_quietly(task, grace)
        raise


async def _wait_quietly(task: asyncio.Future[Any], grace: float) -> None:
    end = time.monotonic() + grace
    while not task.done():
        try:
            await wait_until((task,), end)
            return
        except asyncio.CancelledError:  # cancelled again while waiting out the grace
            if time.monotonic() >= end:
                return


def raise_if_cancelled() -> None:
    """Re-raise a cancellation that a driver turned into another error.

    Some drivers catch ``CancelledError`` inside their own timeouts and raise a
    ``TimeoutError`` or ``ConnectionError`` instead; retrying then would make a SIGTERM
    wait for every remaining attempt. The task still knows it was cancelled.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
