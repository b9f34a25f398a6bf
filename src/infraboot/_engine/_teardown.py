"""Stopping components: dependents first, each teardown once, everything within a deadline.

A teardown runs in a task of its own under ``min(stop_timeout, what is left of the
deadline)``; one that hangs or ignores its cancellation is abandoned and named in the
report. A component already being stopped (by a concurrent ``shutdown()`` or
``stop()``) is not stopped again: the second caller shares the first one's stop.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from infraboot._base._errors import describe
from infraboot._base._log import event

from . import _graph
from ._deadlines import (
    ABANDON_GRACE,
    DeadlineExceeded,
    TaskSet,
    cancel_until_done,
    retrieve,
    run_within,
    start_task,
    wait_until,
)
from ._report import ShutdownReport, StopResult
from ._slot import HOLDING, Slot
from ._startup import abort
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
    ) -> None:
        self._slots = slots
        self._graph = graph
        self._tasks = tasks
        self._on_stopped = on_stopped
        self._given_up: weakref.WeakSet[asyncio.Future[Any]] = weakref.WeakSet()

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
            errors=MappingProxyType(dict.fromkeys(stopping, error)),
        )

    async def shutdown(self, budget: float) -> ShutdownReport:
        """Abort every start, cancel the background work (briefly), then stop everything running.

        Meanwhile the work of aborted starts (an attempt closing what it half opened, a late
        resource being closed) is waited for, not cancelled again: a second cancellation would
        interrupt the close and leave the socket open after this returns.
        """
        deadline = time.monotonic() + budget
        for slot in self._slots.values():
            abort(slot)  # its task joins the slot's strays, cancelled once
        # Work an earlier shutdown gave up on (it ignored a cancellation already) is cancelled again,
        # never waited for: it must not eat into this shutdown's budget.
        for stray in self._strays(given_up=True):
            stray.cancel()
        await cancel_until_done(self._tasks, min(budget, _CANCEL_PHASE))
        report, _ = await asyncio.gather(self.stop_many(self.running(), deadline), self._settle_strays(deadline))
        self._given_up.update(self._strays(given_up=False))  # a teardown abandoned just now, say
        return report

    def _strays(self, *, given_up: bool) -> list[asyncio.Task[Any]]:
        """The strays still running (a finished one leaves its set only when its callback has run)."""
        return [t for s in self._slots.values() for t in s.strays if not t.done() and (t in self._given_up) is given_up]

    async def _settle_strays(self, deadline: float) -> None:
        """Wait for the strays no shutdown gave up on yet, each slot's at most its stop_timeout, then give up."""
        bound = max((s.component.stop_timeout for s in self._slots.values() if s.strays), default=0.0)
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
        in_flight = [f for n in closure if (f := slots[n].settled) is not None and not f.done()]
        if in_flight:  # other callers' starts: let them finish, within this call's own bound
            await wait_until(in_flight, deadline if others_until is None else min(deadline, others_until))
        victims = [n for n in closure if slots[n].state is _S.READY and not promised(n) and alone(n)]
        if victims:
            event(logging.WARNING, "rollback_begin", components=",".join(victims))
            reason = f"rollback: required component {failed!r} failed" if failed else "rollback: startup was cancelled"
            await self.stop_many(victims, deadline, reason=reason)

    async def stop_many(self, names: list[str], deadline: float, *, reason: str | None = None) -> ShutdownReport:
        """Stop *names*, each after everything among them that requires it, all within *deadline*."""
        t0 = time.monotonic()
        wanted = set(names)
        graph = self._graph()
        required_by: dict[str, list[str]] = {n: [] for n in wanted}
        for n in wanted:
            for r in graph[n]:
                if r in wanted:
                    required_by[r].append(n)
        tasks: dict[str, asyncio.Task[StopResult]] = {}
        # Dependents first: reversed closure order puts every dependent before what it requires.
        order = [n for n in reversed(_graph.closure(names, graph)) if n in wanted]
        for n in order:
            tasks[n] = self._stop_task(self._slots[n], [tasks[d] for d in required_by[n]], deadline, reason)
        pending = await wait_until(tasks.values(), deadline + 2 * ABANDON_GRACE)
        if pending:  # only if a stop task itself is stuck: never wait on it past the bound
            for task in await cancel_until_done(pending, ABANDON_GRACE):
                self._tasks.adopt(task)  # type: ignore[arg-type]
        results: list[StopResult] = []
        errors: dict[str, str] = {}
        budget = deadline - t0
        for n in order:
            task = tasks[n]
            if task.done() and not task.cancelled():
                result = task.result()
            else:
                result = StopResult(n, time.monotonic() - t0, f"shutdown_timeout ({budget:.3g}s) exceeded; abandoned")
                self._finish(self._slots[n])
                event(logging.ERROR, "component_stop_failed", n, error=result.error)
            results.append(result)
            if result.error:
                errors[n] = result.error
        return ShutdownReport(stopped=tuple(results), duration=time.monotonic() - t0, errors=MappingProxyType(errors))

    def _stop_task(
        self, slot: Slot, dependents: list[asyncio.Task[StopResult]], deadline: float, reason: str | None
    ) -> asyncio.Task[StopResult]:
        """The stop of *slot*: the one in flight, or a new one. A teardown never runs twice."""
        task = slot.stop_task
        if task is None or task.done():
            task = start_task(self._stop_one(slot, dependents, deadline, reason), name=f"infraboot-stop-{slot.name}")
            if task.done():
                retrieve(task)
            else:
                task.add_done_callback(retrieve)
            slot.stopping(task)
        return task

    async def _stop_one(
        self, slot: Slot, dependents: list[asyncio.Task[StopResult]], deadline: float, reason: str | None
    ) -> StopResult:
        if dependents:
            await wait_until(dependents, deadline)
        comp = slot.component
        closer = slot.closer
        slot.transition(_S.STOPPING)  # get() refuses from here on; the resource stays until the closer ran
        event(logging.DEBUG, "component_stopping", slot.name)
        t0 = time.monotonic()
        error = code = None
        budget = min(comp.stop_timeout, deadline - t0)
        try:
            if budget <= 0:
                error, code = "shutdown_timeout was used up before this component could stop", "timeout"
            elif closer is not None:
                await run_within(closer(reason), budget, name=f"infraboot-teardown-{slot.name}", abandoned=slot.strays)
        except DeadlineExceeded as exc:
            if budget >= comp.stop_timeout:
                error = f"stop did not finish within stop_timeout={budget:.3g}s"
            else:
                error = f"stop did not finish within what was left of the shutdown_timeout ({budget:.3g}s)"
            code = "timeout"
            if exc.abandoned:
                error += "; it ignored cancellation and was abandoned"
        except Exception as exc:  # teardown carries on: log with the name, collect, go on
            error, code = describe(exc), comp.classify(exc)
        finally:
            self._finish(slot)
        duration = time.monotonic() - t0
        if error is None:
            event(logging.INFO, "component_stopped", slot.name, duration=duration)
        else:
            event(logging.ERROR, "component_stop_failed", slot.name, error_code=code, error=error)
        return StopResult(slot.name, duration, error)

    def _finish(self, slot: Slot) -> None:
        if slot.state is _S.STOPPING:  # a start that waited for this stop may be under way already
            slot.transition(_S.STOPPED, resource=None, closer=None)
        self._on_stopped(slot)
