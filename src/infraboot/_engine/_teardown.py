"""Stopping components: dependents first, each teardown once, everything within a deadline.

A stop is driven by callbacks (:class:`_Stop`), not by a task of its own. Its teardown runs in
a task under ``min(stop_timeout, what is left of the deadline)``; one that hangs or ignores
its cancellation is abandoned and named in the report. A component already being stopped (by a
concurrent ``shutdown()`` or ``stop()``) is not stopped again: the second caller shares that stop.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from infraboot._base._errors import describe
from infraboot._base._log import event, listeners, logger
from infraboot._base._record import FrozenMap

from . import _graph
from ._component import GUARDED_CLOSERS
from ._deadlines import ABANDON_GRACE, TaskSet, cancel_until_done, retrieve, start_task, task_for, wait_until
from ._report import ShutdownReport, StopResult
from ._slot import HOLDING, Slot
from ._startup import abort, unsettled
from ._state import ComponentState

__all__ = ["Teardown"]

_S = ComponentState
# At most this long goes to cancelling starts and background work before the stops begin.
_CANCEL_PHASE = 0.5


class Teardown:
    """The stopping side of one system."""

    def __init__(
        self,
        slots: Mapping[str, Slot],
        graph: Callable[[], Mapping[str, Sequence[str]]],
        tasks: TaskSet,
        on_stopped: Callable[[Slot], None],
        order: Callable[[], list[str] | None] = lambda: None,
    ) -> None:
        self._slots = slots
        self._graph = graph
        self._order = order  # every name, requirements first, once the graph was checked (else None)
        self._tasks = tasks
        self._on_stopped = on_stopped
        self._given_up: weakref.WeakSet[asyncio.Future[Any]] = weakref.WeakSet()
        self._stop_began: asyncio.Future[None] | None = None

    def stop_began(self) -> asyncio.Future[None]:
        """A future done when the next ``stop()`` begins: a startup call waiting for its starts rechecks then."""
        signal = self._stop_began
        if signal is None or signal.done():
            signal = self._stop_began = asyncio.get_running_loop().create_future()
        return signal

    def running(self, names: Sequence[str] | None = None) -> list[str]:
        """Of *names* (all when ``None``): those holding a resource or being stopped, in registration order."""
        wanted = None if names is None else set(names)
        return [
            n
            for n, s in self._slots.items()
            if (wanted is None or n in wanted)
            and (s.state in HOLDING or (s.stop_task is not None and not s.stop_task.done()))
        ]

    def report_in_progress(self, budget: float) -> ShutdownReport:
        """What a caller whose budget ran out can say of a shutdown still under way: who has not stopped yet."""
        stopping = [n for n, s in self._slots.items() if s.state is _S.STOPPING]
        error = f"still stopping when shutdown(timeout={budget:.3g}) returned; the shutdown goes on, bounded"
        return ShutdownReport(
            stopped=tuple(StopResult(n, budget, error) for n in stopping),
            duration=budget,
            errors=FrozenMap(dict.fromkeys(stopping, error)),
        )

    async def shutdown(self, budget: float) -> ShutdownReport:
        """Abort every start, cancel the background work (briefly), then stop everything running.

        Meanwhile the work of aborted starts (an attempt closing what it half opened, a late
        resource being closed) is waited for, not cancelled again: a second cancellation would
        interrupt the close and leave the socket open after this returns.
        """
        deadline = time.monotonic() + budget
        for slot in self._slots.values():
            if slot.start is not None:
                abort(slot)  # its task joins the slot's strays, cancelled once
        # Work an earlier shutdown gave up on (it ignored a cancellation already) is cancelled again,
        # never waited for: it must not eat into this shutdown's budget.
        for stray in self._strays(given_up=True):
            stray.cancel()
        await cancel_until_done(self._tasks, min(budget, _CANCEL_PHASE))
        report, _ = await asyncio.gather(self.stop_many(self.running(), deadline), self._settle_strays(deadline))
        self._given_up.update(self._strays(given_up=False))  # a teardown abandoned just now, say
        return report

    async def stop(self, names: list[str], deadline: float, *, asked: Sequence[str]) -> ShutdownReport:
        """``stop(asked)``, which stops *names*: cut off their starts under way (a dependent starting on a
        requirement about to close must not end ready on it), give that work a bounded grace, then stop
        what runs, dependents first."""
        why = f"stop({list(asked)!r}) was called while it was starting"
        slots = [self._slots[n] for n in names]
        cut: list[asyncio.Future[Any]] = []
        for slot in slots:
            slot.stop_called(begun=True)  # from now on no start uses its resource (a new one is blocked)
            if slot.recovery is not None:
                slot.recovery.cancel()  # stopped on purpose: not brought back in the background
            if unsettled(slot):
                task = abort(slot, why)  # cancelled once; a second cancel could cut its own cleanup short
                slot.cannot_heal()  # nor retried by the recovery its caller's startup would begin
                if task is not None:
                    cut.append(task)
        signal, self._stop_began = self._stop_began, None
        if signal is not None and not signal.done():
            signal.set_result(None)
        try:
            await wait_until(cut, time.monotonic() + ABANDON_GRACE)
            return await self.stop_many(self.running(names), deadline)
        finally:
            for slot in slots:
                slot.stop_called(begun=False)

    def _strays(self, *, given_up: bool) -> list[asyncio.Task[Any]]:
        """The strays still running (a finished one leaves its set only when its callback has run)."""
        return [
            t
            for s in self._slots.values()
            if s.strays.tasks  # most have none
            for t in s.strays
            if not t.done() and (t in self._given_up) is given_up
        ]

    async def _settle_strays(self, deadline: float) -> None:
        """Wait for the strays no shutdown gave up on yet, each slot's at most its stop_timeout, then give up."""
        bound = max((s.component.stop_timeout for s in self._slots.values() if s.strays.tasks), default=0.0)
        until = min(deadline, time.monotonic() + bound)
        fresh = self._strays(given_up=False)
        while fresh and time.monotonic() < until:
            await wait_until(fresh, until)
            fresh = self._strays(given_up=False)  # a late result is closed by a stray of its own
        self._given_up.update(await cancel_until_done(fresh, ABANDON_GRACE))

    async def rollback(
        self,
        closure: list[str],
        deadline: float,
        *,
        alone: Callable[[str], bool],
        promised: Callable[[str], bool],
        failed: str | None,
        others_until: float | None = None,
    ) -> None:
        """Undo one startup call: cut off the starts only it asked for (*alone*), let other callers'
        starts finish, then stop what it started and nobody was *promised*, dependents first."""
        slots = self._slots
        cut = [t for n in closure if alone(n) and (t := abort(slots[n])) is not None]
        await cancel_until_done(cut, ABANDON_GRACE)  # a bounded grace for their own cleanup
        in_flight = [slots[n].waiter() for n in closure if slots[n].start is not None]
        if in_flight:  # other callers' starts: let them finish, within this call's own bound
            await wait_until(in_flight, deadline if others_until is None else min(deadline, others_until))
        victims = [n for n in closure if slots[n].state is _S.READY and not promised(n) and alone(n)]
        if victims:
            event(logging.WARNING, "rollback_begin", components=",".join(victims))
            if failed is None:
                reason = "rollback: startup was cancelled"
            elif slots[failed].taken_down:
                reason = f"rollback: required component {failed!r} was stopped by stop()"
            else:
                reason = f"rollback: required component {failed!r} failed"
            await self.stop_many(victims, deadline, reason=reason)

    async def stop_many(self, names: list[str], deadline: float, *, reason: str | None = None) -> ShutdownReport:
        """Stop *names*, each after everything among them that requires it, all within *deadline*."""
        t0 = time.monotonic()
        wanted = set(names)
        graph = self._graph()
        required_by: dict[str, list[str]] = {}
        for n in wanted:
            for r in graph[n]:
                if r in wanted:
                    required_by.setdefault(r, []).append(n)
        stops: dict[str, _Stop] = {}
        # Dependents first: the reversed start order puts every dependent before what it requires.
        everything = self._order()
        order = [n for n in reversed(_graph.closure(names, graph) if everything is None else everything) if n in wanted]
        for n in order:
            deps = required_by.get(n)
            stops[n] = self._stop(self._slots[n], [stops[d] for d in deps] if deps else (), deadline, reason)
        running = [s.waiter() for s in stops.values() if not s.done()]  # none when every teardown ended at once
        pending = await wait_until(running, deadline + 2 * ABANDON_GRACE)
        if pending:  # only if a stop itself is stuck: never wait on it past the bound
            for task in await cancel_until_done(pending, ABANDON_GRACE):
                self._tasks.adopt(task)  # type: ignore[arg-type]
        results: list[StopResult] = []
        errors: dict[str, str] = {}
        budget = deadline - t0
        for n in order:
            result = stops[n].result  # None when it was given up on
            if result is None:
                result = StopResult(n, time.monotonic() - t0, f"shutdown_timeout ({budget:.3g}s) exceeded; abandoned")
                self._finish(self._slots[n])
                event(logging.ERROR, "component_stop_failed", n, error=result.error)
            results.append(result)
            if result.error:
                errors[n] = result.error
        return ShutdownReport(stopped=tuple(results), duration=time.monotonic() - t0, errors=FrozenMap(errors))

    def _stop(self, slot: Slot, dependents: Sequence[_Stop], deadline: float, reason: str | None) -> _Stop:
        """The stop of *slot*: the one in flight, or a new one. A teardown never runs twice."""
        stop: _Stop | None = slot.stop_task
        if stop is None or stop.done():
            stop = _Stop(self, slot, dependents, deadline, reason)
            slot.stopping(stop)
        return stop

    def _finish(self, slot: Slot) -> None:
        if slot.state is _S.STOPPING:  # a start that waited for this stop may be under way already
            slot.stopped_now()
        self._on_stopped(slot)


class _Stop:
    """One component's stop, moved along by callbacks: its dependents' stops, then its closer.

    The closer runs in a task of its own under ``min(stop_timeout, what is left of the deadline)``
    (its first step at once on Python 3.12+, so a teardown with nothing to wait for costs no trip
    through the loop, no timer and no callback); at the budget it is cancelled and given
    :data:`ABANDON_GRACE`, then abandoned to the slot's strays. No task of the stop's own: its
    :attr:`result` is the :class:`StopResult`, :meth:`waiter` a future done with it (made when
    someone waits), and every path to it is bounded by a timer.
    """

    __slots__ = (
        "budget",
        "closing",
        "deadline",
        "future",
        "reason",
        "result",
        "slot",
        "t0",
        "teardown",
        "timed_out",
        "timer",
        "waiting",
    )

    def __init__(
        self,
        teardown: Teardown,
        slot: Slot,
        dependents: Sequence[_Stop],
        deadline: float,
        reason: str | None,
    ) -> None:
        self.teardown, self.slot, self.deadline, self.reason = teardown, slot, deadline, reason
        self.result: StopResult | None = None
        self.future: asyncio.Future[StopResult] | None = None
        self.closing: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.timed_out = False
        self.budget = self.t0 = 0.0
        pending = [d.waiter() for d in dependents if not d.done()] if dependents else None
        if not pending:
            self.waiting = 0
            self._begin()
            return
        self.waiting = len(pending)
        for d in pending:  # dependents first; each of their stops is bounded, and so is this wait
            d.add_done_callback(self._one_stopped)
        self.timer = asyncio.get_running_loop().call_later(max(0.0, deadline - time.monotonic()), self._begin)

    def done(self) -> bool:
        """Ended, or given up on by a shutdown (its waiter cancelled)."""
        return self.result is not None or (self.future is not None and self.future.done())

    def waiter(self) -> asyncio.Future[StopResult]:
        """A future done with the :class:`StopResult`; cancelling it gives up on the stop (and its teardown)."""
        future = self.future
        if future is None:
            future = self.future = asyncio.get_running_loop().create_future()
            if self.result is not None:
                future.set_result(self.result)
            else:
                future.add_done_callback(self._given_up_on)
        return future

    def _given_up_on(self, future: asyncio.Future[StopResult]) -> None:
        task = self.closing
        if not future.cancelled() or task is None or task.done():
            return
        task.remove_done_callback(self._closed)
        task.cancel()
        self.slot.strays.adopt(task)

    def _one_stopped(self, _: object) -> None:
        self.waiting -= 1
        if self.waiting == 0:
            self._begin()

    def _begin(self) -> None:
        if self.waiting < 0 or self.done():
            return  # begun already (the deadline's timer and the last dependent both call this)
        self.waiting = -1
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        slot, comp = self.slot, self.slot.component
        closer = slot.closer
        slot.stopping_now()  # get() refuses from here on; the resource stays until the closer ran
        if listeners or logger.isEnabledFor(logging.DEBUG):  # every stop: no call when nobody hears it
            event(logging.DEBUG, "component_stopping", slot.name)
        self.t0 = time.monotonic()
        self.budget = budget = min(comp.stop_timeout, self.deadline - self.t0)
        if budget <= 0:
            self._end("shutdown_timeout was used up before this component could stop", "timeout")
            return
        if closer is None:
            self._end()
            return
        name = f"infraboot-teardown-{slot.name}"
        try:
            if getattr(closer, "__code__", None) in GUARDED_CLOSERS:  # ours: a coroutine that sees to interrupts
                task = self.closing = start_task(closer(self.reason), name, guarded=True)  # type: ignore[arg-type]
            else:
                task = self.closing = task_for(closer(self.reason), name)
        except Exception as exc:  # the closer raised before its coroutine existed
            self._end(describe(exc), comp.classify(exc))
            return
        if task.done():  # a teardown that never waited (Python 3.12+): no callback, no timer
            self._closed(task)
            return
        task.add_done_callback(self._closed)
        self.timer = asyncio.get_running_loop().call_later(budget, self._time_up)

    def _time_up(self) -> None:
        if self.closing is None or self.closing.done():
            return  # it finished as the budget ran out: its own callback (queued already) ends the stop
        self.timed_out = True
        self.closing.cancel()
        self.timer = asyncio.get_running_loop().call_later(ABANDON_GRACE, self._give_up)

    def _give_up(self) -> None:
        """The closer ignored its cancellation: go on without it, tracked in the slot's strays."""
        self.timer = None
        task = self.closing
        if task is None or task.done() or self.done():
            return
        task.remove_done_callback(self._closed)
        self.slot.strays.adopt(task)
        self._end(self._timeout_error() + "; it ignored cancellation and was abandoned", "timeout")

    def _timeout_error(self) -> str:
        if self.budget >= self.slot.component.stop_timeout:
            return f"stop did not finish within stop_timeout={self.budget:.3g}s"
        return f"stop did not finish within what was left of the shutdown_timeout ({self.budget:.3g}s)"

    def _closed(self, task: asyncio.Task[None]) -> None:
        if self.timed_out:
            retrieve(task)
            self._end(self._timeout_error(), "timeout")
        elif task.cancelled():
            self._end("stop was cancelled", "cancelled")
        elif (exc := task.exception()) is None:
            self._end()
        elif isinstance(exc, Exception):  # teardown carries on: log with the name, collect, go on
            self._end(describe(exc), self.slot.component.classify(exc))
        else:  # KeyboardInterrupt, SystemExit: the task's step raised it out of the event loop already
            self._end(f"stop was interrupted ({type(exc).__name__})", "cancelled")

    def _end(self, error: str | None = None, code: str | None = None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        slot = self.slot
        self.teardown._finish(slot)
        duration = time.monotonic() - self.t0
        if error is None:
            if listeners or logger.isEnabledFor(logging.INFO):
                event(logging.INFO, "component_stopped", slot.name, duration=duration)
        else:
            event(logging.ERROR, "component_stop_failed", slot.name, error_code=code, error=error)
        future = self.future
        if future is None:
            self.result = StopResult(slot.name, duration, error)
        elif not future.done():  # (cancelled: a shutdown gave up on it, and its report says so)
            self.result = StopResult(slot.name, duration, error)
            future.set_result(self.result)
